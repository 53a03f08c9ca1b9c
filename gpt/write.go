package gpt

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
)

// New returns an empty table for a disk of size bytes with sectors of
// sectorSize bytes: a random disk GUID, [DefaultEntryCount] entries of
// [EntrySize] bytes, and the usable range between the primary and backup
// entry arrays (first usable LBA 34 and last usable LBA = last LBA − 33 for
// 512-byte sectors, as sfdisk and systemd-repart lay it out).
func New(size int64, sectorSize int) (*Table, error) {
	if err := checkSectorSize(sectorSize); err != nil {
		return nil, fmt.Errorf("new table: %w", err)
	}
	g, err := NewRandomGUID()
	if err != nil {
		return nil, fmt.Errorf("new table: disk guid: %w", err)
	}
	t := &Table{
		SectorSize: sectorSize,
		DiskGUID:   g,
		EntryCount: DefaultEntryCount,
		EntrySize:  EntrySize,
	}
	n := entrySectors(t.EntryCount, t.EntrySize, sectorSize)
	numLBAs := uint64(size) / uint64(sectorSize)
	if size < 0 || size%int64(sectorSize) != 0 || numLBAs < 2*n+4 {
		return nil, fmt.Errorf("new table: %w: disk size %d is not a multiple of %d or too small for two headers and two %d-sector entry arrays",
			ErrInvalid, size, sectorSize, n)
	}
	t.FirstUsableLBA = 2 + n
	t.LastUsableLBA = numLBAs - 2 - n
	return t, nil
}

// Add places a new partition after the last one, its start aligned to
// [Alignment] (1 MiB), and returns it with Index, FirstLBA, LastLBA, Start
// and Size filled in. Of p it uses Type (required), UUID (a random one when
// zero), Name, Attributes and Size in bytes (rounded up to whole sectors; 0
// takes the rest of the usable space). Index is the lowest free slot.
func (t *Table) Add(p Partition) (Partition, error) {
	if t.SectorSize <= 0 || t.EntryCount == 0 {
		return Partition{}, fmt.Errorf("add partition %q: %w: table has no sector size or entries (use New)", p.Name, ErrInvalid)
	}
	if p.Type.IsZero() {
		return Partition{}, fmt.Errorf("add partition %q: %w: zero type GUID", p.Name, ErrInvalid)
	}
	if p.Size < 0 {
		return Partition{}, fmt.Errorf("add partition %q: %w: negative size %d", p.Name, ErrInvalid, p.Size)
	}
	if err := encodeName(make([]byte, 2*NameLen), p.Name); err != nil {
		return Partition{}, fmt.Errorf("add partition: %w", err)
	}
	ss := uint64(t.SectorSize)
	align := uint64(Alignment) / ss
	if align == 0 {
		align = 1
	}
	start := t.FirstUsableLBA
	for _, q := range t.Partitions {
		if q.LastLBA+1 > start {
			start = q.LastLBA + 1
		}
	}
	start = (start + align - 1) / align * align
	if start > t.LastUsableLBA {
		return Partition{}, fmt.Errorf("add partition %q: %w: no space left (next aligned LBA %d, last usable LBA %d)",
			p.Name, ErrInvalid, start, t.LastUsableLBA)
	}
	var last uint64
	if p.Size == 0 {
		last = t.LastUsableLBA
	} else {
		sectors := (uint64(p.Size) + ss - 1) / ss
		last = start + sectors - 1
		if last > t.LastUsableLBA || last < start {
			return Partition{}, fmt.Errorf("add partition %q: %w: %d bytes at LBA %d do not fit before the last usable LBA %d",
				p.Name, ErrInvalid, p.Size, start, t.LastUsableLBA)
		}
	}
	index := 0
	for i := 1; uint64(i) <= uint64(t.EntryCount); i++ {
		if !slices.ContainsFunc(t.Partitions, func(q Partition) bool { return q.Index == i }) {
			index = i
			break
		}
	}
	if index == 0 {
		return Partition{}, fmt.Errorf("add partition %q: %w: all %d entries are used", p.Name, ErrInvalid, t.EntryCount)
	}
	if p.UUID.IsZero() {
		g, err := NewRandomGUID()
		if err != nil {
			return Partition{}, fmt.Errorf("add partition %q: %w", p.Name, err)
		}
		p.UUID = g
	}
	p.Index = index
	p.FirstLBA, p.LastLBA = start, last
	p.Start = int64(start * ss)
	p.Size = int64((last - start + 1) * ss)
	t.Partitions = append(t.Partitions, p)
	return p, nil
}

// Write writes t to a disk of size bytes: the protective MBR in LBA 0, the
// primary header in LBA 1 with the entry array from LBA 2, and the backup
// entry array and backup header at the end of the disk, all with correct
// CRC32s. It writes the backup copy first, so that an interrupted Write
// leaves at least one consistent copy when it rewrites an existing table.
// Write does not change t; FirstUsableLBA and LastUsableLBA must fit the disk.
func (t *Table) Write(w io.WriterAt, size int64) error {
	if err := checkSectorSize(t.SectorSize); err != nil {
		return fmt.Errorf("gpt: write: %w", err)
	}
	ss := uint64(t.SectorSize)
	if size < 0 || uint64(size)%ss != 0 {
		return fmt.Errorf("gpt: write: %w: disk size %d is not a multiple of the sector size %d", ErrInvalid, size, ss)
	}
	if t.EntrySize < EntrySize || t.EntrySize%8 != 0 || t.EntryCount == 0 ||
		uint64(t.EntryCount)*uint64(t.EntrySize) > MaxEntryArrayBytes {
		return fmt.Errorf("gpt: write: %w: %d entries of %d bytes", ErrInvalid, t.EntryCount, t.EntrySize)
	}
	numLBAs := uint64(size) / ss
	n := entrySectors(t.EntryCount, t.EntrySize, t.SectorSize)
	if numLBAs < 2*n+4 {
		return fmt.Errorf("gpt: write: %w: disk of %d sectors is too small", ErrInvalid, numLBAs)
	}
	lastLBA := numLBAs - 1
	backupEntries := lastLBA - n
	if t.FirstUsableLBA < 2+n || t.LastUsableLBA >= backupEntries || t.FirstUsableLBA > t.LastUsableLBA {
		return fmt.Errorf("gpt: write: %w: usable LBAs %d..%d do not fit between the entry arrays (%d..%d)",
			ErrInvalid, t.FirstUsableLBA, t.LastUsableLBA, 2+n, backupEntries-1)
	}
	if err := validatePartitions(t); err != nil {
		return fmt.Errorf("gpt: write: %w", err)
	}

	entries := make([]byte, n*ss)
	for _, p := range t.Partitions {
		e := entries[uint64(p.Index-1)*uint64(t.EntrySize):][:t.EntrySize]
		encodeGUID(e[0:16], p.Type)
		encodeGUID(e[16:32], p.UUID)
		binary.LittleEndian.PutUint64(e[32:40], p.FirstLBA)
		binary.LittleEndian.PutUint64(e[40:48], p.LastLBA)
		binary.LittleEndian.PutUint64(e[48:56], p.Attributes)
		if err := encodeName(e[56:56+2*NameLen], p.Name); err != nil {
			return fmt.Errorf("gpt: write: partition %d: %w", p.Index, err)
		}
	}
	entriesCRC := crc(entries[:uint64(t.EntryCount)*uint64(t.EntrySize)])

	hdr := func(my, alt, entriesLBA uint64) []byte {
		b := make([]byte, ss)
		le := binary.LittleEndian
		copy(b[0:8], signature)
		le.PutUint32(b[8:12], revision1)
		le.PutUint32(b[12:16], HeaderSize)
		le.PutUint64(b[24:32], my)
		le.PutUint64(b[32:40], alt)
		le.PutUint64(b[40:48], t.FirstUsableLBA)
		le.PutUint64(b[48:56], t.LastUsableLBA)
		encodeGUID(b[56:72], t.DiskGUID)
		le.PutUint64(b[72:80], entriesLBA)
		le.PutUint32(b[80:84], t.EntryCount)
		le.PutUint32(b[84:88], t.EntrySize)
		le.PutUint32(b[88:92], entriesCRC)
		le.PutUint32(b[16:20], crc(b[:HeaderSize]))
		return b
	}

	writes := []struct {
		what string
		lba  uint64
		b    []byte
	}{
		{"backup partition entry array", backupEntries, entries},
		{"backup header", lastLBA, hdr(lastLBA, 1, backupEntries)},
		{"primary partition entry array", 2, entries},
		{"primary header", 1, hdr(1, lastLBA, 2)},
		{"protective MBR", 0, protectiveMBR(int(ss), lastLBA)},
	}
	for _, wr := range writes {
		if _, err := w.WriteAt(wr.b, int64(wr.lba*ss)); err != nil {
			return fmt.Errorf("gpt: write %s at LBA %d: %w", wr.what, wr.lba, err)
		}
	}
	return nil
}

// protectiveMBR returns LBA 0: an MBR with one partition of type 0xEE from
// LBA 1 to the end of the disk (capped at 0xFFFFFFFF sectors), UEFI 5.2.3.
func protectiveMBR(sectorSize int, lastLBA uint64) []byte {
	b := make([]byte, sectorSize)
	rec := b[446:462]
	rec[0] = 0x00                               // not bootable
	rec[1], rec[2], rec[3] = 0x00, 0x02, 0x00   // starting CHS 0/0/2
	rec[4] = 0xee                               // GPT protective
	rec[5], rec[6], rec[7] = 0xff, 0xff, 0xff   // ending CHS
	binary.LittleEndian.PutUint32(rec[8:12], 1) // starting LBA
	sizeLBA := min(lastLBA, 0xffffffff)
	binary.LittleEndian.PutUint32(rec[12:16], uint32(sizeLBA))
	b[510], b[511] = 0x55, 0xaa
	return b
}
