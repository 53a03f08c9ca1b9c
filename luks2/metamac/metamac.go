// Package metamac authenticates the parts of a LUKS2 header that decide how
// the volume's bytes are mapped and which key opens them.
//
// LUKS2 metadata carries no authentication (on-disk format document,
// section 2: the checksums only detect accidental damage), so whoever can
// write the disk can rewrite a segment — cipher_null, no integrity, another
// offset, sector size or IV tweak — and leave the keyslots alone: the key
// still unlocks, and device-mapper would be built from the rewritten
// parameters (CVE-2025-59054, CVE-2025-58356). This package turns those
// parameters into a [Record] (a flat map of named fields), computes a MAC
// over a canonical encoding under a key derived from the volume key, and
// compares a record with a header field by field, naming the first field
// that differs.
//
// What a record holds:
//   - uuid: the LUKS2 UUID (binary header);
//   - every segment (section 3.3): type, offset, size, iv_tweak, encryption,
//     sector_size, flags, and its integrity object (type, journal_encryption,
//     journal_integrity, key_size);
//   - every digest (section 3.4): type, hash, iterations, salt, digest, and
//     the keyslots and segments it binds;
//   - config (section 3.6): flags and requirements;
//   - when given, the dm-integrity superblock (the kernel's struct
//     superblock, drivers/md/dm-integrity.c): version, tag size,
//     log2(interleave sectors), log2(sectors per block), log2(blocks per
//     bitmap bit), journal sections, provided data sectors, flags, recalc
//     sector and the fix_hmac salt.
//
// Keyslots (their areas, KDFs and AF parameters) and tokens are not part of
// a record: a changed keyslot can only fail to produce a key that matches
// an authenticated digest, and the tokens a caller cares about carry their
// own MAC (see package provision).
package metamac

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
)

// Record is the authenticated view of a header: field name → value, every
// value a string (numbers in decimal, byte strings in lowercase hex, lists
// comma-joined). Names are dotted paths: "segments.0.encryption",
// "digests.0.keyslots", "config.flags", "integrity.tag_size".
type Record map[string]string

// Describe returns the record of h and, when sb is not nil, of the
// dm-integrity superblock of its segment 0.
func Describe(h *luks2.Header, sb *integrity.Superblock) Record {
	r := Record{"uuid": h.UUID}
	m := h.Metadata
	for id, s := range m.Segments {
		describeSegment(r, "segments."+strconv.Itoa(id)+".", s)
	}
	for id, d := range m.Digests {
		p := "digests." + strconv.Itoa(id) + "."
		r[p+"type"] = d.Type
		r[p+"hash"] = d.Hash
		r[p+"iterations"] = strconv.Itoa(d.Iterations)
		r[p+"salt"] = hex.EncodeToString(d.Salt)
		r[p+"digest"] = hex.EncodeToString(d.Digest)
		r[p+"keyslots"] = sortedList(d.Keyslots)
		r[p+"segments"] = sortedList(d.Segments)
	}
	r["config.flags"] = sortedList(m.Config.Flags)
	r["config.requirements"] = canonicalJSON(m.Config.Requirements)
	if sb != nil {
		describeIntegrity(r, sb)
	}
	return r
}

func describeSegment(r Record, p string, s *luks2.Segment) {
	r[p+"type"] = s.Type
	r[p+"offset"] = strconv.FormatUint(uint64(s.Offset), 10)
	r[p+"size"] = "dynamic"
	if !s.Size.Dynamic {
		r[p+"size"] = strconv.FormatUint(s.Size.Bytes, 10)
	}
	r[p+"iv_tweak"] = strconv.FormatUint(uint64(s.IVTweak), 10)
	r[p+"encryption"] = s.Encryption
	r[p+"sector_size"] = strconv.Itoa(s.SectorSize)
	r[p+"flags"] = sortedList(s.Flags)
	r[p+"integrity"] = "none"
	if s.Integrity != nil {
		r[p+"integrity"] = s.Integrity.Type
		r[p+"integrity.journal_encryption"] = s.Integrity.JournalEncryption
		r[p+"integrity.journal_integrity"] = s.Integrity.JournalIntegrity
		r[p+"integrity.key_size"] = strconv.Itoa(s.Integrity.KeySize)
	}
	if s.Raw != nil {
		// A segment type this package does not model: its whole JSON.
		r[p+"json"] = canonicalJSON(json.RawMessage(s.Raw))
	}
}

func describeIntegrity(r Record, sb *integrity.Superblock) {
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	r["integrity.version"] = u(uint64(sb.Version))
	r["integrity.tag_size"] = u(uint64(sb.IntegrityTagSize))
	r["integrity.log2_interleave_sectors"] = u(uint64(sb.Log2InterleaveSectors))
	r["integrity.log2_sectors_per_block"] = u(uint64(sb.Log2SectorsPerBlock))
	r["integrity.log2_blocks_per_bitmap_bit"] = u(uint64(sb.Log2BlocksPerBitmapBit))
	r["integrity.journal_sections"] = u(uint64(sb.JournalSections))
	r["integrity.provided_data_sectors"] = u(sb.ProvidedDataSectors)
	r["integrity.flags"] = u(uint64(sb.Flags))
	r["integrity.recalc_sector"] = u(sb.RecalcSector)
	r["integrity.salt"] = hex.EncodeToString(sb.Salt[:])
}

func sortedList(l []string) string {
	s := slices.Clone(l)
	slices.Sort(s)
	return strings.Join(s, ",")
}

// canonicalJSON re-encodes raw JSON compactly with sorted object keys (""
// for none), so that whitespace and key order do not count.
func canonicalJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "invalid:" + hex.EncodeToString(raw)
	}
	b, _ := json.Marshal(v) // maps marshal with sorted keys
	return string(b)
}

// HasIntegrity reports whether the record includes a dm-integrity superblock.
func (r Record) HasIntegrity() bool {
	_, ok := r["integrity.tag_size"]
	return ok
}

// WithoutIntegrity is the record without the dm-integrity superblock's
// fields: what a header alone is compared with.
func (r Record) WithoutIntegrity() Record {
	out := make(Record, len(r))
	for k, v := range r {
		if !strings.HasPrefix(k, "integrity.") {
			out[k] = v
		}
	}
	return out
}

// ErrChanged means a header (or integrity superblock) differs from the
// authenticated record.
var ErrChanged = errors.New("the volume's metadata differs from what was authenticated at provisioning")

// Compare returns nil when actual equals want, and otherwise an error
// wrapping [ErrChanged] that names the first differing field (in name
// order), e.g. `segment 0 encryption is "cipher_null-ecb", provisioned
// "aes-xts-plain64"`.
func Compare(want, actual Record) error {
	names := make([]string, 0, len(want)+len(actual))
	for k := range want {
		names = append(names, k)
	}
	for k := range actual {
		if _, ok := want[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		w, inWant := want[k]
		a, inActual := actual[k]
		switch {
		case !inWant:
			return fmt.Errorf("%w: %s is %q, which was not provisioned", ErrChanged, Label(k), a)
		case !inActual:
			return fmt.Errorf("%w: %s is missing, provisioned %q", ErrChanged, Label(k), w)
		case w != a:
			return fmt.Errorf("%w: %s is %q, provisioned %q", ErrChanged, Label(k), a, w)
		}
	}
	return nil
}

// Label is the readable name of a record field: "segments.0.iv_tweak" →
// "segment 0 iv_tweak", "integrity.tag_size" → "dm-integrity superblock
// tag_size".
func Label(name string) string {
	parts := strings.Split(name, ".")
	switch {
	case len(parts) >= 3 && parts[0] == "segments":
		return "segment " + parts[1] + " " + strings.Join(parts[2:], " ")
	case len(parts) >= 3 && parts[0] == "digests":
		return "digest " + parts[1] + " " + strings.Join(parts[2:], " ")
	case parts[0] == "integrity":
		return "dm-integrity superblock " + strings.Join(parts[1:], " ")
	case parts[0] == "config":
		return "config " + strings.Join(parts[1:], " ")
	}
	return strings.Join(parts, " ")
}

// keyInfo is the HKDF info of the MAC key, distinct from every other key
// confidisk derives from a volume key (the freshness key uses "confidisk
// freshness v1").
const keyInfo = "confidisk metadata v1"

// Sum returns HMAC-SHA256 of msg under the metadata key of the volume key
// vk: HKDF-SHA256(vk, salt none, info "confidisk metadata v1", 32 bytes).
func Sum(vk, msg []byte) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, vk, nil, keyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive the metadata key: %w", err)
	}
	m := hmac.New(sha256.New, k)
	m.Write(msg)
	return m.Sum(nil), nil
}

// Verify reports whether mac is [Sum] of msg under vk (in constant time).
func Verify(vk, msg, mac []byte) (bool, error) {
	want, err := Sum(vk, msg)
	if err != nil {
		return false, err
	}
	return hmac.Equal(want, mac), nil
}
