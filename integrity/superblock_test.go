package integrity

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// goldenHex builds bytes from hex words, ignoring spaces and comments after
// '#' on each line.
func goldenHex(t testing.TB, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		clean.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatalf("bad golden hex: %v", err)
	}
	return b
}

// goldenLUKS2 is the superblock of the derived 64 MiB / 4096-byte-sector /
// tag 32 LUKS2 case (see geometry_test.go), written by hand from the layout
// of struct superblock.
const goldenLUKS2 = `
69 6e 74 65 67 72 74 00   # 0  magic "integrt\0"
04                        # 8  version 4 (fix_padding)
0f                        # 9  log2_interleave_sectors 15 (32768)
20 00                     # 10 integrity_tag_size 32
03 00 00 00               # 12 journal_sections 3
e0 79 01 00 00 00 00 00   # 16 provided_data_sectors 96736 = 0x179e0
08 00 00 00               # 24 flags FIXED_PADDING
03                        # 28 log2_sectors_per_block 3 (4096 bytes)
0c                        # 29 log2_blocks_per_bitmap_bit 12
00 00                     # 30 pad
00 00 00 00 00 00 00 00   # 32 recalc_sector 0
00 00 00 00 00 00 00 00   # 40 pad2
00 00 00 00 00 00 00 00   # 48 salt
00 00 00 00 00 00 00 00
`

func goldenLUKS2Superblock() Superblock {
	return Superblock{
		Version:                4,
		Log2InterleaveSectors:  15,
		IntegrityTagSize:       32,
		JournalSections:        3,
		ProvidedDataSectors:    96736,
		Flags:                  FlagFixedPadding,
		Log2SectorsPerBlock:    3,
		Log2BlocksPerBitmapBit: 12,
	}
}

// goldenAll has a distinct value in every field, to catch offset and
// endianness mistakes.
const goldenAll = `
69 6e 74 65 67 72 74 00   # 0  magic
05                        # 8  version 5
10                        # 9  log2_interleave_sectors 16
a8 01                     # 10 integrity_tag_size 424 = 0x1a8
04 03 02 01               # 12 journal_sections 0x01020304
00 05 04 03 02 01 00 00   # 16 provided_data_sectors 0x010203040500
1f 00 00 00               # 24 flags 0x1f
01                        # 28 log2_sectors_per_block 1 (1024 bytes)
0e                        # 29 log2_blocks_per_bitmap_bit 14
00 00                     # 30 pad
88 77 66 55 44 33 22 11   # 32 recalc_sector 0x1122334455667788
00 00 00 00 00 00 00 00   # 40 pad2
a0 a1 a2 a3 a4 a5 a6 a7   # 48 salt
a8 a9 aa ab ac ad ae af
`

func goldenAllSuperblock() Superblock {
	return Superblock{
		Version:                5,
		Log2InterleaveSectors:  16,
		IntegrityTagSize:       424,
		JournalSections:        0x01020304,
		ProvidedDataSectors:    0x010203040500,
		Flags:                  FlagHaveJournalMAC | FlagRecalculating | FlagDirtyBitmap | FlagFixedPadding | FlagFixedHMAC,
		Log2SectorsPerBlock:    1,
		Log2BlocksPerBitmapBit: 14,
		RecalcSector:           0x1122334455667788,
		Salt:                   [16]byte{0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf},
	}
}

func TestGoldenSuperblocks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		golden string
		sb     Superblock
	}{
		{"luks2-4k-tag32", goldenLUKS2, goldenLUKS2Superblock()},
		{"all-fields", goldenAll, goldenAllSuperblock()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := goldenHex(t, tc.golden)
			if len(want) != SuperblockSize {
				t.Fatalf("golden is %d bytes, want %d", len(want), SuperblockSize)
			}
			got, err := tc.sb.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if len(got) != SuperblockAreaSize {
				t.Fatalf("Marshal returned %d bytes, want %d", len(got), SuperblockAreaSize)
			}
			if diff := cmp.Diff(want, got[:SuperblockSize]); diff != "" {
				t.Errorf("Marshal struct bytes (-want +got):\n%s", diff)
			}
			if !allZero(got[SuperblockSize:]) {
				t.Errorf("Marshal: bytes after the struct are not zero")
			}
			parsed, err := ParseSuperblock(want)
			if err != nil {
				t.Fatalf("ParseSuperblock: %v", err)
			}
			if diff := cmp.Diff(tc.sb, *parsed); diff != "" {
				t.Errorf("ParseSuperblock (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadSuperblock(t *testing.T) {
	golden := goldenLUKS2Superblock()
	area, err := golden.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	const off = 32768 * SectorSize
	dev := make([]byte, off+SuperblockAreaSize+4096)
	copy(dev[off:], area)
	sb, err := ReadSuperblock(bytes.NewReader(dev), off)
	if err != nil {
		t.Fatalf("ReadSuperblock: %v", err)
	}
	if diff := cmp.Diff(goldenLUKS2Superblock(), *sb); diff != "" {
		t.Errorf("ReadSuperblock (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name    string
		dev     []byte
		off     int64
		wantIs  error
		wantSub string
	}{
		{"zero area", make([]byte, 2*SuperblockAreaSize), SuperblockAreaSize, ErrUnformatted, "all zeroes"},
		{"wrong offset", dev, off - SectorSize, ErrNoSuperblock, "byte 16776704"},
		{"short device", dev[:off+100], off, io.ErrUnexpectedEOF, "got 100 of 4096 bytes"},
		{"negative offset", dev, -1, nil, "negative offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSuperblock(bytes.NewReader(tc.dev), tc.off)
			if err == nil {
				t.Fatal("ReadSuperblock: no error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q does not wrap %q", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantSub) {
				t.Errorf("error %q does not contain %q", err, tc.wantSub)
			}
		})
	}
}

// TestParseSuperblockCorrupt corrupts one field at a time of a valid
// superblock and checks the error names it.
func TestParseSuperblockCorrupt(t *testing.T) {
	base := func(t *testing.T) []byte { return goldenHex(t, goldenLUKS2) }
	type mut func(b []byte) []byte
	set := func(off int, v ...byte) mut {
		return func(b []byte) []byte { copy(b[off:], v); return b }
	}
	seq := func(ms ...mut) mut {
		return func(b []byte) []byte {
			for _, m := range ms {
				b = m(b)
			}
			return b
		}
	}
	for _, tc := range []struct {
		name    string
		mut     mut
		wantIs  error
		wantSub string
	}{
		{"truncated", func(b []byte) []byte { return b[:63] }, nil, "truncated: 63 bytes, want 64"},
		{"empty", func(b []byte) []byte { return nil }, nil, "truncated: 0 bytes"},
		{"all zero", func(b []byte) []byte { return make([]byte, len(b)) }, ErrUnformatted, "not formatted"},
		{"magic", set(0, 'I'), ErrNoSuperblock, `magic is "Integrt\x00"`},
		{"magic missing NUL", set(7, 'X'), ErrNoSuperblock, `magic is "integrtX"`},
		{"version 0", set(8, 0), ErrInvalidSuperblock, "version 0: want 1..6"},
		{"version 7", set(8, 7), ErrInvalidSuperblock, "version 7: want 1..6"},
		{"version 255", set(8, 255), ErrInvalidSuperblock, "version 255"},
		{"unknown flag", set(24, 0x48), ErrInvalidSuperblock, "flags 0x48: unknown bits 0x40"},
		{"high flag bit", set(27, 0x80), ErrInvalidSuperblock, "unknown bits 0x80000000"},
		{"fix_padding in v3", set(8, 3), ErrInvalidSuperblock, "flag fix_padding needs version 4 or later, superblock has version 3"},
		{"recalculating in v1", seq(set(8, 1), set(24, 0x02)), ErrInvalidSuperblock, "flag recalculating needs version 2"},
		{"dirty_bitmap in v2", seq(set(8, 2), set(24, 0x04)), ErrInvalidSuperblock, "flag dirty_bitmap needs version 3"},
		{"fix_hmac in v4", set(24, 0x18), ErrInvalidSuperblock, "flag fix_hmac needs version 5"},
		{"inline in v5", seq(set(8, 5), set(24, 0x20), set(12, 0, 0, 0, 0)), ErrInvalidSuperblock, "flag inline needs version 6"},
		{"tag size 0", set(10, 0, 0), ErrInvalidSuperblock, "integrity_tag_size is 0"},
		{"tag size 425", set(10, 0xa9, 0x01), ErrInvalidSuperblock, "integrity_tag_size 425 exceeds the kernel maximum 424"},
		{"tag size big endian", set(10, 0, 0x20), ErrInvalidSuperblock, "integrity_tag_size 8192"},
		{"log2_sectors_per_block 4", set(28, 4), ErrInvalidSuperblock, "log2_sectors_per_block 4: block size must be 512..4096"},
		{"log2_sectors_per_block 23", set(28, 23), ErrInvalidSuperblock, "log2_sectors_per_block 23"},
		{"log2_interleave_sectors 2", set(9, 2), ErrInvalidSuperblock, "log2_interleave_sectors 2: want 3..31"},
		{"log2_interleave_sectors 32", set(9, 32), ErrInvalidSuperblock, "log2_interleave_sectors 32: want 3..31"},
		{"log2_interleave_sectors 0 in v1", seq(set(8, 1), set(24, 0), set(9, 0)), ErrInvalidSuperblock, "log2_interleave_sectors is 0 (separate metadata device) with version 1"},
		{"log2_interleave_sectors 0 inline", seq(set(8, 6), set(24, 0x20), set(12, 0, 0, 0, 0), set(9, 0)), ErrInvalidSuperblock, "log2_interleave_sectors is 0 (separate metadata device) in inline mode"},
		{"journal_sections 0", set(12, 0, 0, 0, 0), ErrInvalidSuperblock, "journal_sections is 0"},
		{"journal_sections inline", seq(set(8, 6), set(24, 0x20)), ErrInvalidSuperblock, "journal_sections 3: must be 0 in inline mode"},
		{"log2_blocks_per_bitmap_bit", set(29, 61), ErrInvalidSuperblock, "log2_blocks_per_bitmap_bit 61: with log2_sectors_per_block 3 exceeds 63"},
		{"provided_data_sectors 0", set(16, 0, 0, 0, 0, 0, 0, 0, 0), ErrInvalidSuperblock, "provided_data_sectors is 0"},
		{"provided_data_sectors unaligned", set(16, 0xe1), ErrInvalidSuperblock, "provided_data_sectors 96737 is not a multiple of the block size (8 sectors)"},
		{"provided_data_sectors huge", set(16, 0, 0, 0, 0, 0, 0, 0, 0x40), ErrInvalidSuperblock, "provided_data_sectors 4611686018427387904 exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mut(base(t))
			sb, err := ParseSuperblock(b)
			if err == nil {
				t.Fatalf("ParseSuperblock accepted %+v", *sb)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q does not wrap %q", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantSub) {
				t.Errorf("error %q does not contain %q", err, tc.wantSub)
			}
			// Marshal refuses the same superblock with the same message.
			if errors.Is(err, ErrInvalidSuperblock) {
				bad := decodeUnchecked(b)
				_, merr := bad.Marshal()
				if merr == nil || !strings.Contains(merr.Error(), tc.wantSub) {
					t.Errorf("Marshal error %v, want one containing %q", merr, tc.wantSub)
				}
			}
		})
	}
}

// decodeUnchecked decodes without validation, for testing Marshal's checks.
func decodeUnchecked(b []byte) Superblock {
	var sb Superblock
	sb.Version = b[8]
	sb.Log2InterleaveSectors = b[9]
	sb.IntegrityTagSize = uint16(b[10]) | uint16(b[11])<<8
	for i := 3; i >= 0; i-- {
		sb.JournalSections = sb.JournalSections<<8 | uint32(b[12+i])
		sb.Flags = sb.Flags<<8 | Flags(b[24+i])
	}
	for i := 7; i >= 0; i-- {
		sb.ProvidedDataSectors = sb.ProvidedDataSectors<<8 | uint64(b[16+i])
		sb.RecalcSector = sb.RecalcSector<<8 | uint64(b[32+i])
	}
	sb.Log2SectorsPerBlock = b[28]
	sb.Log2BlocksPerBitmapBit = b[29]
	copy(sb.Salt[:], b[48:64])
	return sb
}

// TestParseSuperblockValidVariants covers valid superblocks the kernel can
// write besides the LUKS2 one, and that padding bytes are ignored.
func TestParseSuperblockValidVariants(t *testing.T) {
	for _, tc := range []struct {
		name string
		sb   Superblock
	}{
		{"v1 512-byte blocks", Superblock{Version: 1, Log2InterleaveSectors: 15, IntegrityTagSize: 4, JournalSections: 1, ProvidedDataSectors: 32328, Log2BlocksPerBitmapBit: 15}},
		{"v2 separate metadata device", Superblock{Version: 2, IntegrityTagSize: 32, JournalSections: 7, ProvidedDataSectors: 8}},
		{"v3 bitmap", Superblock{Version: 3, Log2InterleaveSectors: 3, IntegrityTagSize: 1, JournalSections: 1, ProvidedDataSectors: 8, Log2BlocksPerBitmapBit: 60, Log2SectorsPerBlock: 3}},
		{"v6 inline", Superblock{Version: 6, Log2InterleaveSectors: 15, IntegrityTagSize: 8, ProvidedDataSectors: 1 << 20, Flags: FlagInline}},
		{"v6 higher version than flags need", Superblock{Version: 6, Log2InterleaveSectors: 31, IntegrityTagSize: MaxTagSize, JournalSections: 1, ProvidedDataSectors: MaxDeviceSectors &^ 7, Log2SectorsPerBlock: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.sb.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			b[30], b[31], b[40], b[47] = 0xff, 0xff, 0xff, 0xff // padding is ignored
			got, err := ParseSuperblock(b)
			if err != nil {
				t.Fatalf("ParseSuperblock: %v", err)
			}
			if diff := cmp.Diff(tc.sb, *got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSuperblockAccessors(t *testing.T) {
	type acc struct {
		BlockSize  uint32
		Interleave uint64
		Flags      string
	}
	for _, tc := range []struct {
		sb   Superblock
		want acc
	}{
		{goldenLUKS2Superblock(), acc{4096, 32768, "fix_padding"}},
		{goldenAllSuperblock(), acc{1024, 65536, "have_journal_mac recalculating dirty_bitmap fix_padding fix_hmac"}},
		{Superblock{Flags: FlagInline | 0x100}, acc{512, 0, "inline 0x100"}},
	} {
		got := acc{tc.sb.BlockSize(), tc.sb.InterleaveSectors(), tc.sb.Flags.String()}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("accessors (-want +got):\n%s", diff)
		}
	}
}

// FuzzParseSuperblock checks that parsing never panics, that an accepted
// superblock marshals back to the same 64 bytes (padding aside) and parses
// to the same value, and that deriving a layout from it never panics.
func FuzzParseSuperblock(f *testing.F) {
	f.Add(goldenHex(f, goldenLUKS2))
	f.Add(goldenHex(f, goldenAll))
	f.Add(make([]byte, SuperblockSize))
	f.Fuzz(func(t *testing.T, data []byte) {
		sb, err := ParseSuperblock(data)
		if err != nil {
			if sb != nil {
				t.Fatalf("ParseSuperblock returned a superblock with error %v", err)
			}
			return
		}
		b, err := sb.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed superblock: %v", err)
		}
		want := bytes.Clone(data[:SuperblockSize])
		clear(want[30:32])
		clear(want[40:48])
		if diff := cmp.Diff(want, b[:SuperblockSize]); diff != "" {
			t.Fatalf("Marshal(Parse(data)) (-want +got):\n%s", diff)
		}
		again, err := ParseSuperblock(b)
		if err != nil {
			t.Fatalf("ParseSuperblock(Marshal): %v", err)
		}
		if diff := cmp.Diff(sb, again); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
		for _, dev := range []uint64{0, 8, sb.ProvidedDataSectors, sb.ProvidedDataSectors * 2, MaxDeviceSectors} {
			l, err := sb.Layout(dev, dev/4, 0)
			if err != nil {
				continue
			}
			last := l.Superblock.ProvidedDataSectors - 1
			ds, err := l.DataSector(last)
			if err != nil {
				t.Fatalf("DataSector(%d): %v", last, err)
			}
			if ds >= dev {
				t.Fatalf("last data sector %d beyond device of %d sectors", ds, dev)
			}
			if _, err := l.TagOffset(last); err != nil {
				t.Fatalf("TagOffset(%d): %v", last, err)
			}
		}
	})
}
