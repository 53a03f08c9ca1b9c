package uki

import (
	"bytes"
	"fmt"
	"math"
	"slices"
)

// Part is a section to add to a stub.
type Part struct {
	// Name is the section name (".linux", ".cmdline", ...), at most 8 bytes.
	Name string
	// Data is its content; the section's VirtualSize is len(Data), so the
	// stub sees and measures exactly these bytes.
	Data []byte
}

// Assemble returns stub with parts appended as new sections, the way
// systemd's ukify lays a UKI or an addon out (systemd-stub(7), "Unified
// Kernel Images"; the UAPI UKI specification): each part at the next
// SectionAlignment boundary after the last section in memory and at the next
// FileAlignment boundary in the file, as initialized read-only data. RVAs are
// used throughout, so the stub's ImageBase does not matter.
//
// The output is reproducible: TimeDateStamp and CheckSum are zero, a
// trailing COFF symbol table (the 252 stub has one) and any certificate table
// are dropped, and the file is padded to a multiple of 8 bytes, which is what
// sbsign and osslsigncode would pad it to before signing. A ".sbat" part is
// merged into the stub's own .sbat section (its lines appended), in place,
// as ukify does; any other name the stub already has is refused.
func Assemble(stub []byte, parts []Part) ([]byte, error) {
	im, err := parseImage(stub)
	if err != nil {
		return nil, fmt.Errorf("stub: %w", err)
	}
	size := uint64(im.rawEnd())
	for _, p := range parts {
		size = alignUp(size, uint64(im.fileAlignment())) + alignUp(uint64(len(p.Data)), uint64(im.fileAlignment()))
	}
	// One allocation for the whole image (a UKI is tens of MiB).
	im.b = append(make([]byte, 0, alignUp(size, 8)), stub[:im.rawEnd()]...)
	im.resetForAppend()
	for _, p := range parts {
		if err := im.add(p); err != nil {
			return nil, err
		}
	}
	if pad := alignUp(uint64(len(im.b)), 8) - uint64(len(im.b)); pad > 0 {
		im.b = append(im.b, make([]byte, pad)...)
	}
	return im.b, nil
}

// resetForAppend zeroes what makes a build irreproducible or would be stale
// once sections are added: the time stamp, the checksum, the COFF symbol
// table pointer and the certificate table entry.
func (im *image) resetForAppend() {
	le.PutUint32(im.b[im.coff+coffTimeDateStamp:], 0)
	le.PutUint32(im.b[im.coff+coffPtrToSymbols:], 0)
	le.PutUint32(im.b[im.coff+coffNumberOfSymbols:], 0)
	le.PutUint32(im.b[im.opt+optCheckSum:], 0)
	cert := im.opt + optDataDirectories + 8*dirCertificateTable
	le.PutUint64(im.b[cert:], 0)
}

// add appends one part as a section, or merges a .sbat part.
func (im *image) add(p Part) error {
	if len(p.Name) == 0 || len(p.Name) > 8 || p.Name[0] != '.' {
		return fmt.Errorf("section name %q: want a name starting with '.', at most 8 bytes", p.Name)
	}
	if s := im.section(p.Name); s != nil {
		if p.Name == ".sbat" {
			return im.mergeSBAT(s, p.Data)
		}
		return fmt.Errorf("section %s: the stub already has one", p.Name)
	}
	if len(p.Data) == 0 {
		return fmt.Errorf("section %s: empty", p.Name)
	}
	secEnd := im.secTable + (len(im.sections)+1)*sectionHeaderSize
	if secEnd > int(im.u32(optSizeOfHeaders)) || (len(im.sections) > 0 && secEnd > int(im.firstRaw())) {
		return fmt.Errorf("section %s: no room for another section header in the stub's headers (%d sections)", p.Name, len(im.sections))
	}
	last := im.sections[len(im.sections)-1]
	va := alignUp(uint64(last.VirtualAddress)+uint64(last.VirtualSize), uint64(im.sectionAlignment()))
	off := alignUp(uint64(len(im.b)), uint64(im.fileAlignment()))
	raw := alignUp(uint64(len(p.Data)), uint64(im.fileAlignment()))
	if va+uint64(len(p.Data)) > math.MaxUint32 || off+raw > math.MaxUint32 {
		return fmt.Errorf("section %s: %d bytes do not fit in a pe image", p.Name, len(p.Data))
	}
	s := Section{Name: p.Name, VirtualAddress: uint32(va), VirtualSize: uint32(len(p.Data)), Offset: uint32(off), RawSize: uint32(raw)}
	im.b = append(im.b, make([]byte, off-uint64(len(im.b)))...)
	im.b = append(im.b, p.Data...)
	im.b = append(im.b, make([]byte, raw-uint64(len(p.Data)))...)
	im.writeHeader(len(im.sections), s)
	im.sections = append(im.sections, s)
	le.PutUint16(im.b[im.coff+coffNumberOfSecs:], uint16(len(im.sections)))
	le.PutUint32(im.b[im.opt+optSizeOfImage:], uint32(alignUp(va+uint64(s.VirtualSize), uint64(im.sectionAlignment()))))
	le.PutUint32(im.b[im.opt+optSizeOfInitData:], im.u32(optSizeOfInitData)+s.RawSize)
	return nil
}

// firstRaw is the lowest file offset of any section's data.
func (im *image) firstRaw() uint32 {
	first := uint32(math.MaxUint32)
	for _, s := range im.sections {
		if s.RawSize > 0 && s.Offset < first {
			first = s.Offset
		}
	}
	return first
}

// writeHeader writes section header i.
func (im *image) writeHeader(i int, s Section) {
	h := im.b[im.secTable+i*sectionHeaderSize:][:sectionHeaderSize]
	clear(h)
	copy(h[:8], s.Name)
	le.PutUint32(h[secVirtualSize:], s.VirtualSize)
	le.PutUint32(h[secVirtualAddress:], s.VirtualAddress)
	le.PutUint32(h[secSizeOfRawData:], s.RawSize)
	le.PutUint32(h[secPointerToRaw:], s.Offset)
	le.PutUint32(h[secCharacterstics:], scnData)
}

// mergeSBAT appends lines to the stub's .sbat section in place (the SBAT
// specification, rhboot/shim SBAT.md: one CSV record per line). The section
// cannot move, so the result must fit in its raw size and below the next
// section's address.
func (im *image) mergeSBAT(s *Section, lines []byte) error {
	merged := append(bytes.Clone(bytes.TrimRight(im.mapped(s), "\x00")), lines...)
	if len(merged) > 0 && merged[len(merged)-1] != '\n' {
		merged = append(merged, '\n')
	}
	room := s.RawSize
	for _, o := range im.sections {
		if o.VirtualAddress > s.VirtualAddress && o.VirtualAddress-s.VirtualAddress < room {
			room = o.VirtualAddress - s.VirtualAddress
		}
	}
	if len(merged) > int(room) {
		return fmt.Errorf("section .sbat: %d bytes do not fit in the stub's .sbat (room for %d)", len(merged), room)
	}
	raw := im.b[s.Offset : s.Offset+s.RawSize]
	clear(raw)
	copy(raw, merged)
	s.VirtualSize = uint32(len(merged))
	i := slices.IndexFunc(im.sections, func(o Section) bool { return o.Name == ".sbat" })
	le.PutUint32(im.b[im.secTable+i*sectionHeaderSize+secVirtualSize:], s.VirtualSize)
	return nil
}
