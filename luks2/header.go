package luks2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// BinHeaderSize is the size of the binary part of each header copy.
const BinHeaderSize = 4096

// DefaultHdrSize is the default size of one header copy (binary header plus
// a 12 KiB JSON area), as cryptsetup >= 2.1 writes it.
const DefaultHdrSize = 16384

var (
	magicPrimary   = []byte{'L', 'U', 'K', 'S', 0xba, 0xbe}
	magicSecondary = []byte{'S', 'K', 'U', 'L', 0xba, 0xbe}
	// validHdrSizes are the allowed header sizes, which are also the allowed
	// offsets of the secondary header (LUKS2 on-disk format, section 2.1).
	validHdrSizes = []uint64{0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000}
)

func validHdrSize(n uint64) bool { return slices.Contains(validHdrSizes, n) }

// Errors that tell why a device is not an openable LUKS2 volume.
var (
	// ErrNotLUKS2 means neither header copy carries the LUKS2 magic.
	ErrNotLUKS2 = errors.New("not a LUKS2 device (no LUKS2 header found)")
	// ErrUnsupported marks features this package cannot handle (an unknown
	// mandatory requirement, a cipher or KDF it does not implement).
	ErrUnsupported = errors.New("unsupported LUKS2 feature")
	// ErrChecksum means a header copy's checksum does not match.
	ErrChecksum = errors.New("header checksum mismatch")
)

// BinHeader is the binary header of one copy (struct luks2_hdr_disk in
// cryptsetup lib/luks2/luks2.h; on-disk format section 2.1). Integers are
// big-endian; strings are NUL-terminated in fixed fields.
//
//	off size field
//	  0    6 magic ("LUKS\xba\xbe" primary, "SKUL\xba\xbe" secondary)
//	  6    2 version (2)
//	  8    8 hdr_size (binary + JSON)
//	 16    8 seqid
//	 24   48 label
//	 72   32 checksum_alg
//	104   64 salt
//	168   40 uuid
//	208   48 subsystem
//	256    8 hdr_offset
//	264  184 padding
//	448   64 csum
//	512 3584 padding
type BinHeader struct {
	Secondary   bool
	HdrSize     uint64
	SeqID       uint64
	Label       string
	ChecksumAlg string
	Salt        [64]byte
	UUID        string
	Subsystem   string
	HdrOffset   uint64
	Checksum    [64]byte
}

// cstring reads a NUL-terminated string from a fixed field; it fails when
// the field holds no NUL.
func cstring(b []byte, field string) (string, error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", fmt.Errorf("binary header field %s is not NUL-terminated", field)
	}
	return string(b[:i]), nil
}

// ParseBinHeader decodes and checks one binary header (not its checksum,
// which covers the JSON area too: see [VerifyChecksum]).
func ParseBinHeader(b []byte) (*BinHeader, error) {
	if len(b) < BinHeaderSize {
		return nil, fmt.Errorf("binary header truncated: %d bytes, want %d", len(b), BinHeaderSize)
	}
	h := &BinHeader{}
	switch {
	case bytes.Equal(b[0:6], magicPrimary):
	case bytes.Equal(b[0:6], magicSecondary):
		h.Secondary = true
	default:
		return nil, ErrNotLUKS2
	}
	be := binary.BigEndian
	if v := be.Uint16(b[6:]); v != 2 {
		return nil, fmt.Errorf("%w: header version %d (want 2)", ErrNotLUKS2, v)
	}
	h.HdrSize = be.Uint64(b[8:])
	h.SeqID = be.Uint64(b[16:])
	h.HdrOffset = be.Uint64(b[256:])
	var err error
	if h.Label, err = cstring(b[24:72], "label"); err != nil {
		return nil, err
	}
	if h.ChecksumAlg, err = cstring(b[72:104], "checksum_alg"); err != nil {
		return nil, err
	}
	if h.UUID, err = cstring(b[168:208], "uuid"); err != nil {
		return nil, err
	}
	if h.Subsystem, err = cstring(b[208:256], "subsystem"); err != nil {
		return nil, err
	}
	copy(h.Salt[:], b[104:168])
	copy(h.Checksum[:], b[448:512])
	if !validHdrSize(h.HdrSize) {
		return nil, fmt.Errorf("invalid hdr_size %d", h.HdrSize)
	}
	if h.Secondary && h.HdrOffset != h.HdrSize || !h.Secondary && h.HdrOffset != 0 {
		return nil, fmt.Errorf("hdr_offset %d does not match the header's place", h.HdrOffset)
	}
	if _, err := hashByName(h.ChecksumAlg); err != nil {
		return nil, fmt.Errorf("checksum_alg: %w", err)
	}
	return h, nil
}

// marshal encodes the binary header; with the checksum field zeroed when
// zeroCsum is set (the form the checksum is computed over).
func (h *BinHeader) marshal(zeroCsum bool) ([]byte, error) {
	b := make([]byte, BinHeaderSize)
	if h.Secondary {
		copy(b, magicSecondary)
	} else {
		copy(b, magicPrimary)
	}
	be := binary.BigEndian
	be.PutUint16(b[6:], 2)
	be.PutUint64(b[8:], h.HdrSize)
	be.PutUint64(b[16:], h.SeqID)
	for _, f := range []struct {
		dst  []byte
		s    string
		name string
	}{{b[24:72], h.Label, "label"}, {b[72:104], h.ChecksumAlg, "checksum_alg"}, {b[168:208], h.UUID, "uuid"}, {b[208:256], h.Subsystem, "subsystem"}} {
		if len(f.s) >= len(f.dst) || bytes.IndexByte([]byte(f.s), 0) >= 0 {
			return nil, fmt.Errorf("%s %q is too long for its %d-byte field", f.name, f.s, len(f.dst))
		}
		copy(f.dst, f.s)
	}
	copy(b[104:168], h.Salt[:])
	be.PutUint64(b[256:], h.HdrOffset)
	if !zeroCsum {
		copy(b[448:512], h.Checksum[:])
	}
	return b, nil
}

// checksum computes the header checksum: H(binary header with csum zeroed ‖
// whole JSON area), cryptsetup luks2_disk_metadata.c hdr_checksum_calculate.
func (h *BinHeader) checksum(jsonArea []byte) ([64]byte, error) {
	var sum [64]byte
	nh, err := hashByName(h.ChecksumAlg)
	if err != nil {
		return sum, err
	}
	bin, err := h.marshal(true)
	if err != nil {
		return sum, err
	}
	hh := nh()
	hh.Write(bin)
	hh.Write(jsonArea)
	copy(sum[:], hh.Sum(nil))
	return sum, nil
}

// VerifyChecksum checks the checksum of a header copy against its JSON area.
func (h *BinHeader) VerifyChecksum(jsonArea []byte) error {
	sum, err := h.checksum(jsonArea)
	if err != nil {
		return err
	}
	if sum != h.Checksum {
		return ErrChecksum
	}
	return nil
}

// defaultChecksumAlg is the checksum algorithm cryptsetup writes.
const defaultChecksumAlg = "sha256"
