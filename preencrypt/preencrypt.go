// Package preencrypt writes a whole LUKS2 volume with integrity in
// userspace: after the LUKS2 header, the dm-integrity superblock and an
// empty journal, and every data sector encrypted with its authentication
// tag where dm-integrity keeps it, so that the kernel's dm-integrity and
// dm-crypt open the volume with no recalculation and read back exactly the
// data given (the rest as zeros, never an I/O error). No device-mapper, no
// root: the output can be an image file built by trusted infrastructure.
//
// Supported: aes-xts-plain64 with --integrity hmac-sha256 or hmac-sha512,
// aes-gcm-random with --integrity aead (package sectorcrypt), 512- to
// 4096-byte sectors, iv_tweak 0.
//
// The layout is that of drivers/md/dm-integrity.c as package integrity
// computes it (initialize_superblock, calculate_device_limits,
// get_data_sector, get_metadata_sector_and_offset). The journal is written
// as the kernel initialises it when it formats a device (init_journal:
// commit ids of sequence 0, every entry unused), so that replay_journal
// finds it empty. A journal of zeros would not do: its commit ids match
// none, the kernel logs "Error on journal commit id" and fails every I/O.
package preencrypt

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/sectorcrypt"
)

// Plan is what [Write] will write, worked out before any byte is written:
// Layout.Superblock is the superblock exactly as it will be on disk.
type Plan struct {
	Layout *integrity.Layout
	sealer sectorcrypt.Sealer
	// DataBytes is how much of the volume the data fills.
	DataBytes int64
}

// ProvidedBytes is the size of the opened volume (provided_data_sectors).
func (p *Plan) ProvidedBytes() int64 {
	return int64(p.Layout.Superblock.ProvidedDataSectors) * integrity.SectorSize
}

// NewPlan checks that h (a header for a device of devSectors 512-byte
// sectors, with volume key vk) is a volume this package can write and that
// dataBytes of data fit it, and computes the layout.
func NewPlan(h *luks2.Header, vk []byte, devSectors uint64, dataBytes int64) (*Plan, error) {
	seg := h.Metadata.Segments[0]
	switch {
	case seg == nil || seg.Type != "crypt":
		return nil, errors.New("segment 0 is not a crypt segment")
	case seg.Integrity == nil:
		return nil, fmt.Errorf("segment 0 (%s) has no integrity: offline writing is for volumes with integrity", seg.Encryption)
	case seg.IVTweak != 0:
		return nil, fmt.Errorf("segment iv_tweak %d: only 0 (no reencryption) is supported", seg.IVTweak)
	case uint64(seg.Offset)%integrity.SectorSize != 0:
		return nil, fmt.Errorf("segment offset %d is not a multiple of 512", seg.Offset)
	}
	sealer, err := sectorcrypt.ForSegment(seg.Encryption, seg.Integrity.Type, vk, seg.SectorSize)
	if err != nil {
		return nil, err
	}
	l, err := integrity.NewLayout(integrity.LUKS2Params(devSectors, uint64(seg.Offset)/integrity.SectorSize, uint32(seg.SectorSize), uint32(sealer.TagSize())))
	if err != nil {
		return nil, err
	}
	if l.Superblock.Flags&integrity.FlagFixedHMAC != 0 {
		if _, err := rand.Read(l.Superblock.Salt[:]); err != nil { // as the kernel's get_random_bytes
			return nil, err
		}
	}
	p := &Plan{Layout: l, sealer: sealer, DataBytes: dataBytes}
	switch {
	case dataBytes < 0:
		return nil, fmt.Errorf("data size %d", dataBytes)
	case dataBytes%int64(seg.SectorSize) != 0:
		return nil, fmt.Errorf("data of %d bytes is not a multiple of the %d-byte sector size", dataBytes, seg.SectorSize)
	case dataBytes > p.ProvidedBytes():
		return nil, fmt.Errorf("data of %d bytes is larger than the volume, which holds %d bytes", dataBytes, p.ProvidedBytes())
	}
	return p, nil
}

// chunkSectors is how many 512-byte sectors Write seals at a time (1 MiB).
const chunkSectors = 2048

// Syncer is a device whose writes can be made durable (an *os.File).
type Syncer interface {
	Sync() error
}

// Write writes the volume after its header: every data sector (data's
// bytes, then zeros) with its tag, the metadata runs, the empty journal
// and, last, the dm-integrity superblock. When dev is a [Syncer], all of it
// is made durable before the superblock is written, and the superblock
// after, so that a volume whose writing failed or lost power half-way has
// no superblock and does not open. progress, when set, gets the bytes of
// data sectors written so far and their total.
func (p *Plan) Write(dev io.WriterAt, data io.ReaderAt, progress func(done, total int64)) error {
	l := p.Layout
	sb := l.Superblock
	s := int64(p.sealer.SectorSize())
	spb := uint64(s / integrity.SectorSize)
	interleave := sb.InterleaveSectors()
	provided := sb.ProvidedDataSectors
	runBytes := l.MetadataRunSectors * integrity.SectorSize
	tags := make([]byte, runBytes)
	buf := make([]byte, chunkSectors*integrity.SectorSize)
	for area := uint64(0); area*interleave < provided; area++ {
		first := area * interleave
		end := min(first+interleave, provided)
		clear(tags)
		for c := first; c < end; c += chunkSectors {
			n := min(chunkSectors, end-c)
			chunk := buf[:n*integrity.SectorSize]
			if err := p.readData(data, chunk, int64(c)*integrity.SectorSize); err != nil {
				return err
			}
			t := tags[(c-first)/spb*uint64(p.sealer.TagSize()):]
			p.sealer.Seal(chunk, t, chunk, c)
			ds, err := l.DataSector(c)
			if err != nil {
				return err
			}
			if _, err := dev.WriteAt(chunk, int64(ds)*integrity.SectorSize); err != nil {
				return fmt.Errorf("write data sectors at %d: %w", ds, err)
			}
			if progress != nil {
				progress(int64(c+n)*integrity.SectorSize, int64(provided)*integrity.SectorSize)
			}
		}
		to, err := l.TagOffset(first)
		if err != nil {
			return err
		}
		if _, err := dev.WriteAt(tags, int64(to)); err != nil {
			return fmt.Errorf("write the tags of area %d at %d: %w", area, to, err)
		}
	}
	return p.writeHead(dev)
}

// readData fills chunk with the data at off, zeros past its end.
func (p *Plan) readData(data io.ReaderAt, chunk []byte, off int64) error {
	n := 0
	if off < p.DataBytes {
		want := int(min(int64(len(chunk)), p.DataBytes-off))
		got, err := data.ReadAt(chunk[:want], off)
		if got < want {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read data at %d: %w", off, err)
		}
		n = want
	}
	clear(chunk[n:])
	return nil
}

// writeHead writes the empty journal and then the superblock.
func (p *Plan) writeHead(dev io.WriterAt) error {
	l := p.Layout
	start := int64(l.Offset) * integrity.SectorSize
	section := int64(l.JournalSectionSectors) * integrity.SectorSize
	for i := range l.Superblock.JournalSections {
		off := start + integrity.SuperblockAreaSize + int64(i)*section
		if _, err := dev.WriteAt(l.EmptyJournalSection(i), off); err != nil {
			return fmt.Errorf("write journal section %d: %w", i, err)
		}
	}
	b, err := l.Superblock.Marshal()
	if err != nil {
		return err
	}
	area := make([]byte, integrity.SuperblockAreaSize)
	copy(area, b)
	if err := sync(dev); err != nil {
		return err
	}
	if _, err := dev.WriteAt(area, start); err != nil {
		return fmt.Errorf("write the dm-integrity superblock: %w", err)
	}
	return sync(dev)
}

// sync makes dev's writes durable if it can.
func sync(dev io.WriterAt) error {
	if s, ok := dev.(Syncer); ok {
		if err := s.Sync(); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	return nil
}
