package gpt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Read reads the GUID partition table of a disk of size bytes with logical
// sectors of sectorSize bytes.
//
// It checks the protective MBR, then the primary header in LBA 1 and its
// entry array. When either is damaged it falls back to the backup header in
// the last LBA (and, if the primary header itself was sound, at its
// alternate LBA), sets [Table.Source] to [Backup] and keeps the reason in
// [Table.PrimaryErr]. When both copies are damaged the error names what is
// wrong with each.
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	if err := checkSectorSize(sectorSize); err != nil {
		return nil, fmt.Errorf("gpt: %w", err)
	}
	ss := int64(sectorSize)
	if size < 3*ss {
		return nil, fmt.Errorf("gpt: %w: disk of %d bytes is too small for a GPT with %d-byte sectors", ErrInvalid, size, sectorSize)
	}
	numLBAs := uint64(size / ss)
	lastLBA := numLBAs - 1

	sector := make([]byte, sectorSize)
	if err := readAt(r, sector, 0); err != nil {
		return nil, fmt.Errorf("gpt: read protective MBR: %w", err)
	}
	if err := checkProtectiveMBR(sector); err != nil {
		return nil, fmt.Errorf("gpt: %w", err)
	}

	t, hdr, perr := readCopy(r, 1, numLBAs, sectorSize)
	if perr == nil {
		t.Source = Primary
		return t, nil
	}
	candidates := []uint64{lastLBA}
	if hdr != nil && hdr.alternateLBA != lastLBA && hdr.alternateLBA > 1 && hdr.alternateLBA < numLBAs {
		candidates = append(candidates, hdr.alternateLBA)
	}
	var berr error
	for _, lba := range candidates {
		t, _, err := readCopy(r, lba, numLBAs, sectorSize)
		if err == nil {
			t.Source = Backup
			t.PrimaryErr = perr
			return t, nil
		}
		if berr == nil {
			berr = err
		}
	}
	return nil, fmt.Errorf("gpt: no valid GPT: primary (LBA 1): %w; backup (LBA %d): %w", perr, lastLBA, berr)
}

func readAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at offset %d: %w", len(b), off, err)
}

// checkProtectiveMBR checks the MBR boot signature and that one of the four
// partition records has type 0xEE (a protective or hybrid MBR).
func checkProtectiveMBR(b []byte) error {
	if b[510] != 0x55 || b[511] != 0xaa {
		return fmt.Errorf("%w: boot signature is %#04x %#04x, want 0x55 0xaa", ErrNoProtectiveMBR, b[510], b[511])
	}
	for i := range 4 {
		if b[446+16*i+4] == 0xee {
			return nil
		}
	}
	return fmt.Errorf("%w: no partition record of type 0xee", ErrNoProtectiveMBR)
}

// readCopy reads and validates the header in lba and its entry array. It
// returns the decoded header whenever the header itself was sound, even if the
// entries were not, so that Read can follow its alternate LBA.
func readCopy(r io.ReaderAt, lba, numLBAs uint64, sectorSize int) (*Table, *header, error) {
	ss := uint64(sectorSize)
	buf := make([]byte, sectorSize)
	if err := readAt(r, buf, int64(lba*ss)); err != nil {
		return nil, nil, fmt.Errorf("read header: %w", err)
	}
	h, err := parseHeader(buf, lba, numLBAs, sectorSize)
	if err != nil {
		return nil, nil, err
	}
	arrayLen := uint64(h.entryCount) * uint64(h.entrySize)
	entries := make([]byte, arrayLen)
	if err := readAt(r, entries, int64(h.entriesLBA*ss)); err != nil {
		return nil, h, fmt.Errorf("read partition entry array: %w", err)
	}
	if got := crc(entries); got != h.entriesCRC {
		return nil, h, fmt.Errorf("%w: header says %#08x, entries at LBA %d hash to %#08x", ErrEntriesCRC, h.entriesCRC, h.entriesLBA, got)
	}
	t := &Table{
		SectorSize:     sectorSize,
		DiskGUID:       h.diskGUID,
		FirstUsableLBA: h.firstUsable,
		LastUsableLBA:  h.lastUsable,
		EntryCount:     h.entryCount,
		EntrySize:      h.entrySize,
	}
	for i := range h.entryCount {
		e := entries[uint64(i)*uint64(h.entrySize):][:h.entrySize]
		typ := decodeGUID(e[0:16])
		if typ.IsZero() {
			continue
		}
		p := Partition{
			Index:      int(i) + 1,
			Type:       typ,
			UUID:       decodeGUID(e[16:32]),
			FirstLBA:   binary.LittleEndian.Uint64(e[32:40]),
			LastLBA:    binary.LittleEndian.Uint64(e[40:48]),
			Attributes: binary.LittleEndian.Uint64(e[48:56]),
			Name:       decodeName(e[56 : 56+2*NameLen]),
		}
		if p.FirstLBA <= p.LastLBA && p.LastLBA < numLBAs {
			p.Start = int64(p.FirstLBA * ss)
			p.Size = int64((p.LastLBA - p.FirstLBA + 1) * ss)
		}
		t.Partitions = append(t.Partitions, p)
	}
	if err := validatePartitions(t); err != nil {
		return nil, h, fmt.Errorf("partition entries at LBA %d: %w", h.entriesLBA, err)
	}
	return t, h, nil
}

// parseHeader decodes and validates the header sector b read from lba.
func parseHeader(b []byte, lba, numLBAs uint64, sectorSize int) (*header, error) {
	if !bytes.Equal(b[0:8], []byte(signature)) {
		return nil, fmt.Errorf("%w: no %q signature in LBA %d", ErrInvalid, signature, lba)
	}
	le := binary.LittleEndian
	if rev := le.Uint32(b[8:12]); rev>>16 != revision1>>16 {
		return nil, fmt.Errorf("%w: unsupported header revision %#08x, want 1.x", ErrInvalid, rev)
	}
	hsize := le.Uint32(b[12:16])
	if hsize < HeaderSize || uint64(hsize) > uint64(sectorSize) {
		return nil, fmt.Errorf("%w: header size %d outside %d..%d", ErrInvalid, hsize, HeaderSize, sectorSize)
	}
	want := le.Uint32(b[16:20])
	tmp := bytes.Clone(b[:hsize])
	clear(tmp[16:20])
	if got := crc(tmp); got != want {
		return nil, fmt.Errorf("%w: LBA %d says %#08x, contents hash to %#08x", ErrHeaderCRC, lba, want, got)
	}
	h := &header{
		myLBA:        le.Uint64(b[24:32]),
		alternateLBA: le.Uint64(b[32:40]),
		firstUsable:  le.Uint64(b[40:48]),
		lastUsable:   le.Uint64(b[48:56]),
		diskGUID:     decodeGUID(b[56:72]),
		entriesLBA:   le.Uint64(b[72:80]),
		entryCount:   le.Uint32(b[80:84]),
		entrySize:    le.Uint32(b[84:88]),
		entriesCRC:   le.Uint32(b[88:92]),
	}
	lastLBA := numLBAs - 1
	switch {
	case h.myLBA != lba:
		return nil, fmt.Errorf("%w: header in LBA %d says it is in LBA %d", ErrInvalid, lba, h.myLBA)
	case h.alternateLBA == lba:
		return nil, fmt.Errorf("%w: alternate LBA %d is the header's own LBA", ErrInvalid, h.alternateLBA)
	case h.firstUsable > h.lastUsable:
		return nil, fmt.Errorf("%w: first usable LBA %d after last usable LBA %d", ErrInvalid, h.firstUsable, h.lastUsable)
	case h.firstUsable < 2:
		return nil, fmt.Errorf("%w: first usable LBA %d overlaps the MBR or primary header", ErrInvalid, h.firstUsable)
	case h.lastUsable >= lastLBA:
		return nil, fmt.Errorf("%w: last usable LBA %d reaches the last LBA %d of the disk", ErrInvalid, h.lastUsable, lastLBA)
	case lba >= h.firstUsable && lba <= h.lastUsable:
		return nil, fmt.Errorf("%w: header LBA %d inside the usable range %d..%d", ErrInvalid, lba, h.firstUsable, h.lastUsable)
	case h.entrySize < EntrySize || h.entrySize%8 != 0:
		return nil, fmt.Errorf("%w: partition entry size %d, want 128 or a larger multiple of 8", ErrInvalid, h.entrySize)
	case h.entryCount == 0:
		return nil, fmt.Errorf("%w: partition entry count is 0", ErrInvalid)
	case uint64(h.entryCount)*uint64(h.entrySize) > MaxEntryArrayBytes:
		return nil, fmt.Errorf("%w: partition entry array of %d entries × %d bytes exceeds the %d-byte limit",
			ErrInvalid, h.entryCount, h.entrySize, MaxEntryArrayBytes)
	}
	n := entrySectors(h.entryCount, h.entrySize, sectorSize)
	end := h.entriesLBA + n - 1 // n ≤ MaxEntryArrayBytes/512, no overflow unless entriesLBA is huge
	switch {
	case h.entriesLBA < 2 || h.entriesLBA > lastLBA || end < h.entriesLBA || end > lastLBA:
		return nil, fmt.Errorf("%w: partition entry array LBAs %d..%d outside 2..%d", ErrInvalid, h.entriesLBA, end, lastLBA)
	case lba >= h.entriesLBA && lba <= end:
		return nil, fmt.Errorf("%w: partition entry array LBAs %d..%d cover the header LBA %d", ErrInvalid, h.entriesLBA, end, lba)
	case h.entriesLBA <= h.lastUsable && h.firstUsable <= end:
		return nil, fmt.Errorf("%w: partition entry array LBAs %d..%d overlap the usable range %d..%d",
			ErrInvalid, h.entriesLBA, end, h.firstUsable, h.lastUsable)
	}
	return h, nil
}
