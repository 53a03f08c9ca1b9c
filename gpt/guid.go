package gpt

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// GUID is a 128-bit globally unique identifier held in the byte order of its
// canonical text form (RFC 9562): GUID{0x4f, 0x68, …} is
// "4f68bce3-…". This is the order systemd's sd_id128_t uses, so the DPS rule
// "partition UUID = first 128 bits of the root hash" is a plain copy.
//
// On disk, GPT stores GUIDs in the mixed-endian EFI_GUID layout (UEFI
// specification, appendix A): the first three fields (4, 2 and 2 bytes) are
// little-endian and the last 8 bytes are kept in order. Read and Write convert
// between the two; callers never see the on-disk layout.
type GUID [16]byte

// ParseGUID parses the canonical text form
// xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (upper or lower case hex).
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 {
		return g, fmt.Errorf("parse guid %q: length %d, want 36", s, len(s))
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return g, fmt.Errorf("parse guid %q: want '-' at offset %d", s, i)
			}
			i++
			continue
		}
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return g, fmt.Errorf("parse guid %q: invalid hex digit at offset %d", s, i)
		}
		g[j] = hi<<4 | lo
		j++
		i += 2
	}
	return g, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// mustParseGUID parses a GUID literal written in this package's source; it
// panics only on a typo in a constant, caught by the package's tests.
func mustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the canonical lowercase text form of g.
func (g GUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], g[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], g[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], g[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], g[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], g[10:16])
	return string(b[:])
}

// IsZero reports whether g is the all-zero GUID, which GPT uses to mark an
// unused partition entry.
func (g GUID) IsZero() bool { return g == GUID{} }

// MarshalText implements [encoding.TextMarshaler] with the canonical form.
func (g GUID) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseGUID].
func (g *GUID) UnmarshalText(b []byte) error {
	v, err := ParseGUID(string(b))
	if err != nil {
		return err
	}
	*g = v
	return nil
}

// NewRandomGUID returns a random (version 4, RFC 9562 variant) GUID from
// crypto/rand.
func NewRandomGUID() (GUID, error) {
	var g GUID
	if _, err := rand.Read(g[:]); err != nil {
		return g, fmt.Errorf("random guid: %w", err)
	}
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g, nil
}

// decodeGUID converts the 16 on-disk (mixed-endian EFI_GUID) bytes in b to a GUID.
func decodeGUID(b []byte) GUID {
	return GUID{
		b[3], b[2], b[1], b[0],
		b[5], b[4],
		b[7], b[6],
		b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
	}
}

// encodeGUID writes g in the on-disk (mixed-endian EFI_GUID) layout into b[:16].
func encodeGUID(b []byte, g GUID) {
	b[0], b[1], b[2], b[3] = g[3], g[2], g[1], g[0]
	b[4], b[5] = g[5], g[4]
	b[6], b[7] = g[7], g[6]
	copy(b[8:16], g[8:16])
}
