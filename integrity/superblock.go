package integrity

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// Magic is the superblock magic, SB_MAGIC "integrt" with its terminating NUL
// (the kernel and cryptsetup compare all 8 bytes).
const Magic = "integrt\x00"

// Sizes and limits of the superblock, from drivers/md/dm-integrity.c.
const (
	// SuperblockSize is the size of struct superblock: the bytes Marshal
	// fills and ParseSuperblock decodes.
	SuperblockSize = 64
	// SuperblockSectors is SB_SECTORS: the superblock area is 8 sectors,
	// which the kernel reads and writes as a whole (sync_rw_sb).
	SuperblockSectors = 8
	// SuperblockAreaSize is the superblock area in bytes (SB_SECTORS << 9).
	SuperblockAreaSize = SuperblockSectors * SectorSize
	// SectorSize is the device-mapper sector (1 << SECTOR_SHIFT).
	SectorSize = 512
	// SaltSize is SALT_SIZE, the size of the fix_hmac salt.
	SaltSize = 16
	// MaxSectorsPerBlock is MAX_SECTORS_PER_BLOCK: blocks are 512 to 4096
	// bytes.
	MaxSectorsPerBlock = 8
	// MaxTagSize is MAX_TAG_SIZE, the largest integrity_tag_size the kernel
	// accepts (dm_integrity_ctr "Too big tag size"): JOURNAL_SECTOR_DATA
	// (504) minus JOURNAL_MAC_PER_SECTOR (8) minus the journal entry header
	// for MAX_SECTORS_PER_BLOCK sectors (8 + 8*8).
	MaxTagSize = 424
	// MinLog2InterleaveSectors and MaxLog2InterleaveSectors are
	// MIN_LOG2_INTERLEAVE_SECTORS and MAX_LOG2_INTERLEAVE_SECTORS, the
	// range dm_integrity_ctr accepts for log2_interleave_sectors when the
	// metadata is on the data device.
	MinLog2InterleaveSectors = 3
	MaxLog2InterleaveSectors = 31
	// MaxDeviceSectors bounds sector counts this package accepts, so that
	// byte offsets fit in an int64.
	MaxDeviceSectors = math.MaxInt64 / SectorSize
)

// Superblock versions, SB_VERSION_* in dm-integrity.c. The kernel writes the
// lowest version that describes the features in use (sb_set_version):
// 2 separate metadata device or recalculating, 3 bitmap mode or dirty bitmap,
// 4 fix_padding, 5 fix_hmac, 6 inline.
const (
	Version1 uint8 = 1
	Version2 uint8 = 2
	Version3 uint8 = 3
	Version4 uint8 = 4
	Version5 uint8 = 5
	Version6 uint8 = 6
)

// Flags is the superblock flags word (SB_FLAG_* in dm-integrity.c).
type Flags uint32

// Superblock flags, SB_FLAG_* in dm-integrity.c and cryptsetup
// lib/integrity/integrity.h.
const (
	// FlagHaveJournalMAC (SB_FLAG_HAVE_JOURNAL_MAC) is set when the table
	// has a journal_mac; journal sectors then carry an 8-byte MAC.
	FlagHaveJournalMAC Flags = 0x1
	// FlagRecalculating (SB_FLAG_RECALCULATING, version 2) marks tags being
	// recomputed from recalc_sector on.
	FlagRecalculating Flags = 0x2
	// FlagDirtyBitmap (SB_FLAG_DIRTY_BITMAP, version 3) marks a bitmap-mode
	// device that was not cleanly suspended.
	FlagDirtyBitmap Flags = 0x4
	// FlagFixedPadding (SB_FLAG_FIXED_PADDING, version 4) pads each
	// metadata run to 4 KiB instead of 128 KiB (table option fix_padding).
	FlagFixedPadding Flags = 0x8
	// FlagFixedHMAC (SB_FLAG_FIXED_HMAC, version 5) means the salt is mixed
	// into HMACs and the superblock is MACed (table option fix_hmac).
	FlagFixedHMAC Flags = 0x10
	// FlagInline (SB_FLAG_INLINE, version 6) means tags live in the
	// device's own integrity profile (mode 'I'); there is no journal.
	FlagInline Flags = 0x20

	knownFlags = FlagHaveJournalMAC | FlagRecalculating | FlagDirtyBitmap |
		FlagFixedPadding | FlagFixedHMAC | FlagInline
)

// flagInfo lists the flags in bit order with cryptsetup's names
// (INTEGRITY_dump) and the first superblock version that may carry them.
func flagInfo() []struct {
	flag       Flags
	name       string
	minVersion uint8
} {
	return []struct {
		flag       Flags
		name       string
		minVersion uint8
	}{
		{FlagHaveJournalMAC, "have_journal_mac", Version1},
		{FlagRecalculating, "recalculating", Version2},
		{FlagDirtyBitmap, "dirty_bitmap", Version3},
		{FlagFixedPadding, "fix_padding", Version4},
		{FlagFixedHMAC, "fix_hmac", Version5},
		{FlagInline, "inline", Version6},
	}
}

// String returns the flag names as cryptsetup's INTEGRITY_dump prints them,
// separated by spaces, with any unknown bits in hex.
func (f Flags) String() string {
	var names []string
	for _, fi := range flagInfo() {
		if f&fi.flag != 0 {
			names = append(names, fi.name)
		}
	}
	if unknown := f &^ knownFlags; unknown != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint32(unknown)))
	}
	return strings.Join(names, " ")
}

// ErrNoSuperblock is returned (wrapped) when the bytes do not start with
// [Magic] and are not all zero.
var ErrNoSuperblock = errors.New("no dm-integrity superblock (magic \"integrt\" not found)")

// ErrUnformatted is returned (wrapped) when the superblock bytes are all
// zero: the state in which the kernel formats the device on first load
// (dm_integrity_ctr formats only an all-zero superblock area).
var ErrUnformatted = errors.New("dm-integrity superblock area is all zeroes (not formatted)")

// ErrInvalidSuperblock is wrapped by every validation error of
// [Superblock.Validate] and [ParseSuperblock]; the message names the field.
var ErrInvalidSuperblock = errors.New("invalid dm-integrity superblock")

// Superblock is the kernel's struct superblock (drivers/md/dm-integrity.c,
// mirrored as struct superblock in cryptsetup lib/integrity/integrity.h).
// It is the first 64 bytes of an 8-sector area at the target's <offset>
// (the LUKS2 data offset). Integers are little-endian:
//
//	off size field
//	  0    8 magic "integrt\0"            (constant, see Magic)
//	  8    1 version
//	  9    1 log2_interleave_sectors
//	 10    2 integrity_tag_size
//	 12    4 journal_sections
//	 16    8 provided_data_sectors
//	 24    4 flags
//	 28    1 log2_sectors_per_block
//	 29    1 log2_blocks_per_bitmap_bit
//	 30    2 pad                          (written as zero)
//	 32    8 recalc_sector
//	 40    8 pad2                         (written as zero)
//	 48   16 salt
//
// The magic and the padding carry no information, so they are not fields
// here: ParseSuperblock checks the magic and ignores the padding (as the
// kernel does), and Marshal writes them.
type Superblock struct {
	// Version is 1..6, the lowest version covering the features in use.
	Version uint8
	// Log2InterleaveSectors is log2 of the number of data sectors between
	// two metadata (tag) runs; 0 when the tags are on a separate metadata
	// device (version 2 and up). The kernel field is __u8 (cryptsetup's
	// header declares it int8_t; valid values are the same).
	Log2InterleaveSectors uint8
	// IntegrityTagSize is the tag size in bytes per block.
	IntegrityTagSize uint16
	// JournalSections is the number of journal sections after the
	// superblock; 0 only in inline mode.
	JournalSections uint32
	// ProvidedDataSectors is the size of the integrity device in 512-byte
	// sectors; userspace uses it as the size of the mapping.
	ProvidedDataSectors uint64
	// Flags holds the SB_FLAG_* bits.
	Flags Flags
	// Log2SectorsPerBlock is log2(block_size / 512), 0..3.
	Log2SectorsPerBlock uint8
	// Log2BlocksPerBitmapBit is log2 of the blocks one bitmap bit covers
	// (version 3; the kernel records it in every mode at format time).
	Log2BlocksPerBitmapBit uint8
	// RecalcSector is where tag recalculation resumes (version 2).
	RecalcSector uint64
	// Salt is the fix_hmac salt (version 5), random at format time.
	Salt [SaltSize]byte
}

// BlockSize returns the block size in bytes (512 << log2_sectors_per_block).
func (sb *Superblock) BlockSize() uint32 {
	return SectorSize << sb.Log2SectorsPerBlock
}

// InterleaveSectors returns the data sectors between metadata runs
// (1 << log2_interleave_sectors), or 0 when the superblock describes a
// separate metadata device.
func (sb *Superblock) InterleaveSectors() uint64 {
	if sb.Log2InterleaveSectors == 0 {
		return 0
	}
	return 1 << sb.Log2InterleaveSectors
}

// invalid builds a validation error naming the field.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidSuperblock, field, fmt.Sprintf(format, args...))
}

// Validate checks the fields the way the kernel's dm_integrity_ctr and
// cryptsetup's INTEGRITY_read_superblock check a superblock read from disk,
// plus the invariants the kernel's initialize_superblock and sb_set_version
// establish:
//
//   - version in 1..6 (ctr "Unknown version"), and every flag allowed by the
//     version (a flag is never written with a lower version);
//   - no unknown flag bits;
//   - integrity_tag_size in 1..MaxTagSize (ctr "Invalid tag size",
//     "Too big tag size");
//   - log2_sectors_per_block at most 3 (ctr block_size limit, cryptsetup
//     "log2_sectors_per_block overflow");
//   - log2_interleave_sectors in 3..31, or 0 for a separate metadata device
//     (version 2 and up, not inline) (ctr "Invalid interleave_sectors");
//   - journal_sections non-zero, or zero exactly in inline mode (ctr
//     "Corrupted superblock, journal_sections is 0 / is not 0");
//   - log2_sectors_per_block + log2_blocks_per_bitmap_bit below 64 (the
//     kernel shifts sector counts by their sum);
//   - provided_data_sectors non-zero, a whole number of blocks and at most
//     MaxDeviceSectors (initialize_superblock never writes 0).
func (sb *Superblock) Validate() error {
	if sb.Version < Version1 || sb.Version > Version6 {
		return invalid("version", "%d: want 1..6", sb.Version)
	}
	if unknown := sb.Flags &^ knownFlags; unknown != 0 {
		return invalid("flags", "0x%x: unknown bits 0x%x", uint32(sb.Flags), uint32(unknown))
	}
	for _, fi := range flagInfo() {
		if sb.Flags&fi.flag != 0 && sb.Version < fi.minVersion {
			return invalid("flags", "0x%x: flag %s needs version %d or later, superblock has version %d",
				uint32(sb.Flags), fi.name, fi.minVersion, sb.Version)
		}
	}
	if sb.IntegrityTagSize == 0 {
		return invalid("integrity_tag_size", "is 0")
	}
	if sb.IntegrityTagSize > MaxTagSize {
		return invalid("integrity_tag_size", "%d exceeds the kernel maximum %d", sb.IntegrityTagSize, MaxTagSize)
	}
	if sb.Log2SectorsPerBlock > 3 {
		return invalid("log2_sectors_per_block", "%d: block size must be 512..4096 bytes (log2 0..3)", sb.Log2SectorsPerBlock)
	}
	inline := sb.Flags&FlagInline != 0
	switch {
	case sb.Log2InterleaveSectors == 0:
		if inline {
			return invalid("log2_interleave_sectors", "is 0 (separate metadata device) in inline mode")
		}
		if sb.Version < Version2 {
			return invalid("log2_interleave_sectors", "is 0 (separate metadata device) with version %d, needs 2 or later", sb.Version)
		}
	case sb.Log2InterleaveSectors < MinLog2InterleaveSectors || sb.Log2InterleaveSectors > MaxLog2InterleaveSectors:
		return invalid("log2_interleave_sectors", "%d: want %d..%d", sb.Log2InterleaveSectors,
			MinLog2InterleaveSectors, MaxLog2InterleaveSectors)
	}
	if inline && sb.JournalSections != 0 {
		return invalid("journal_sections", "%d: must be 0 in inline mode", sb.JournalSections)
	}
	if !inline && sb.JournalSections == 0 {
		return invalid("journal_sections", "is 0")
	}
	if int(sb.Log2SectorsPerBlock)+int(sb.Log2BlocksPerBitmapBit) >= 64 {
		return invalid("log2_blocks_per_bitmap_bit", "%d: with log2_sectors_per_block %d exceeds 63",
			sb.Log2BlocksPerBitmapBit, sb.Log2SectorsPerBlock)
	}
	if sb.ProvidedDataSectors == 0 {
		return invalid("provided_data_sectors", "is 0")
	}
	if sb.ProvidedDataSectors > MaxDeviceSectors {
		return invalid("provided_data_sectors", "%d exceeds %d", sb.ProvidedDataSectors, uint64(MaxDeviceSectors))
	}
	if spb := uint64(1) << sb.Log2SectorsPerBlock; sb.ProvidedDataSectors%spb != 0 {
		return invalid("provided_data_sectors", "%d is not a multiple of the block size (%d sectors)",
			sb.ProvidedDataSectors, spb)
	}
	return nil
}

// ParseSuperblock decodes and validates the superblock in the first
// [SuperblockSize] bytes of b (more may be given, e.g. the whole 4 KiB
// area). It returns an error wrapping [ErrUnformatted] when b is all zero,
// [ErrNoSuperblock] when the magic is wrong, and [ErrInvalidSuperblock]
// (naming the field) when [Superblock.Validate] fails. Mirrors the checks of
// cryptsetup's INTEGRITY_read_superblock and the kernel's dm_integrity_ctr.
func ParseSuperblock(b []byte) (*Superblock, error) {
	if len(b) < SuperblockSize {
		return nil, fmt.Errorf("dm-integrity superblock truncated: %d bytes, want %d", len(b), SuperblockSize)
	}
	if string(b[:len(Magic)]) != Magic {
		if allZero(b) {
			return nil, ErrUnformatted
		}
		return nil, fmt.Errorf("%w: magic is %q", ErrNoSuperblock, b[:len(Magic)])
	}
	le := binary.LittleEndian
	sb := &Superblock{
		Version:                b[8],
		Log2InterleaveSectors:  b[9],
		IntegrityTagSize:       le.Uint16(b[10:]),
		JournalSections:        le.Uint32(b[12:]),
		ProvidedDataSectors:    le.Uint64(b[16:]),
		Flags:                  Flags(le.Uint32(b[24:])),
		Log2SectorsPerBlock:    b[28],
		Log2BlocksPerBitmapBit: b[29],
		RecalcSector:           le.Uint64(b[32:]),
	}
	copy(sb.Salt[:], b[48:64])
	if err := sb.Validate(); err != nil {
		return nil, err
	}
	return sb, nil
}

// Marshal validates sb and returns the whole superblock area as the kernel
// writes it (sync_rw_sb writes SB_SECTORS sectors): [SuperblockAreaSize]
// bytes, struct superblock first, zeroes after it. With FlagFixedHMAC and a
// journal_mac the kernel also stores a MAC of the sector at the end of the
// first 512 bytes (sb_mac); Marshal does not compute it (it has no key).
func (sb *Superblock) Marshal() ([]byte, error) {
	if err := sb.Validate(); err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	b := make([]byte, SuperblockAreaSize)
	le := binary.LittleEndian
	copy(b, Magic)
	b[8] = sb.Version
	b[9] = sb.Log2InterleaveSectors
	le.PutUint16(b[10:], sb.IntegrityTagSize)
	le.PutUint32(b[12:], sb.JournalSections)
	le.PutUint64(b[16:], sb.ProvidedDataSectors)
	le.PutUint32(b[24:], uint32(sb.Flags))
	b[28] = sb.Log2SectorsPerBlock
	b[29] = sb.Log2BlocksPerBitmapBit
	le.PutUint64(b[32:], sb.RecalcSector)
	copy(b[48:64], sb.Salt[:])
	return b, nil
}

// ReadSuperblock reads the superblock area ([SuperblockAreaSize] bytes) at
// byte offset off of r and parses it with [ParseSuperblock]. For a LUKS2
// volume off is the data offset in bytes (the integrity target's <offset>
// argument, the "reserved sectors", times 512); the metadata is on the data
// device even with a detached header (cryptsetup INTEGRITY_metadata_device).
func ReadSuperblock(r io.ReaderAt, off int64) (*Superblock, error) {
	if off < 0 {
		return nil, fmt.Errorf("read dm-integrity superblock: negative offset %d", off)
	}
	b := make([]byte, SuperblockAreaSize)
	n, err := r.ReadAt(b, off)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read dm-integrity superblock at byte %d: got %d of %d bytes: %w", off, n, len(b), err)
	}
	sb, err := ParseSuperblock(b)
	if err != nil {
		return nil, fmt.Errorf("dm-integrity superblock at byte %d: %w", off, err)
	}
	return sb, nil
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
