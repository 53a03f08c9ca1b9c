package dm

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// IntegrityMode is the dm-integrity mode letter
// (Documentation/admin-guide/device-mapper/dm-integrity.rst, "mode").
type IntegrityMode byte

// The dm-integrity modes.
const (
	// IntegrityJournal writes data and tags through the journal ('J'), the
	// default.
	IntegrityJournal IntegrityMode = 'J'
	// IntegrityBitmap tracks dirty regions in a bitmap instead of a journal
	// ('B').
	IntegrityBitmap IntegrityMode = 'B'
	// IntegrityDirect writes without a journal ('D'); a crash may leave
	// data and tags out of sync.
	IntegrityDirect IntegrityMode = 'D'
	// IntegrityRecovery neither replays the journal nor checks tags ('R'),
	// for recovering data.
	IntegrityRecovery IntegrityMode = 'R'
	// IntegrityInline stores tags in the device's own inline metadata
	// ('I', kernel 6.11+).
	IntegrityInline IntegrityMode = 'I'
)

// IntegrityAlg is an algorithm argument of dm-integrity with an optional
// key: "<name>:<alg>[:<hex key>]" (internal_hash, journal_crypt,
// journal_mac in Documentation/admin-guide/device-mapper/dm-integrity.rst).
type IntegrityAlg struct {
	// Name is the kernel crypto API name, such as "crc32c" or "hmac(sha256)".
	Name string
	// Key is the optional key, written in hex.
	Key []byte
}

func (a IntegrityAlg) arg(option string) string {
	if len(a.Key) == 0 {
		return option + ":" + a.Name
	}
	return option + ":" + a.Name + ":" + hex.EncodeToString(a.Key)
}

// IntegrityParams are the arguments of a dm-integrity target
// (Documentation/admin-guide/device-mapper/dm-integrity.rst, "Target
// arguments"):
//
//	<dev> <offset> <tag size> <mode> <#opt_params> [<opt_params>]
//
// [IntegrityParams.Params] writes them as cryptsetup's
// lib/libdevmapper.c:get_dm_integrity_params does: the option count is
// always present (also 0) and options come in its fixed order. Note that
// `dmsetup table` shows the kernel's own rendering (dm_integrity_status),
// which adds defaults such as journal_sectors and interleave_sectors.
type IntegrityParams struct {
	// Device is the backing device path or "major:minor".
	Device string
	// Offset is the number of reserved sectors at the start of Device
	// before the dm-integrity superblock (the LUKS2 data offset).
	Offset uint64
	// TagSize is the integrity tag size in bytes per sector (with dm-crypt
	// on top: IV bytes plus authentication tag bytes).
	TagSize uint32
	// Mode is the mode letter; zero means IntegrityJournal.
	Mode IntegrityMode

	// JournalSectors is the journal size in 512-byte sectors (journal_sectors).
	JournalSectors uint32
	// JournalWatermark is the journal fill percentage that starts a flush
	// (journal_watermark). Not with IntegrityBitmap.
	JournalWatermark uint32
	// SectorsPerBit is the number of sectors one bitmap bit covers
	// (sectors_per_bit). IntegrityBitmap only.
	SectorsPerBit uint32
	// CommitTime is the journal commit interval in milliseconds
	// (commit_time). Not with IntegrityBitmap.
	CommitTime uint32
	// BitmapFlushInterval is the bitmap flush interval in milliseconds
	// (bitmap_flush_interval). IntegrityBitmap only.
	BitmapFlushInterval uint32
	// InterleaveSectors is the number of data sectors between metadata
	// areas, a power of two (interleave_sectors).
	InterleaveSectors uint32
	// BlockSize is the integrity block size in bytes, 512..4096, a power of
	// two (block_size); 0 leaves the kernel default of 512.
	BlockSize uint32
	// BufferSectors is the size of a metadata buffer in sectors (buffer_sectors).
	BufferSectors uint32
	// InternalHash makes dm-integrity compute tags itself (internal_hash);
	// nil when dm-crypt above provides them.
	InternalHash *IntegrityAlg
	// JournalMAC protects the journal with a MAC (journal_mac).
	JournalMAC *IntegrityAlg
	// JournalCrypt encrypts the journal (journal_crypt).
	JournalCrypt *IntegrityAlg
	// FixPadding uses the corrected padding layout (fix_padding); cryptsetup
	// sets it whenever the kernel supports it.
	FixPadding bool
	// FixHMAC mixes the superblock salt and sector numbers into HMACs
	// (fix_hmac).
	FixHMAC bool
	// LegacyRecalculate allows recalculation with keyed hashes on old
	// layouts (legacy_recalculate).
	LegacyRecalculate bool
	// Recalculate recomputes tags in the background (recalculate).
	Recalculate bool
	// ResetRecalculate restarts recalculation from the beginning
	// (reset_recalculate).
	ResetRecalculate bool
	// AllowDiscards passes discards down (allow_discards).
	AllowDiscards bool
	// MetaDevice keeps metadata on a separate device (meta_device).
	MetaDevice string
}

func (p IntegrityParams) mode() IntegrityMode {
	if p.Mode == 0 {
		return IntegrityJournal
	}
	return p.Mode
}

// Validate checks the parameters for what dm-integrity's dm_integrity_ctr
// (drivers/md/dm-integrity.c) would reject. Its errors never contain keys.
func (p IntegrityParams) Validate() error {
	if err := checkWord("device", p.Device); err != nil {
		return fmt.Errorf("dm: integrity: %w", err)
	}
	m := p.mode()
	switch m {
	case IntegrityJournal, IntegrityBitmap, IntegrityDirect, IntegrityRecovery, IntegrityInline:
	default:
		return fmt.Errorf("dm: integrity: mode %q: want J, B, D, R or I", rune(m))
	}
	if p.TagSize == 0 && p.InternalHash == nil {
		return errors.New("dm: integrity: tag size 0 needs internal_hash to derive it from")
	}
	if m == IntegrityBitmap {
		if p.JournalWatermark != 0 || p.CommitTime != 0 {
			return errors.New("dm: integrity: journal_watermark and commit_time do not apply to bitmap mode; use sectors_per_bit and bitmap_flush_interval")
		}
	} else if p.SectorsPerBit != 0 || p.BitmapFlushInterval != 0 {
		return fmt.Errorf("dm: integrity: sectors_per_bit and bitmap_flush_interval need bitmap mode (B), not %q", rune(m))
	}
	if p.JournalWatermark > 100 {
		return fmt.Errorf("dm: integrity: journal_watermark %d: want a percentage 0..100", p.JournalWatermark)
	}
	if p.InterleaveSectors != 0 && !isPowerOfTwo(uint64(p.InterleaveSectors)) {
		return fmt.Errorf("dm: integrity: interleave_sectors %d is not a power of two", p.InterleaveSectors)
	}
	if p.BlockSize != 0 && (p.BlockSize < SectorSize || p.BlockSize > 4096 || !isPowerOfTwo(uint64(p.BlockSize))) {
		return fmt.Errorf("dm: integrity: block_size %d: want a power of two in 512..4096", p.BlockSize)
	}
	if p.BufferSectors != 0 && !isPowerOfTwo(uint64(p.BufferSectors)) {
		return fmt.Errorf("dm: integrity: buffer_sectors %d is not a power of two", p.BufferSectors)
	}
	for _, a := range []struct {
		opt string
		alg *IntegrityAlg
	}{{"internal_hash", p.InternalHash}, {"journal_mac", p.JournalMAC}, {"journal_crypt", p.JournalCrypt}} {
		if a.alg == nil {
			continue
		}
		if err := checkWord(a.opt+" algorithm", a.alg.Name); err != nil {
			return fmt.Errorf("dm: integrity: %w", err)
		}
		if strings.Contains(a.alg.Name, ":") {
			return fmt.Errorf("dm: integrity: %s algorithm %q contains ':'", a.opt, a.alg.Name)
		}
	}
	if p.MetaDevice != "" {
		if err := checkWord("meta device", p.MetaDevice); err != nil {
			return fmt.Errorf("dm: integrity: %w", err)
		}
	}
	return nil
}

// Params returns the integrity argument string in the order of cryptsetup's
// get_dm_integrity_params: journal_sectors, journal_watermark|sectors_per_bit,
// commit_time|bitmap_flush_interval, interleave_sectors, block_size,
// buffer_sectors, internal_hash, journal_mac, journal_crypt, fix_padding,
// fix_hmac, legacy_recalculate, recalculate, reset_recalculate,
// allow_discards, meta_device.
func (p IntegrityParams) Params() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	var opts []string
	uf := func(name string, v uint32) {
		if v != 0 {
			opts = append(opts, fmt.Sprintf("%s:%d", name, v))
		}
	}
	uf("journal_sectors", p.JournalSectors)
	uf("journal_watermark", p.JournalWatermark)
	uf("sectors_per_bit", p.SectorsPerBit)
	uf("commit_time", p.CommitTime)
	uf("bitmap_flush_interval", p.BitmapFlushInterval)
	uf("interleave_sectors", p.InterleaveSectors)
	uf("block_size", p.BlockSize)
	uf("buffer_sectors", p.BufferSectors)
	if p.InternalHash != nil {
		opts = append(opts, p.InternalHash.arg("internal_hash"))
	}
	if p.JournalMAC != nil {
		opts = append(opts, p.JournalMAC.arg("journal_mac"))
	}
	if p.JournalCrypt != nil {
		opts = append(opts, p.JournalCrypt.arg("journal_crypt"))
	}
	for _, o := range []struct {
		on   bool
		name string
	}{
		{p.FixPadding, "fix_padding"},
		{p.FixHMAC, "fix_hmac"},
		{p.LegacyRecalculate, "legacy_recalculate"},
		{p.Recalculate, "recalculate"},
		{p.ResetRecalculate, "reset_recalculate"},
		{p.AllowDiscards, "allow_discards"},
	} {
		if o.on {
			opts = append(opts, o.name)
		}
	}
	if p.MetaDevice != "" {
		opts = append(opts, "meta_device:"+p.MetaDevice)
	}
	s := fmt.Sprintf("%s %d %d %c %d", p.Device, p.Offset, p.TagSize, p.mode(), len(opts))
	if len(opts) > 0 {
		s += " " + strings.Join(opts, " ")
	}
	return s, nil
}

// Target returns the integrity table line covering length sectors from
// start. For a new device, load it first with a small length (cryptsetup
// uses 8 sectors) so the kernel formats the superblock, then read
// provided_data_sectors from the superblock and load the full length.
func (p IntegrityParams) Target(start, length uint64) (Target, error) {
	params, err := p.Params()
	if err != nil {
		return Target{}, err
	}
	if length == 0 {
		return Target{}, errors.New("dm: integrity: zero length")
	}
	return Target{Start: start, Length: length, Type: "integrity", Params: params}, nil
}
