// Package verity implements the dm-verity on-disk format in pure Go: the hash
// tree, the veritysetup superblock, whole-device verification and a verified
// random-access reader.
//
// The format is the one of cryptsetup's veritysetup (lib/verity/verity_hash.c,
// lib/verity/verity.c) and of the kernel's dm-verity target
// (Documentation/admin-guide/device-mapper/verity.rst). For the same
// parameters and salt, [Format] writes a hash device that is byte-identical to
// the one `veritysetup format` writes, and the root hash it returns is the one
// the kernel expects in its table and systemd expects in `roothash=`.
//
// The hash tree, in brief (hash type 1):
//
//   - every data block is hashed as H(salt ‖ block); each digest takes
//     2^ceil(log2(digest size)) bytes of a hash block, zero-padded;
//   - a hash block holds 2^floor(log2(hash block size / digest size)) entries;
//     the unused tail of a hash block is zero;
//   - level 0 hashes the data blocks, level i+1 hashes the (whole) blocks of
//     level i, until one block remains; the root hash is H(salt ‖ top block)
//     (or H(salt ‖ data block 0) when there is a single data block);
//   - on the hash device the top level comes first and level 0 last, after the
//     optional 512-byte superblock.
//
// Hash type 0 (the original Chrome OS format) appends the salt instead of
// prepending it and packs digests without padding.
//
// The package only touches the [io.ReaderAt] and [io.WriterAt] it is given: it
// opens no files and needs no privileges or device-mapper.
package verity

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math/bits"
	"strings"

	"github.com/confidisk/confidisk/internal/hashes"
)

// Defaults of `veritysetup format` (cryptsetup configure.ac / meson_options.txt).
const (
	DefaultHashName  = "sha256"
	DefaultBlockSize = 4096
	DefaultSaltSize  = 32
	// MinBlockSize and MaxBlockSize bound data and hash block sizes, as
	// VERITY_BLOCK_SIZE_OK in cryptsetup lib/verity/verity.h.
	MinBlockSize = 512
	MaxBlockSize = 512 * 1024
	// MaxSaltSize is the room for the salt in the superblock.
	MaxSaltSize = 256
	// SuperblockSize is the size of the veritysetup superblock on disk.
	SuperblockSize = 512
)

// ErrUnsupportedHash is returned for a hash algorithm this package does not implement.
var ErrUnsupportedHash = errors.New("unsupported hash algorithm")

// Params describe a dm-verity hash tree: everything that, with the data,
// determines the hash device and the root hash. They correspond to
// cryptsetup's struct crypt_params_verity and to veritysetup's options.
type Params struct {
	// HashName is the hash algorithm: sha1, sha224, sha256 (the default),
	// sha384 or sha512.
	HashName string
	// HashType is 1 (normal, the default for veritysetup) or 0 (original
	// Chrome OS format). A zero Params value means hash type 0, so callers
	// that build Params by hand should start from [DefaultParams].
	HashType uint32
	// DataBlockSize and HashBlockSize are powers of two in 512..512 KiB.
	DataBlockSize uint32
	HashBlockSize uint32
	// DataBlocks is the number of data blocks covered by the tree.
	DataBlocks uint64
	// HashOffset is the byte offset of the hash area on the hash device
	// (where the superblock goes when there is one). A multiple of 512.
	HashOffset uint64
	// Salt is prepended (type 1) or appended (type 0) to every hashed block.
	// Empty means no salt.
	Salt []byte
	// UUID is stored in the superblock (zero when there is none).
	UUID [16]byte
	// NoSuperblock leaves the superblock out, as `veritysetup --no-superblock`.
	NoSuperblock bool
}

// DefaultParams returns veritysetup's defaults for dataBlocks data blocks:
// sha256, hash type 1, 4096-byte blocks, a superblock at offset 0. Salt and
// UUID are left empty; [Format] callers normally set both (random).
func DefaultParams(dataBlocks uint64) Params {
	return Params{
		HashName:      DefaultHashName,
		HashType:      1,
		DataBlockSize: DefaultBlockSize,
		HashBlockSize: DefaultBlockSize,
		DataBlocks:    dataBlocks,
	}
}

// newHash returns a constructor for the named algorithm.
func newHash(name string) (func() hash.Hash, error) {
	if h, ok := hashes.ByName(name); ok {
		return h, nil
	}
	return nil, fmt.Errorf("%w %q (supported: %s)", ErrUnsupportedHash, name, hashes.Names)
}

// validBlockSize reports whether n is a power of two in [MinBlockSize, MaxBlockSize].
func validBlockSize(n uint32) bool {
	return n >= MinBlockSize && n <= MaxBlockSize && n&(n-1) == 0
}

// Validate checks the parameters on their own (not against any device).
func (p *Params) Validate() error {
	if _, err := newHash(p.HashName); err != nil {
		return err
	}
	if p.HashType > 1 {
		return fmt.Errorf("unsupported hash type %d (want 0 or 1)", p.HashType)
	}
	if !validBlockSize(p.DataBlockSize) {
		return fmt.Errorf("invalid data block size %d: want a power of two from %d to %d", p.DataBlockSize, MinBlockSize, MaxBlockSize)
	}
	if !validBlockSize(p.HashBlockSize) {
		return fmt.Errorf("invalid hash block size %d: want a power of two from %d to %d", p.HashBlockSize, MinBlockSize, MaxBlockSize)
	}
	if p.DataBlocks == 0 {
		return errors.New("no data blocks: the data device is smaller than one data block")
	}
	if p.DataBlocks > (1<<63-1)/uint64(p.DataBlockSize) {
		return fmt.Errorf("%d data blocks of %d bytes overflow a 64-bit device size", p.DataBlocks, p.DataBlockSize)
	}
	if len(p.Salt) > MaxSaltSize {
		return fmt.Errorf("salt of %d bytes is too long (at most %d)", len(p.Salt), MaxSaltSize)
	}
	if p.HashOffset%512 != 0 {
		return fmt.Errorf("hash offset %d is not a multiple of 512", p.HashOffset)
	}
	return nil
}

// DataSize is the number of data bytes the tree covers.
func (p *Params) DataSize() uint64 { return p.DataBlocks * uint64(p.DataBlockSize) }

// Geometry is where the hash tree of a [Params] lives on the hash device.
// It follows VERITY_create_or_verify_hash in cryptsetup lib/verity/verity_hash.c.
type Geometry struct {
	// DigestSize is the size of one digest; EntrySize the room one takes in
	// a hash block (DigestSize rounded up to a power of two for hash type 1).
	DigestSize int
	EntrySize  int
	// HashesPerBlock is the number of entries in one hash block.
	HashesPerBlock uint64
	// Levels is the number of hash levels (0 when there is one data block).
	Levels int
	// LevelStart[i] is the index, in hash blocks from the start of the hash
	// device, of the first block of level i; LevelBlocks[i] its block count.
	// Level 0 hashes the data blocks; level Levels-1 is the single top block.
	LevelStart  []uint64
	LevelBlocks []uint64
	// HashStartBlock is the index of the first hash block (the top-level
	// block), as the kernel's <hash_start_block> table argument.
	HashStartBlock uint64
	// HashBlocks is the number of hash blocks of the tree (superblock not included).
	HashBlocks uint64
	// HashDeviceSize is the number of bytes the hash device needs, from its
	// start to the end of the last hash block.
	HashDeviceSize uint64
}

// Geometry computes the layout of the hash tree. It validates p first.
func (p *Params) Geometry() (*Geometry, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	nh, _ := newHash(p.HashName)
	g := &Geometry{DigestSize: nh().Size()}
	g.EntrySize = g.DigestSize
	if p.HashType == 1 {
		g.EntrySize = 1 << bits.Len(uint(g.DigestSize-1))
	}
	if uint32(g.EntrySize) > p.HashBlockSize {
		return nil, fmt.Errorf("hash block size %d is smaller than one %s digest", p.HashBlockSize, p.HashName)
	}
	// hash_per_block_bits = floor(log2(hash_block_size / digest_size)).
	perBlockBits := uint(bits.Len64(uint64(p.HashBlockSize)/uint64(g.DigestSize)) - 1)
	g.HashesPerBlock = 1 << perBlockBits

	for perBlockBits*uint(g.Levels) < 64 && (p.DataBlocks-1)>>(perBlockBits*uint(g.Levels)) != 0 {
		g.Levels++
	}
	g.HashStartBlock = hashStartBlock(p)
	g.LevelStart = make([]uint64, g.Levels)
	g.LevelBlocks = make([]uint64, g.Levels)
	pos := g.HashStartBlock
	for i := g.Levels - 1; i >= 0; i-- {
		shift := uint(i+1) * perBlockBits
		var s uint64
		if shift >= 64 {
			s = 1
		} else {
			s = (p.DataBlocks-1)>>shift + 1
		}
		g.LevelStart[i] = pos
		g.LevelBlocks[i] = s
		if pos+s < pos {
			return nil, errors.New("hash device offset overflow")
		}
		pos += s
	}
	g.HashBlocks = pos - g.HashStartBlock
	if hi, lo := bits.Mul64(pos, uint64(p.HashBlockSize)); hi != 0 || lo > 1<<63-1 {
		return nil, errors.New("hash device size overflows 64 bits")
	}
	g.HashDeviceSize = pos * uint64(p.HashBlockSize)
	return g, nil
}

// hashStartBlock is VERITY_hash_offset_block of cryptsetup lib/verity/verity.c:
// the first hash block after the superblock, or at the hash offset without one.
func hashStartBlock(p *Params) uint64 {
	if p.NoSuperblock {
		return p.HashOffset / uint64(p.HashBlockSize)
	}
	return (p.HashOffset + SuperblockSize + uint64(p.HashBlockSize) - 1) / uint64(p.HashBlockSize)
}

// ParseRootHash decodes a hex root hash and checks its length against the
// digest size of hashName.
func ParseRootHash(s, hashName string) ([]byte, error) {
	nh, err := newHash(hashName)
	if err != nil {
		return nil, err
	}
	s = strings.TrimSpace(s)
	want := nh().Size()
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("root hash %q is not hex: %w", s, err)
	}
	if len(b) != want {
		return nil, fmt.Errorf("root hash has %d bytes, a %s root hash has %d (%d hex digits)", len(b), hashName, want, 2*want)
	}
	return b, nil
}

// ParseSalt decodes a hex salt; "-" or "" means no salt (as in veritysetup).
func ParseSalt(s string) ([]byte, error) {
	if s == "-" || s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("salt %q is not hex: %w", s, err)
	}
	if len(b) > MaxSaltSize {
		return nil, fmt.Errorf("salt of %d bytes is too long (at most %d)", len(b), MaxSaltSize)
	}
	return b, nil
}

// FormatSalt renders a salt as veritysetup does: lowercase hex, "-" when empty.
func FormatSalt(salt []byte) string {
	if len(salt) == 0 {
		return "-"
	}
	return hex.EncodeToString(salt)
}
