package integrity

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Kernel defaults and layout constants from drivers/md/dm-integrity.c.
const (
	// DefaultInterleaveSectors is DEFAULT_INTERLEAVE_SECTORS.
	DefaultInterleaveSectors = 32768
	// DefaultJournalSizeFactor is DEFAULT_JOURNAL_SIZE_FACTOR: without
	// journal_sectors the journal is device_sectors >> 7 sectors...
	DefaultJournalSizeFactor = 7
	// DefaultMaxJournalSectors is DEFAULT_MAX_JOURNAL_SECTORS on 64-bit
	// kernels (8192 on 32-bit ones): ...capped at this many sectors.
	DefaultMaxJournalSectors = 131072
	// DefaultSectorsPerBitmapBit is DEFAULT_SECTORS_PER_BITMAP_BIT.
	DefaultSectorsPerBitmapBit = 32768
	// DefaultBufferSectors is DEFAULT_BUFFER_SECTORS.
	DefaultBufferSectors = 128

	// journalBlockSectors is JOURNAL_BLOCK_SECTORS.
	journalBlockSectors = 8
	// journalSectorData is JOURNAL_SECTOR_DATA: a 512-byte journal sector
	// less its 8-byte commit id.
	journalSectorData = SectorSize - 8
	// journalMACPerSector is JOURNAL_MAC_PER_SECTOR.
	journalMACPerSector = 8
	// journalEntryRoundup is JOURNAL_ENTRY_ROUNDUP.
	journalEntryRoundup = 8
	// metadataPaddingSectors is METADATA_PADDING_SECTORS.
	metadataPaddingSectors = 8
)

// Mode is the dm-integrity mode letter of the table (the fourth argument).
type Mode byte

// Modes accepted by dm_integrity_ctr.
const (
	ModeJournal  Mode = 'J' // writes go through the journal (default)
	ModeDirect   Mode = 'D' // no journal (cryptsetup CRYPT_ACTIVATE_NO_JOURNAL)
	ModeBitmap   Mode = 'B' // bitmap instead of journal (needs internal_hash)
	ModeRecovery Mode = 'R' // read-only recovery, never formats
	ModeInline   Mode = 'I' // tags in the device's integrity profile
)

// Params are the dm-integrity table arguments that shape the on-disk
// layout, for a target whose metadata is on the data device (no
// meta_device). Zero values mean "argument absent", i.e. the kernel default.
type Params struct {
	// DeviceSectors is the size of the device the table points at, in
	// 512-byte sectors (bdev_nr_sectors): the whole device, including the
	// Offset reserved sectors in front of the superblock.
	DeviceSectors uint64
	// Offset is the table's <offset>: reserved sectors before the
	// superblock (the LUKS2 data offset, 32768 by default).
	Offset uint64
	// TagSize is the table's <tag size> in bytes, 1..MaxTagSize.
	TagSize uint32
	// BlockSize is block_size:N in bytes, 512..4096, a power of two; 0
	// means 512.
	BlockSize uint32
	// Mode is the mode letter; 0 means ModeJournal. NewLayout supports
	// ModeJournal, ModeDirect and ModeBitmap (the recovery mode never
	// writes a superblock, the inline mode depends on the device's
	// integrity profile).
	Mode Mode
	// JournalSectors is journal_sectors:N; 0 means the kernel default
	// min(DeviceSectors >> 7, 131072). (The kernel turns an explicit
	// journal_sectors:0 into 1; pass 1 for that.)
	JournalSectors uint32
	// InterleaveSectors is interleave_sectors:N; 0 means 32768. The kernel
	// rounds it down to a power of two and clamps it to 8..2^31.
	InterleaveSectors uint32
	// BufferSectors is buffer_sectors:N; 0 means 128 (the kernel turns an
	// explicit buffer_sectors:0 into 1; pass 1 for that). It does not change
	// the superblock, only the size of the metadata buffers, which decides
	// where tags land when the interleave is smaller than the buffer (see
	// Layout.TagOffset).
	BufferSectors uint32
	// SectorsPerBit is sectors_per_bit:N (the bitmap granularity); 0 means
	// 32768. (The kernel turns an explicit 0 into log2 0; pass 1 for that.)
	SectorsPerBit uint64
	// FixPadding is the fix_padding option: metadata runs padded to 4 KiB
	// (FlagFixedPadding, version 4) instead of 128 KiB.
	FixPadding bool
	// FixHMAC is the fix_hmac option; it sets FlagFixedHMAC (version 5) and
	// a random salt only together with InternalHash or JournalMAC.
	FixHMAC bool
	// InternalHash says the table has internal_hash:ALG; it only matters
	// for FixHMAC here (with dm-crypt providing the tags, as LUKS2 does,
	// there is none). TagSize must still be given.
	InternalHash bool
	// JournalMAC says the table has journal_mac:ALG (FlagHaveJournalMAC;
	// journal sectors lose 8 bytes to the MAC).
	JournalMAC bool
}

// LUKS2Params returns the Params of the temporary dm-integrity device
// cryptsetup luksFormat loads to format the integrity superblock
// (lib/setup.c, INTEGRITY_format, dm_integrity_target_set): the whole data
// device, <offset> = the LUKS2 data offset in sectors, mode J, block_size =
// the LUKS2 sector size (always emitted, also 512), default journal,
// interleave and buffer, fix_padding and fix_hmac (cryptsetup adds both when
// the kernel supports them, which every kernel since 5.11 does) and no
// internal_hash or journal_mac (dm-crypt provides the tags).
func LUKS2Params(deviceSectors, dataOffsetSectors uint64, sectorSize, tagSize uint32) Params {
	return Params{
		DeviceSectors: deviceSectors,
		Offset:        dataOffsetSectors,
		TagSize:       tagSize,
		BlockSize:     sectorSize,
		Mode:          ModeJournal,
		FixPadding:    true,
		FixHMAC:       true,
	}
}

// ErrDeviceTooSmall is wrapped when no data sector fits the device
// (initialize_superblock "Could not initialize superblock" / ctr "The device
// is too small").
var ErrDeviceTooSmall = errors.New("device too small for dm-integrity")

// Layout is the geometry of a dm-integrity device whose metadata is on the
// data device: the superblock and the values dm_integrity_ctr derives from
// it. The device is, from Offset on:
//
//	superblock area   SuperblockSectors
//	journal           JournalSections * JournalSectionSectors
//	then, repeated:   MetadataRunSectors of tags | InterleaveSectors of data
//
// (the last data run may be partial).
type Layout struct {
	// Superblock is what the kernel writes. When FlagFixedHMAC is set the
	// kernel fills Salt with random bytes; here it is zero.
	Superblock Superblock
	// DeviceSectors and Offset are the inputs (Params.DeviceSectors,
	// Params.Offset).
	DeviceSectors uint64
	Offset        uint64
	// JournalEntrySize is ic->journal_entry_size in bytes: the 8-byte
	// sector number, 8 bytes per sector of the block and the tag, rounded
	// up to 8 (calculate_journal_section_size).
	JournalEntrySize uint32
	// JournalEntriesPerSector is ic->journal_entries_per_sector.
	JournalEntriesPerSector uint32
	// JournalSectionEntries is ic->journal_section_entries.
	JournalSectionEntries uint32
	// JournalSectionSectors is ic->journal_section_sectors: 8 sectors of
	// entries plus the data blocks they describe.
	JournalSectionSectors uint32
	// InitialSectors is ic->initial_sectors: superblock plus journal.
	InitialSectors uint64
	// MetadataRunSectors is ic->metadata_run: the tag area in front of
	// each interleave run, padded (calculate_device_limits).
	MetadataRunSectors uint64
	// Log2BufferSectors is ic->log2_buffer_sectors after dm_integrity_ctr
	// limits it to the alignment of the metadata run.
	Log2BufferSectors uint8
}

// geom holds the inputs of the kernel's layout arithmetic.
type geom struct {
	deviceSectors uint64 // ic->meta_device_sectors == ic->data_device_sectors
	start         uint64 // ic->start
	tagSize       uint64
	log2SPB       uint8 // sb->log2_sectors_per_block
	log2Interl    uint8 // sb->log2_interleave_sectors
	journalMAC    bool  // SB_FLAG_HAVE_JOURNAL_MAC
	fixPadding    bool  // SB_FLAG_FIXED_PADDING

	// set by journalSectionSize
	entrySize, entriesPerSector, sectionEntries, sectionSectors uint32
}

// journalSectionSize mirrors calculate_journal_section_size.
func (g *geom) journalSectionSize() {
	spb := uint32(1) << g.log2SPB
	// offsetof(struct journal_entry, last_bytes[sectors_per_block]) is the
	// 8-byte sector number plus one 8-byte commit_id_t per sector.
	g.entrySize = roundUp32(8+8*spb+uint32(g.tagSize), journalEntryRoundup)
	space := uint32(journalSectorData)
	if g.journalMAC {
		space -= journalMACPerSector
	}
	g.entriesPerSector = space / g.entrySize
	g.sectionEntries = g.entriesPerSector * journalBlockSectors
	g.sectionSectors = g.sectionEntries<<g.log2SPB + journalBlockSectors
}

// deviceLimits mirrors calculate_device_limits for a target without
// meta_device and not in inline mode, for journalSections sections and
// provided data sectors: it returns ic->initial_sectors and ic->metadata_run,
// or ok == false where the kernel returns -EINVAL.
func (g *geom) deviceLimits(journalSections uint32, provided uint64) (initial, metadataRun uint64, ok bool) {
	initial = SuperblockSectors + uint64(g.sectionSectors)*uint64(journalSections)
	if initial+metadataPaddingSectors >= g.deviceSectors || initial > math.MaxUint32 {
		return 0, 0, false
	}
	// "we have to maintain excessive padding for compatibility with
	// existing volumes": 128 KiB without fix_padding, 4 KiB with it.
	padding := uint64(SectorSize) << metadataPaddingSectors
	if g.fixPadding {
		padding = metadataPaddingSectors * SectorSize
	}
	metadataRun = roundUp64(g.tagSize<<(g.log2Interl-g.log2SPB), padding) / SectorSize
	last := provided - 1
	area, offset := last>>g.log2Interl, last&(1<<g.log2Interl-1) // get_area_and_offset
	lastSector := g.dataSector(initial, metadataRun, area, offset)
	if lastSector < g.start || lastSector >= g.deviceSectors {
		return 0, 0, false
	}
	return initial, metadataRun, true
}

// dataSector mirrors get_data_sector (no meta_device).
func (g *geom) dataSector(initial, metadataRun, area, offset uint64) uint64 {
	return area<<g.log2Interl + (area+1)*metadataRun + initial + offset + g.start
}

// providedDataSectors mirrors get_provided_data_sectors (no meta_device):
// the largest multiple of 8 sectors, found bit by bit from the top, for
// which calculate_device_limits succeeds; 0 if none.
func (g *geom) providedDataSectors(journalSections uint32) uint64 {
	var provided uint64
	for bit := bits.Len64(g.deviceSectors) - 1; bit >= 3; bit-- {
		try := provided | 1<<bit
		if _, _, ok := g.deviceLimits(journalSections, try); ok {
			provided = try
		}
	}
	return provided
}

// NewLayout predicts what the kernel writes when a dm-integrity target with
// parameters p is loaded on a device whose superblock area is all zero (the
// state cryptsetup creates before formatting): the superblock and the
// geometry. Each step mirrors drivers/md/dm-integrity.c:
//
//  1. dm_integrity_ctr: defaults (journal_sectors = min(device >> 7,
//     131072), interleave 32768, buffer 128) and argument checks (tag
//     size, block_size, bitmap mode needs internal_hash).
//  2. initialize_superblock: flags (HAVE_JOURNAL_MAC, FIXED_HMAC,
//     FIXED_PADDING), log2_sectors_per_block, journal_sections =
//     journal_sectors / journal_section_sectors (at least 1) using
//     calculate_journal_section_size, log2_interleave_sectors = fls of the
//     interleave clamped to 3..31, provided_data_sectors from
//     get_provided_data_sectors (which probes calculate_device_limits), and
//     the version from sb_set_version.
//  3. dm_integrity_ctr again: calculate_device_limits for the final
//     geometry, log2_blocks_per_bitmap_bit from the bitmap granularity and
//     the journal size, the buffer size limit, and the check that the
//     8-sector mapping cryptsetup loads fits.
//
// The journal itself (init_journal writes commit ids into every journal
// sector) is not described here.
func NewLayout(p Params) (*Layout, error) {
	mode := p.Mode
	if mode == 0 {
		mode = ModeJournal
	}
	switch mode {
	case ModeJournal, ModeDirect, ModeBitmap:
	case ModeRecovery, ModeInline:
		return nil, fmt.Errorf("dm-integrity layout: mode %q is not supported (only J, D and B format a superblock here)", rune(mode))
	default:
		return nil, fmt.Errorf("dm-integrity layout: invalid mode %q (expecting J, B, D, R, I)", rune(mode))
	}
	if p.TagSize == 0 {
		return nil, errors.New("dm-integrity layout: tag size is 0")
	}
	if p.TagSize > MaxTagSize {
		return nil, fmt.Errorf("dm-integrity layout: tag size %d exceeds the kernel maximum %d", p.TagSize, MaxTagSize)
	}
	blockSize := p.BlockSize
	if blockSize == 0 {
		blockSize = SectorSize
	}
	if blockSize < SectorSize || blockSize > MaxSectorsPerBlock*SectorSize || blockSize&(blockSize-1) != 0 {
		return nil, fmt.Errorf("dm-integrity layout: invalid block size %d (want 512, 1024, 2048 or 4096)", p.BlockSize)
	}
	if mode == ModeBitmap && !p.InternalHash {
		return nil, errors.New("dm-integrity layout: bitmap mode can be only used with internal hash")
	}
	if p.DeviceSectors > MaxDeviceSectors {
		return nil, fmt.Errorf("dm-integrity layout: device of %d sectors exceeds %d", p.DeviceSectors, uint64(MaxDeviceSectors))
	}
	if p.Offset >= p.DeviceSectors {
		return nil, fmt.Errorf("dm-integrity layout: offset %d is not inside the device of %d sectors: %w",
			p.Offset, p.DeviceSectors, ErrDeviceTooSmall)
	}

	// dm_integrity_ctr defaults.
	journalSectors := p.JournalSectors
	if journalSectors == 0 {
		journalSectors = uint32(min(DefaultMaxJournalSectors, p.DeviceSectors>>DefaultJournalSizeFactor))
	}
	bufferSectors := p.BufferSectors
	if bufferSectors == 0 {
		bufferSectors = DefaultBufferSectors
	}
	log2Buffer := min(uint8(bits.Len32(bufferSectors)-1), 31-9)

	// initialize_superblock.
	sb := Superblock{
		IntegrityTagSize:    uint16(p.TagSize),
		Log2SectorsPerBlock: uint8(bits.TrailingZeros32(blockSize / SectorSize)),
	}
	if p.JournalMAC {
		sb.Flags |= FlagHaveJournalMAC
	}
	g := geom{
		deviceSectors: p.DeviceSectors,
		start:         p.Offset,
		tagSize:       uint64(p.TagSize),
		log2SPB:       sb.Log2SectorsPerBlock,
		journalMAC:    p.JournalMAC,
		fixPadding:    p.FixPadding,
	}
	g.journalSectionSize()
	sb.JournalSections = max(journalSectors/g.sectionSectors, 1)
	if p.FixHMAC && (p.InternalHash || p.JournalMAC) {
		sb.Flags |= FlagFixedHMAC // and get_random_bytes(salt)
	}
	if p.FixPadding {
		sb.Flags |= FlagFixedPadding
	}
	interleave := p.InterleaveSectors
	if interleave == 0 {
		interleave = DefaultInterleaveSectors
	}
	sb.Log2InterleaveSectors = min(max(uint8(bits.Len32(interleave)-1), MinLog2InterleaveSectors), MaxLog2InterleaveSectors)
	g.log2Interl = sb.Log2InterleaveSectors
	sb.ProvidedDataSectors = g.providedDataSectors(sb.JournalSections)
	if sb.ProvidedDataSectors == 0 {
		return nil, fmt.Errorf("dm-integrity layout: %d sectors at offset %d: %w", p.DeviceSectors, p.Offset, ErrDeviceTooSmall)
	}
	sb.Version = setVersion(sb.Flags, mode)

	// dm_integrity_ctr after the superblock is known.
	initial, metadataRun, ok := g.deviceLimits(sb.JournalSections, sb.ProvidedDataSectors)
	if !ok { // cannot happen: providedDataSectors found a fitting value
		return nil, fmt.Errorf("dm-integrity layout: %w", ErrDeviceTooSmall)
	}
	sb.Log2BlocksPerBitmapBit = blocksPerBitmapBit(p.SectorsPerBit, sb.Log2SectorsPerBlock,
		uint64(g.sectionSectors)*uint64(sb.JournalSections), sb.ProvidedDataSectors)
	if sb.ProvidedDataSectors < SuperblockSectors {
		// cryptsetup's temporary device maps 8 sectors (ctr "Not enough
		// provided sectors for requested mapping size"); cannot happen, as
		// provided_data_sectors is a non-zero multiple of 8.
		return nil, fmt.Errorf("dm-integrity layout: %d provided sectors: %w", sb.ProvidedDataSectors, ErrDeviceTooSmall)
	}
	return &Layout{
		Superblock:              sb,
		DeviceSectors:           p.DeviceSectors,
		Offset:                  p.Offset,
		JournalEntrySize:        g.entrySize,
		JournalEntriesPerSector: g.entriesPerSector,
		JournalSectionEntries:   g.sectionEntries,
		JournalSectionSectors:   g.sectionSectors,
		InitialSectors:          initial,
		MetadataRunSectors:      metadataRun,
		Log2BufferSectors:       min(log2Buffer, uint8(bits.TrailingZeros64(metadataRun))),
	}, nil
}

// Layout returns the geometry the kernel derives when it loads a target on
// an already formatted device of deviceSectors sectors whose superblock
// (sb) is at offset sectors, with buffer_sectors bufferSectors (0 means
// 128). It mirrors dm_integrity_ctr: get_provided_data_sectors and
// calculate_device_limits from the on-disk journal_sections, interleave,
// tag and block size. Note that the kernel recomputes provided_data_sectors
// from the device size (and rewrites the superblock on resume if it
// changed), so the returned Superblock.ProvidedDataSectors is the value the
// kernel will use, which may differ from sb's after a resize. Superblocks
// for a separate metadata device or inline mode are not supported.
func (sb *Superblock) Layout(deviceSectors, offset uint64, bufferSectors uint32) (*Layout, error) {
	if err := sb.Validate(); err != nil {
		return nil, fmt.Errorf("dm-integrity layout: %w", err)
	}
	if sb.Flags&FlagInline != 0 || sb.Log2InterleaveSectors == 0 {
		return nil, errors.New("dm-integrity layout: inline mode and separate metadata devices are not supported")
	}
	if deviceSectors > MaxDeviceSectors {
		return nil, fmt.Errorf("dm-integrity layout: device of %d sectors exceeds %d", deviceSectors, uint64(MaxDeviceSectors))
	}
	if bufferSectors == 0 {
		bufferSectors = DefaultBufferSectors
	}
	g := geom{
		deviceSectors: deviceSectors,
		start:         offset,
		tagSize:       uint64(sb.IntegrityTagSize),
		log2SPB:       sb.Log2SectorsPerBlock,
		log2Interl:    sb.Log2InterleaveSectors,
		journalMAC:    sb.Flags&FlagHaveJournalMAC != 0,
		fixPadding:    sb.Flags&FlagFixedPadding != 0,
	}
	g.journalSectionSize()
	out := *sb
	out.ProvidedDataSectors = g.providedDataSectors(sb.JournalSections)
	if out.ProvidedDataSectors == 0 {
		return nil, fmt.Errorf("dm-integrity layout: %d sectors at offset %d: %w", deviceSectors, offset, ErrDeviceTooSmall)
	}
	initial, metadataRun, ok := g.deviceLimits(sb.JournalSections, out.ProvidedDataSectors)
	if !ok {
		return nil, fmt.Errorf("dm-integrity layout: %w", ErrDeviceTooSmall)
	}
	log2Buffer := min(uint8(bits.Len32(bufferSectors)-1), 31-9)
	return &Layout{
		Superblock:              out,
		DeviceSectors:           deviceSectors,
		Offset:                  offset,
		JournalEntrySize:        g.entrySize,
		JournalEntriesPerSector: g.entriesPerSector,
		JournalSectionEntries:   g.sectionEntries,
		JournalSectionSectors:   g.sectionSectors,
		InitialSectors:          initial,
		MetadataRunSectors:      metadataRun,
		Log2BufferSectors:       min(log2Buffer, uint8(bits.TrailingZeros64(metadataRun))),
	}, nil
}

// DataSector returns the device sector that holds logical sector s of the
// integrity device (get_area_and_offset + get_data_sector).
func (l *Layout) DataSector(s uint64) (uint64, error) {
	if s >= l.Superblock.ProvidedDataSectors {
		return 0, fmt.Errorf("data sector: sector %d beyond provided_data_sectors %d", s, l.Superblock.ProvidedDataSectors)
	}
	li := l.Superblock.Log2InterleaveSectors
	area, offset := s>>li, s&(1<<li-1)
	return area<<li + (area+1)*l.MetadataRunSectors + l.InitialSectors + offset + l.Offset, nil
}

// TagOffset returns the byte offset on the device of the tag of the block
// that holds logical sector s, as get_metadata_sector_and_offset computes it
// relative to the buffer start (dm_bufio_set_sector_offset(start +
// initial_sectors)). The area's metadata start is rounded down to a whole
// metadata buffer (1 << Log2BufferSectors sectors), which matters only when
// the interleave is smaller than the buffer.
func (l *Layout) TagOffset(s uint64) (uint64, error) {
	if s >= l.Superblock.ProvidedDataSectors {
		return 0, fmt.Errorf("tag offset: sector %d beyond provided_data_sectors %d", s, l.Superblock.ProvidedDataSectors)
	}
	li := l.Superblock.Log2InterleaveSectors
	area, offset := s>>li, s&(1<<li-1)
	ms := area<<li + area*l.MetadataRunSectors
	ms = ms >> l.Log2BufferSectors << l.Log2BufferSectors
	block := offset >> l.Superblock.Log2SectorsPerBlock
	return (l.Offset+l.InitialSectors+ms)*SectorSize + block*uint64(l.Superblock.IntegrityTagSize), nil
}

// setVersion mirrors sb_set_version for a target without meta_device.
func setVersion(f Flags, mode Mode) uint8 {
	switch {
	case f&FlagInline != 0:
		return Version6
	case f&FlagFixedHMAC != 0:
		return Version5
	case f&FlagFixedPadding != 0:
		return Version4
	case mode == ModeBitmap || f&FlagDirtyBitmap != 0:
		return Version3
	case f&FlagRecalculating != 0:
		return Version2
	default:
		return Version1
	}
}

// blocksPerBitmapBit mirrors the computation of log2_blocks_per_bitmap_bit in
// dm_integrity_ctr, which the kernel stores in a freshly formatted
// superblock in every mode: start from sectors_per_bit (default 32768), at
// least one block, and double it until the journal area, read as a bitmap,
// has a bit for every chunk of the provided sectors.
func blocksPerBitmapBit(sectorsPerBit uint64, log2SPB uint8, journalSectors, provided uint64) uint8 {
	l := uint(bits.Len64(DefaultSectorsPerBitmapBit) - 1)
	if sectorsPerBit != 0 {
		l = uint(bits.Len64(sectorsPerBit) - 1)
	}
	l = max(l, uint(log2SPB))
	bitsInJournal := min(journalSectors<<(9+3), math.MaxUint32)
	if bitsInJournal != 0 {
		for l < 63 && bitsInJournal < (provided+(1<<l)-1)>>l {
			l++
		}
	}
	return uint8(l - uint(log2SPB))
}

func roundUp32(x, m uint32) uint32 { return (x + m - 1) / m * m }

func roundUp64(x, m uint64) uint64 { return (x + m - 1) / m * m }
