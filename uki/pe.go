package uki

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
)

// Offsets into the PE/COFF headers, from the Microsoft PE Format
// specification ("PE Format", sections "COFF File Header", "Optional Header
// (Image Only)" and "Section Table").
const (
	dosLfanew = 0x3c // e_lfanew: file offset of the PE signature

	coffSize            = 20 // COFF file header, after "PE\0\0"
	coffNumberOfSecs    = 2
	coffTimeDateStamp   = 4
	coffPtrToSymbols    = 8
	coffNumberOfSymbols = 12
	coffSizeOfOptHeader = 16

	// PE32+ optional header fields.
	optMagic            = 0
	optSizeOfInitData   = 8
	optImageBase        = 24
	optSectionAlignment = 32
	optFileAlignment    = 36
	optSizeOfImage      = 56
	optSizeOfHeaders    = 60
	optCheckSum         = 64
	optNumberOfRVAs     = 108
	optDataDirectories  = 112
	dirCertificateTable = 4 // index of the attribute certificate table

	sectionHeaderSize = 40
	secVirtualSize    = 8
	secVirtualAddress = 12
	secSizeOfRawData  = 16
	secPointerToRaw   = 20
	secCharacterstics = 36

	magicPE32Plus = 0x20b

	// scnData is IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ, the
	// flags ukify and objcopy give the sections they add.
	scnData = 0x40000040
)

// Section is one PE section as the image maps it.
type Section struct {
	// Name is the section name, at most 8 bytes (".linux", ".cmdline").
	Name string `json:"name"`
	// VirtualAddress and VirtualSize are its RVA and size in memory.
	VirtualAddress uint32 `json:"virtual_address"`
	VirtualSize    uint32 `json:"virtual_size"`
	// Offset and RawSize locate its bytes in the file.
	Offset  uint32 `json:"file_offset"`
	RawSize uint32 `json:"raw_size"`
}

// image is a parsed PE32+ file: its bytes and where the headers that
// [Assemble] rewrites lie.
type image struct {
	b        []byte
	coff     int // offset of the COFF file header
	opt      int // offset of the optional header
	secTable int // offset of the section table
	sections []Section
}

var le = binary.LittleEndian

// parseImage checks that b is a PE32+ image debug/pe can read and locates
// its headers and sections.
func parseImage(b []byte) (*image, error) {
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("not a pe image: %w", err)
	}
	f.Close()
	if _, ok := f.OptionalHeader.(*pe.OptionalHeader64); !ok {
		return nil, errors.New("not a pe32+ image (a 64-bit efi stub is needed)")
	}
	im := &image{b: b}
	im.coff = int(le.Uint32(b[dosLfanew:])) + 4
	im.opt = im.coff + coffSize
	optSize := int(le.Uint16(b[im.coff+coffSizeOfOptHeader:]))
	if optSize < optDataDirectories+8*(dirCertificateTable+1) || im.opt+optSize > len(b) {
		return nil, fmt.Errorf("pe optional header of %d bytes is too short or runs past the end of the file", optSize)
	}
	if le.Uint16(b[im.opt+optMagic:]) != magicPE32Plus {
		return nil, errors.New("not a pe32+ image")
	}
	if n := le.Uint32(b[im.opt+optNumberOfRVAs:]); n <= dirCertificateTable {
		return nil, fmt.Errorf("pe image has %d data directories, want at least %d", n, dirCertificateTable+1)
	}
	if sa, fa := im.sectionAlignment(), im.fileAlignment(); sa&(sa-1) != 0 || fa&(fa-1) != 0 || fa == 0 || fa > 1<<16 || sa < fa {
		return nil, fmt.Errorf("pe alignments %#x (section) and %#x (file) are not valid", sa, fa)
	}
	im.secTable = im.opt + optSize
	n := int(le.Uint16(b[im.coff+coffNumberOfSecs:]))
	if hs := int(im.u32(optSizeOfHeaders)); im.secTable+n*sectionHeaderSize > hs || hs > len(b) {
		return nil, fmt.Errorf("pe headers (SizeOfHeaders %#x) do not hold the section table or run past the end of the file", hs)
	}
	for i := range n {
		h := b[im.secTable+i*sectionHeaderSize:]
		s := Section{
			Name:           string(bytes.TrimRight(h[:8], "\x00")),
			VirtualSize:    le.Uint32(h[secVirtualSize:]),
			VirtualAddress: le.Uint32(h[secVirtualAddress:]),
			RawSize:        le.Uint32(h[secSizeOfRawData:]),
			Offset:         le.Uint32(h[secPointerToRaw:]),
		}
		if uint64(s.Offset)+uint64(s.RawSize) > uint64(len(b)) {
			return nil, fmt.Errorf("pe section %q runs past the end of the file", s.Name)
		}
		im.sections = append(im.sections, s)
	}
	return im, nil
}

func (im *image) u32(off int) uint32 { return le.Uint32(im.b[im.opt+off:]) }

// imageBase, sectionAlignment and fileAlignment are optional-header fields.
func (im *image) imageBase() uint64        { return le.Uint64(im.b[im.opt+optImageBase:]) }
func (im *image) sectionAlignment() uint32 { return im.u32(optSectionAlignment) }
func (im *image) fileAlignment() uint32    { return im.u32(optFileAlignment) }

// section returns the section called name, or nil.
func (im *image) section(name string) *Section {
	for i := range im.sections {
		if im.sections[i].Name == name {
			return &im.sections[i]
		}
	}
	return nil
}

// mapped returns a section's VirtualSize bytes as the loader maps them: the
// raw data, zero-filled past SizeOfRawData. This is what systemd-stub
// measures.
func (im *image) mapped(s *Section) []byte {
	raw := im.b[s.Offset : s.Offset+s.RawSize]
	if s.VirtualSize <= s.RawSize {
		return raw[:s.VirtualSize]
	}
	out := make([]byte, s.VirtualSize)
	copy(out, raw)
	return out
}

// rawEnd is the end of the last section's raw data: where sections may be
// appended once a trailing COFF symbol table or certificate is dropped.
func (im *image) rawEnd() int {
	end := int(im.u32(optSizeOfHeaders))
	for _, s := range im.sections {
		if e := int(s.Offset + s.RawSize); s.RawSize > 0 && e > end {
			end = e
		}
	}
	return end
}

// alignUp rounds v up to a multiple of a (a power of two, or 0/1 for none).
func alignUp(v, a uint64) uint64 {
	if a <= 1 {
		return v
	}
	return (v + a - 1) &^ (a - 1)
}
