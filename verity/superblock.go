package verity

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// superblockSignature is the magic at the start of the superblock.
var superblockSignature = [8]byte{'v', 'e', 'r', 'i', 't', 'y', 0, 0}

// ErrNoSuperblock is returned by [ParseSuperblock] when the bytes do not start
// with the verity signature.
var ErrNoSuperblock = errors.New("no verity superblock (signature \"verity\" not found)")

// Superblock is the 512-byte header veritysetup writes at the hash offset of
// the hash device: struct verity_sb in cryptsetup lib/verity/verity.c. All
// integers are little-endian.
//
//	off  size  field
//	  0     8  signature "verity\0\0"
//	  8     4  version (1)
//	 12     4  hash_type (1 normal, 0 Chrome OS)
//	 16    16  uuid
//	 32    32  algorithm, NUL-terminated, lowercase
//	 64     4  data_block_size
//	 68     4  hash_block_size
//	 72     8  data_blocks
//	 80     2  salt_size
//	 82     6  padding
//	 88   256  salt
//	344   168  padding
type Superblock struct {
	Version       uint32
	HashType      uint32
	UUID          [16]byte
	Algorithm     string
	DataBlockSize uint32
	HashBlockSize uint32
	DataBlocks    uint64
	Salt          []byte
}

// ParseSuperblock decodes and validates a superblock from the first
// [SuperblockSize] bytes of b. It checks what cryptsetup's VERITY_read_sb
// checks, and the block sizes, salt size and algorithm as [Params.Validate].
func ParseSuperblock(b []byte) (*Superblock, error) {
	if len(b) < SuperblockSize {
		return nil, fmt.Errorf("superblock truncated: %d bytes, want %d", len(b), SuperblockSize)
	}
	if !bytes.Equal(b[0:8], superblockSignature[:]) {
		return nil, ErrNoSuperblock
	}
	le := binary.LittleEndian
	sb := &Superblock{
		Version:       le.Uint32(b[8:]),
		HashType:      le.Uint32(b[12:]),
		DataBlockSize: le.Uint32(b[64:]),
		HashBlockSize: le.Uint32(b[68:]),
		DataBlocks:    le.Uint64(b[72:]),
	}
	copy(sb.UUID[:], b[16:32])
	if sb.Version != 1 {
		return nil, fmt.Errorf("unsupported verity superblock version %d (want 1)", sb.Version)
	}
	alg := b[32:64]
	n := bytes.IndexByte(alg, 0)
	if n < 0 {
		return nil, errors.New("superblock hash algorithm name is not NUL-terminated")
	}
	sb.Algorithm = string(alg[:n])
	saltSize := le.Uint16(b[80:])
	if saltSize > MaxSaltSize {
		return nil, fmt.Errorf("superblock salt size %d exceeds %d", saltSize, MaxSaltSize)
	}
	sb.Salt = bytes.Clone(b[88 : 88+int(saltSize)])
	p := sb.Params(0)
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("invalid superblock: %w", err)
	}
	return sb, nil
}

// MarshalBinary encodes the superblock into [SuperblockSize] bytes, after
// checking it is one that [ParseSuperblock] accepts.
func (sb *Superblock) MarshalBinary() ([]byte, error) {
	if sb.Version != 1 {
		return nil, fmt.Errorf("unsupported verity superblock version %d (want 1)", sb.Version)
	}
	if len(sb.Algorithm) >= 32 || sb.Algorithm != strings.ToLower(sb.Algorithm) {
		return nil, fmt.Errorf("hash algorithm name %q must be lowercase and shorter than 32 bytes", sb.Algorithm)
	}
	p := sb.Params(0)
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, SuperblockSize)
	le := binary.LittleEndian
	copy(b[0:8], superblockSignature[:])
	le.PutUint32(b[8:], sb.Version)
	le.PutUint32(b[12:], sb.HashType)
	copy(b[16:32], sb.UUID[:])
	copy(b[32:64], sb.Algorithm)
	le.PutUint32(b[64:], sb.DataBlockSize)
	le.PutUint32(b[68:], sb.HashBlockSize)
	le.PutUint64(b[72:], sb.DataBlocks)
	le.PutUint16(b[80:], uint16(len(sb.Salt)))
	copy(b[88:], sb.Salt)
	return b, nil
}

// Params returns the tree parameters the superblock describes, for a hash
// area at hashOffset.
func (sb *Superblock) Params(hashOffset uint64) Params {
	return Params{
		HashName:      sb.Algorithm,
		HashType:      sb.HashType,
		DataBlockSize: sb.DataBlockSize,
		HashBlockSize: sb.HashBlockSize,
		DataBlocks:    sb.DataBlocks,
		HashOffset:    hashOffset,
		Salt:          sb.Salt,
		UUID:          sb.UUID,
	}
}

// superblockFor builds the superblock veritysetup writes for p.
func superblockFor(p *Params) *Superblock {
	return &Superblock{
		Version:       1,
		HashType:      p.HashType,
		UUID:          p.UUID,
		Algorithm:     strings.ToLower(p.HashName),
		DataBlockSize: p.DataBlockSize,
		HashBlockSize: p.HashBlockSize,
		DataBlocks:    p.DataBlocks,
		Salt:          p.Salt,
	}
}

// ReadSuperblock reads and parses the superblock at hashOffset of hash, and
// returns the parameters it describes.
func ReadSuperblock(hash io.ReaderAt, hashOffset uint64) (*Superblock, error) {
	if hashOffset%512 != 0 {
		return nil, fmt.Errorf("hash offset %d is not a multiple of 512", hashOffset)
	}
	b := make([]byte, SuperblockSize)
	if n, err := hash.ReadAt(b, int64(hashOffset)); n < len(b) {
		return nil, fmt.Errorf("read superblock at offset %d: device too short (%d bytes): %w", hashOffset, n, err)
	}
	return ParseSuperblock(b)
}

// ParseUUID parses a textual UUID (8-4-4-4-12 hex digits, as uuid_parse).
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("invalid UUID %q: want the form 01234567-89ab-cdef-0123-456789abcdef", s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("invalid UUID %q: %w", s, err)
	}
	return u, nil
}

// FormatUUID renders a UUID in lowercase 8-4-4-4-12 form; the zero UUID
// renders as "" (as veritysetup prints a missing one).
func FormatUUID(u [16]byte) string {
	if u == ([16]byte{}) {
		return ""
	}
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// RandomUUID returns a random version-4 UUID.
func RandomUUID() ([16]byte, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return u, fmt.Errorf("random uuid: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u, nil
}
