package integrity

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The expected values below are DERIVED by hand from the kernel arithmetic
// (drivers/md/dm-integrity.c), step by step in the comments; they are not
// measured on a kernel. Notation: N = device sectors, S = offset (start),
// spb = sectors per block, T = tag size, li = log2_interleave_sectors,
// mr = metadata_run, I = initial_sectors, P = provided_data_sectors.
//
// calculate_journal_section_size:
//
//	entry = roundup(8 + 8*spb + T, 8); eps = 504 (496 with journal_mac) / entry
//	section_entries = eps*8; section_sectors = section_entries*spb + 8
//
// initialize_superblock: sections = max(journal_sectors / section_sectors, 1)
// calculate_device_limits: I = 8 + section_sectors*sections,
//
//	mr = roundup(T << (li - log2 spb), fix_padding ? 4096 : 131072) / 512,
//	valid iff last data sector S + I + (area+1)*mr + (P-1) < N
//	where area = (P-1) >> li;
//
// get_provided_data_sectors: the largest multiple of 8 that is valid.
func TestNewLayout(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
		want Layout
	}{
		{
			// LUKS2, 64 MiB device, 4096-byte sectors, aes-xts-plain64 +
			// hmac-sha256 (T=32), default data offset 32768.
			// N = 131072, S = 32768, spb = 8, li = 15.
			// journal_sectors = min(131072, N>>7 = 1024) = 1024.
			// entry = roundup(8+64+32, 8) = 104; eps = 504/104 = 4;
			// section_entries = 32; section_sectors = 32*8+8 = 264.
			// sections = 1024/264 = 3; I = 8 + 3*264 = 800.
			// mr = roundup(32<<12 = 131072, 4096)/512 = 256.
			// room = N - S - I = 97504; need (area+1)*256 + P <= 97504:
			// area 2 -> P <= 96736, and (96736-1)>>15 = 2 holds. P = 96736.
			// bitmap: log2 32768 = 15 >= 3; journal bits = 792<<12 >=
			// ceil(P/32768) = 3, so log2_blocks_per_bitmap_bit = 15-3 = 12.
			// flags FIXED_PADDING (fix_hmac without a hash sets nothing),
			// version 4. buffer: min(log2 128 = 7, ffs(256) = 8) = 7.
			name: "luks2 64MiB 4k tag32",
			p:    LUKS2Params(131072, 32768, 4096, 32),
			want: Layout{
				Superblock:              goldenLUKS2Superblock(),
				DeviceSectors:           131072,
				Offset:                  32768,
				JournalEntrySize:        104,
				JournalEntriesPerSector: 4,
				JournalSectionEntries:   32,
				JournalSectionSectors:   264,
				InitialSectors:          800,
				MetadataRunSectors:      256,
				Log2BufferSectors:       7,
			},
		},
		{
			// LUKS2, 1 GiB device, 512-byte sectors, aes-gcm-random + aead
			// (T=28). N = 2097152, S = 32768, spb = 1, li = 15.
			// journal_sectors = min(131072, N>>7 = 16384) = 16384.
			// entry = roundup(8+8+28, 8) = 48; eps = 504/48 = 10;
			// section_entries = 80; section_sectors = 80+8 = 88.
			// sections = 16384/88 = 186; I = 8 + 186*88 = 16376.
			// mr = roundup(28<<15 = 917504, 4096)/512 = 1792.
			// room = N - S - I = 2048008; need (area+1)*1792 + P <= room:
			// area 59 -> P <= 1940488, (1940488-1)>>15 = 59 holds;
			// area 60 would need P >= 1966081 > 2048008-61*1792. P = 1940488
			// (last data sector = 2097151 = N-1).
			// bitmap: 15 >= 0, ceil(P/32768) = 60 <= journal bits -> 15.
			// version 4, flags FIXED_PADDING. buffer: min(7, ffs(1792)=8) = 7.
			name: "luks2 1GiB 512 tag28",
			p:    LUKS2Params(2097152, 32768, 512, 28),
			want: Layout{
				Superblock: Superblock{
					Version: 4, Log2InterleaveSectors: 15, IntegrityTagSize: 28, JournalSections: 186,
					ProvidedDataSectors: 1940488, Flags: FlagFixedPadding, Log2SectorsPerBlock: 0,
					Log2BlocksPerBitmapBit: 15,
				},
				DeviceSectors: 2097152, Offset: 32768,
				JournalEntrySize: 48, JournalEntriesPerSector: 10, JournalSectionEntries: 80,
				JournalSectionSectors: 88, InitialSectors: 16376, MetadataRunSectors: 1792,
				Log2BufferSectors: 8 - 1,
			},
		},
		{
			// As the first case with T = 28 (aes-gcm-random aead on 4k).
			// entry = roundup(8+64+28 = 100, 8) = 104 -> same journal, I = 800.
			// mr = 28<<12 = 114688 bytes, already a multiple of 4096 -> 224.
			// (area+1)*224 + P <= 97504: area 2 -> P <= 96832, (96831>>15) = 2.
			// buffer: min(7, ffs(224) = 5) = 5.
			name: "luks2 64MiB 4k tag28 fix_padding",
			p:    LUKS2Params(131072, 32768, 4096, 28),
			want: Layout{
				Superblock: Superblock{
					Version: 4, Log2InterleaveSectors: 15, IntegrityTagSize: 28, JournalSections: 3,
					ProvidedDataSectors: 96832, Flags: FlagFixedPadding, Log2SectorsPerBlock: 3,
					Log2BlocksPerBitmapBit: 12,
				},
				DeviceSectors: 131072, Offset: 32768,
				JournalEntrySize: 104, JournalEntriesPerSector: 4, JournalSectionEntries: 32,
				JournalSectionSectors: 264, InitialSectors: 800, MetadataRunSectors: 224,
				Log2BufferSectors: 5,
			},
		},
		{
			// Same without fix_padding (legacy kernels or
			// CRYPT_COMPAT_LEGACY_INTEGRITY_PADDING): padding 131072 bytes,
			// mr = roundup(114688, 131072)/512 = 256 -> P = 96736 as in the
			// first case; no flags, version 1. buffer: min(7, 8) = 7.
			name: "64MiB 4k tag28 legacy padding",
			p:    Params{DeviceSectors: 131072, Offset: 32768, TagSize: 28, BlockSize: 4096, FixHMAC: true},
			want: Layout{
				Superblock: Superblock{
					Version: 1, Log2InterleaveSectors: 15, IntegrityTagSize: 28, JournalSections: 3,
					ProvidedDataSectors: 96736, Log2SectorsPerBlock: 3, Log2BlocksPerBitmapBit: 12,
				},
				DeviceSectors: 131072, Offset: 32768,
				JournalEntrySize: 104, JournalEntriesPerSector: 4, JournalSectionEntries: 32,
				JournalSectionSectors: 264, InitialSectors: 800, MetadataRunSectors: 256,
				Log2BufferSectors: 7,
			},
		},
		{
			// Standalone (integritysetup-like) 16 MiB, offset 0, T = 4
			// (crc32c), 512-byte blocks, no fix_padding.
			// journal_sectors = min(131072, 32768>>7) = 256.
			// entry = roundup(20, 8) = 24; eps = 504/24 = 21; entries 168;
			// section_sectors = 176; sections = 256/176 = 1; I = 184.
			// mr = roundup(4<<15 = 131072, 131072)/512 = 256.
			// area 0: P <= 32768 - 184 - 256 = 32328 (< 32768, area 0). P = 32328.
			// bitmap 15. version 1.
			name: "16MiB offset0 tag4",
			p:    Params{DeviceSectors: 32768, TagSize: 4, Mode: ModeDirect, InternalHash: true},
			want: Layout{
				Superblock: Superblock{
					Version: 1, Log2InterleaveSectors: 15, IntegrityTagSize: 4, JournalSections: 1,
					ProvidedDataSectors: 32328, Log2BlocksPerBitmapBit: 15,
				},
				DeviceSectors:    32768,
				JournalEntrySize: 24, JournalEntriesPerSector: 21, JournalSectionEntries: 168,
				JournalSectionSectors: 176, InitialSectors: 184, MetadataRunSectors: 256,
				Log2BufferSectors: 7,
			},
		},
		{
			// As above in bitmap mode (needs internal_hash): version 3.
			name: "16MiB offset0 tag4 bitmap",
			p:    Params{DeviceSectors: 32768, TagSize: 4, Mode: ModeBitmap, InternalHash: true},
			want: Layout{
				Superblock: Superblock{
					Version: 3, Log2InterleaveSectors: 15, IntegrityTagSize: 4, JournalSections: 1,
					ProvidedDataSectors: 32328, Log2BlocksPerBitmapBit: 15,
				},
				DeviceSectors:    32768,
				JournalEntrySize: 24, JournalEntriesPerSector: 21, JournalSectionEntries: 168,
				JournalSectionSectors: 176, InitialSectors: 184, MetadataRunSectors: 256,
				Log2BufferSectors: 7,
			},
		},
		{
			// journal_mac + fix_hmac + fix_padding, 16 MiB, T = 4.
			// sector space 504-8 = 496; eps = 496/24 = 20; entries 160;
			// section_sectors 168; sections = 256/168 = 1; I = 176.
			// mr = roundup(131072, 4096)/512 = 256.
			// P <= 32768 - 176 - 256 = 32336. flags = HAVE_JOURNAL_MAC |
			// FIXED_HMAC | FIXED_PADDING = 0x19, version 5 (salt random in
			// the kernel, zero here).
			name: "16MiB journal_mac fix_hmac",
			p: Params{DeviceSectors: 32768, TagSize: 4, InternalHash: true, JournalMAC: true,
				FixHMAC: true, FixPadding: true},
			want: Layout{
				Superblock: Superblock{
					Version: 5, Log2InterleaveSectors: 15, IntegrityTagSize: 4, JournalSections: 1,
					ProvidedDataSectors: 32336, Flags: FlagHaveJournalMAC | FlagFixedHMAC | FlagFixedPadding,
					Log2BlocksPerBitmapBit: 15,
				},
				DeviceSectors:    32768,
				JournalEntrySize: 24, JournalEntriesPerSector: 20, JournalSectionEntries: 160,
				JournalSectionSectors: 168, InitialSectors: 176, MetadataRunSectors: 256,
				Log2BufferSectors: 7,
			},
		},
		{
			// First case with interleave_sectors:1000 and journal_sectors:8192.
			// li = fls(1000)-1 = 9. sections = 8192/264 = 31;
			// I = 8 + 31*264 = 8192. mr = roundup(32<<6 = 2048, 4096)/512 = 8.
			// room = 131072 - 32768 - 8192 = 90112; need 8*(area+1) + P <= room:
			// area 173 -> P <= 88720, (88719>>9) = 173 holds; area 174 would
			// need P >= 89089 > 90112-8*175. P = 88720.
			// bitmap 15-3 = 12. buffer: min(7, ffs(8) = 3) = 3.
			name: "interleave 1000 journal 8192",
			p: func() Params {
				p := LUKS2Params(131072, 32768, 4096, 32)
				p.InterleaveSectors = 1000
				p.JournalSectors = 8192
				return p
			}(),
			want: Layout{
				Superblock: Superblock{
					Version: 4, Log2InterleaveSectors: 9, IntegrityTagSize: 32, JournalSections: 31,
					ProvidedDataSectors: 88720, Flags: FlagFixedPadding, Log2SectorsPerBlock: 3,
					Log2BlocksPerBitmapBit: 12,
				},
				DeviceSectors: 131072, Offset: 32768,
				JournalEntrySize: 104, JournalEntriesPerSector: 4, JournalSectionEntries: 32,
				JournalSectionSectors: 264, InitialSectors: 8192, MetadataRunSectors: 8,
				Log2BufferSectors: 3,
			},
		},
		{
			// Second case with journal_sectors:1 and sectors_per_bit:1: the
			// bitmap granularity grows until the journal has enough bits.
			// sections = max(1/88, 1) = 1; I = 8 + 88 = 96.
			// room = 2097152 - 32768 - 96 = 2064288; area 59 -> P <= 1956768,
			// (1956767>>15) = 59 holds; area 60 would need P >= 1966081 >
			// 2064288 - 61*1792. P = 1956768.
			// journal bits = 88<<12 = 360448. log2 sectors per bit from 0:
			// ceil(P/1), ceil(P/2) = 978384, ceil(P/4) = 489192 > 360448;
			// ceil(P/8) = 244596 <= 360448 -> 3.
			name: "1GiB journal 1 sectors_per_bit 1",
			p: func() Params {
				p := LUKS2Params(2097152, 32768, 512, 28)
				p.JournalSectors = 1
				p.SectorsPerBit = 1
				return p
			}(),
			want: Layout{
				Superblock: Superblock{
					Version: 4, Log2InterleaveSectors: 15, IntegrityTagSize: 28, JournalSections: 1,
					ProvidedDataSectors: 1956768, Flags: FlagFixedPadding, Log2BlocksPerBitmapBit: 3,
				},
				DeviceSectors: 2097152, Offset: 32768,
				JournalEntrySize: 48, JournalEntriesPerSector: 10, JournalSectionEntries: 80,
				JournalSectionSectors: 88, InitialSectors: 96, MetadataRunSectors: 1792,
				Log2BufferSectors: 7,
			},
		},
		{
			// Smallest device that gives data with the first case's
			// parameters: N = 33304, journal_sectors = min(131072, N>>7 =
			// 260) = 260 -> sections = max(260/264, 1) = 1, I = 8+264 = 272.
			// P <= N - S - I - mr = 33304 - 32768 - 272 - 256 = 8. P = 8.
			name: "smallest",
			p:    LUKS2Params(33304, 32768, 4096, 32),
			want: Layout{
				Superblock: Superblock{
					Version: 4, Log2InterleaveSectors: 15, IntegrityTagSize: 32, JournalSections: 1,
					ProvidedDataSectors: 8, Flags: FlagFixedPadding, Log2SectorsPerBlock: 3,
					Log2BlocksPerBitmapBit: 12,
				},
				DeviceSectors: 33304, Offset: 32768,
				JournalEntrySize: 104, JournalEntriesPerSector: 4, JournalSectionEntries: 32,
				JournalSectionSectors: 264, InitialSectors: 272, MetadataRunSectors: 256,
				Log2BufferSectors: 7,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewLayout(tc.p)
			if err != nil {
				t.Fatalf("NewLayout: %v", err)
			}
			if diff := cmp.Diff(tc.want, *got); diff != "" {
				t.Errorf("NewLayout (-want +got):\n%s", diff)
			}
			if err := got.Superblock.Validate(); err != nil {
				t.Errorf("predicted superblock does not validate: %v", err)
			}
			// The last data sector is inside the device, and the
			// superblock, read back, gives the same layout.
			last, err := got.DataSector(got.Superblock.ProvidedDataSectors - 1)
			if err != nil || last >= tc.p.DeviceSectors {
				t.Errorf("last data sector %d (err %v), device %d sectors", last, err, tc.p.DeviceSectors)
			}
			again, err := got.Superblock.Layout(tc.p.DeviceSectors, tc.p.Offset, tc.p.BufferSectors)
			if err != nil {
				t.Fatalf("Superblock.Layout: %v", err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("Superblock.Layout differs from NewLayout (-new +reloaded):\n%s", diff)
			}
		})
	}
}

func TestNewLayoutErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		p       Params
		wantIs  error
		wantSub string
	}{
		// One sector less than the "smallest" case: P would be 0.
		{"too small", LUKS2Params(33303, 32768, 4096, 32), ErrDeviceTooSmall, "33303 sectors at offset 32768"},
		{"offset beyond device", LUKS2Params(1000, 32768, 4096, 32), ErrDeviceTooSmall, "offset 32768 is not inside"},
		{"empty device", Params{TagSize: 4}, ErrDeviceTooSmall, "offset 0 is not inside the device of 0 sectors"},
		{"tag 0", LUKS2Params(1<<21, 32768, 4096, 0), nil, "tag size is 0"},
		{"tag too big", LUKS2Params(1<<21, 32768, 4096, 425), nil, "tag size 425 exceeds the kernel maximum 424"},
		{"block size 8192", LUKS2Params(1<<21, 32768, 8192, 32), nil, "invalid block size 8192"},
		{"block size 1000", LUKS2Params(1<<21, 32768, 1000, 32), nil, "invalid block size 1000"},
		{"block size 256", LUKS2Params(1<<21, 32768, 256, 32), nil, "invalid block size 256"},
		{"bitmap without hash", Params{DeviceSectors: 1 << 21, TagSize: 4, Mode: ModeBitmap}, nil, "bitmap mode can be only used with internal hash"},
		{"inline", Params{DeviceSectors: 1 << 21, TagSize: 4, Mode: ModeInline}, nil, `mode 'I' is not supported`},
		{"recovery", Params{DeviceSectors: 1 << 21, TagSize: 4, Mode: ModeRecovery}, nil, `mode 'R' is not supported`},
		{"bad mode", Params{DeviceSectors: 1 << 21, TagSize: 4, Mode: 'X'}, nil, `invalid mode 'X'`},
		{"huge device", Params{DeviceSectors: 1 << 60, TagSize: 4}, nil, "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLayout(tc.p)
			if err == nil {
				t.Fatalf("NewLayout accepted: %+v", *l)
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

// TestSuperblockLayoutResize: after the device grows, the kernel recomputes
// provided_data_sectors from the on-disk journal and interleave
// (dm_integrity_ctr -> get_provided_data_sectors) and rewrites it on resume.
// First case doubled: N = 262144, I = 800 (3 sections from the superblock,
// not from the new default journal size), mr = 256.
// room = 262144 - 32768 - 800 = 228576; area 6 -> P <= 228576 - 7*256 =
// 226784, (226783>>15) = 6 holds; area 7 needs P >= 229377. P = 226784.
func TestSuperblockLayoutResize(t *testing.T) {
	sb := goldenLUKS2Superblock()
	l, err := sb.Layout(262144, 32768, 0)
	if err != nil {
		t.Fatalf("Layout: %v", err)
	}
	want := sb
	want.ProvidedDataSectors = 226784
	if diff := cmp.Diff(want, l.Superblock); diff != "" {
		t.Errorf("Layout superblock (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name    string
		sb      Superblock
		dev     uint64
		wantSub string
	}{
		{"shrunk below data", sb, 32768 + 800 + 256 + 7, "device too small"},
		{"inline", Superblock{Version: 6, Log2InterleaveSectors: 15, IntegrityTagSize: 8, ProvidedDataSectors: 8, Flags: FlagInline}, 1 << 20, "inline mode"},
		{"separate metadata", Superblock{Version: 2, IntegrityTagSize: 8, JournalSections: 1, ProvidedDataSectors: 8}, 1 << 20, "separate metadata"},
		{"invalid", Superblock{}, 1 << 20, "version 0"},
		{"huge device", sb, 1 << 60, "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.sb.Layout(tc.dev, 32768, 0)
			if err == nil || !strings.Contains(err.Error(), tc.wantSub) {
				t.Errorf("Layout error %v, want one containing %q", err, tc.wantSub)
			}
		})
	}
}

// TestDataSectorTagOffset checks the placement of data and tags in the
// first case: area a's tags start at S + I + a*(32768 + 256), its data
// 256 sectors later; the tag of block b of an area is b*32 bytes in.
func TestDataSectorTagOffset(t *testing.T) {
	l, err := NewLayout(LUKS2Params(131072, 32768, 4096, 32))
	if err != nil {
		t.Fatal(err)
	}
	type pos struct{ Data, Tag uint64 }
	for _, tc := range []struct {
		sector uint64
		want   pos
	}{
		// Data: 32768 + 800 + 256 = 33824. Tag: (32768 + 800) * 512.
		{0, pos{33824, 33568 * 512}},
		// Same block (sectors 0..7 share one tag).
		{7, pos{33831, 33568 * 512}},
		// Block 1.
		{8, pos{33832, 33568*512 + 32}},
		// Last sector of area 0: block 4095.
		{32767, pos{33824 + 32767, 33568*512 + 4095*32}},
		// Area 1: tags at 33568 + 32768 + 256 = 66592, right after area 0's
		// data (33824 + 32768 = 66592); data 256 sectors later.
		{32768, pos{66848, 66592 * 512}},
		{32768 + 8, pos{66856, 66592*512 + 32}},
		// Last sector: N - 1.
		{96735, pos{131071, (33568+2*(32768+256))*512 + (96735-65536)/8*32}},
	} {
		d, err := l.DataSector(tc.sector)
		if err != nil {
			t.Fatalf("DataSector(%d): %v", tc.sector, err)
		}
		tg, err := l.TagOffset(tc.sector)
		if err != nil {
			t.Fatalf("TagOffset(%d): %v", tc.sector, err)
		}
		if diff := cmp.Diff(tc.want, pos{d, tg}); diff != "" {
			t.Errorf("sector %d (-want +got):\n%s", tc.sector, diff)
		}
	}
	if _, err := l.DataSector(96736); err == nil || !strings.Contains(err.Error(), "beyond provided_data_sectors 96736") {
		t.Errorf("DataSector(P) error %v", err)
	}
	if _, err := l.TagOffset(96736); err == nil || !strings.Contains(err.Error(), "beyond provided_data_sectors 96736") {
		t.Errorf("TagOffset(P) error %v", err)
	}
}

// TestTagOffsetBufferRounding mirrors a quirk of
// get_metadata_sector_and_offset: the metadata position of an area is
// rounded down to a whole metadata buffer. With interleave 8 (li = 3),
// T = 4, 512-byte blocks and legacy padding, mr = roundup(4<<3,
// 131072)/512 = 256 and the buffer stays 128 sectors (min(7, ffs(256)));
// area 1's metadata is at 8 + 256 = 264 sectors after I, which the kernel
// reads from buffer 264>>7 = 2, i.e. sector 256.
func TestTagOffsetBufferRounding(t *testing.T) {
	l, err := NewLayout(Params{DeviceSectors: 1 << 16, TagSize: 4, InterleaveSectors: 8, JournalSectors: 176})
	if err != nil {
		t.Fatal(err)
	}
	// sections = 176/176 = 1, I = 184.
	if l.InitialSectors != 184 || l.MetadataRunSectors != 256 || l.Log2BufferSectors != 7 {
		t.Fatalf("layout %+v", *l)
	}
	got, err := l.TagOffset(8)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(184+256) * 512; got != want {
		t.Errorf("TagOffset(8) = %d, want %d", got, want)
	}
}
