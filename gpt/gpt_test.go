package gpt

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// memDisk is an in-memory disk image implementing io.ReaderAt and io.WriterAt.
type memDisk []byte

func (d memDisk) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(d).ReadAt(p, off)
}

func (d memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(d)) {
		return 0, errors.New("write beyond the end of the disk")
	}
	return copy(d[off:], p), nil
}

func mustGUID(t testing.TB, s string) GUID {
	t.Helper()
	g, err := ParseGUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// ignoreErr compares Tables without their PrimaryErr, which tests check apart.
var ignoreErr = cmpopts.IgnoreFields(Table{}, "PrimaryErr")

func TestParseGUID(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", want: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"},
		{in: "00000000-0000-0000-0000-000000000000", want: "00000000-0000-0000-0000-000000000000"},
		{in: "c12a7328f81f11d2ba4b00a0c93ec93b", wantErr: "length 32"},
		{in: "c12a7328-f81f-11d2-ba4b-00a0c93ec93", wantErr: "length 35"},
		{in: "c12a7328-f81f-11d2+ba4b-00a0c93ec93b", wantErr: "want '-' at offset 18"},
		{in: "c12a7328-f81f-11d2-ba4b-00a0c93ec9xb", wantErr: "invalid hex digit at offset 34"},
		{in: "", wantErr: "length 0"},
	}
	for _, tc := range tests {
		g, err := ParseGUID(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseGUID(%q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseGUID(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, g.String()); diff != "" {
			t.Errorf("ParseGUID(%q).String() mismatch (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestGUIDMixedEndian(t *testing.T) {
	// The ESP type GUID as it appears on disk (UEFI specification, and every
	// GPT disk ever written): first three fields little-endian.
	onDisk, _ := hex.DecodeString("28732ac11ff8d211ba4b00a0c93ec93b")
	if got := decodeGUID(onDisk); got != TypeESP {
		t.Errorf("decodeGUID(ESP on-disk bytes) = %v, want %v", got, TypeESP)
	}
	b := make([]byte, 16)
	encodeGUID(b, TypeESP)
	if diff := cmp.Diff(onDisk, b); diff != "" {
		t.Errorf("encodeGUID(ESP) mismatch (-want +got):\n%s", diff)
	}
}

func TestGUIDText(t *testing.T) {
	var g GUID
	if err := g.UnmarshalText([]byte("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")); err != nil {
		t.Fatal(err)
	}
	if g != TypeRootX86_64 {
		t.Errorf("UnmarshalText = %v, want %v", g, TypeRootX86_64)
	}
	out, _ := g.MarshalText()
	if string(out) != "4f68bce3-e8cd-4db1-96e7-fbcaf984b709" {
		t.Errorf("MarshalText = %s", out)
	}
	if err := g.UnmarshalText([]byte("nope")); err == nil {
		t.Error("UnmarshalText(nope) succeeded")
	}
	r, err := NewRandomGUID()
	if err != nil {
		t.Fatal(err)
	}
	if r.IsZero() || r[6]>>4 != 4 || r[8]>>6 != 2 {
		t.Errorf("NewRandomGUID() = %v, want a version 4 variant 1 GUID", r)
	}
}

// TestDPSTypes pins every type GUID to the text of the uapi-group
// Discoverable Partitions Specification (x86-64 rows, and the shared rows).
func TestDPSTypes(t *testing.T) {
	spec := map[string]string{
		"SD_GPT_ROOT_X86_64":            "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
		"SD_GPT_USR_X86_64":             "8484680c-9521-48c6-9c11-b0720656f69e",
		"SD_GPT_ROOT_X86_64_VERITY":     "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
		"SD_GPT_USR_X86_64_VERITY":      "77ff5f63-e7b6-4633-acf4-1565b864c0e6",
		"SD_GPT_ROOT_X86_64_VERITY_SIG": "41092b05-9fc8-4523-994f-2def0408b176",
		"SD_GPT_USR_X86_64_VERITY_SIG":  "e7bb33fb-06cf-4e81-8273-e543b413e2e2",
		"SD_GPT_ESP":                    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
		"SD_GPT_XBOOTLDR":               "bc13c2ff-59e6-4262-a352-b275fd6f7172",
		"SD_GPT_SWAP":                   "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
		"SD_GPT_HOME":                   "933ac7e1-2eb4-4f13-b844-0e14e2aef915",
		"SD_GPT_SRV":                    "3b8f8425-20e0-4f3b-907f-1a25a76f98e8",
		"SD_GPT_VAR":                    "4d21b016-b534-45c2-a9fb-5c16e091fd2d",
		"SD_GPT_TMP":                    "7ec6f557-3bc5-4aca-b293-16ef5df639d1",
		"SD_GPT_LINUX_GENERIC":          "0fc63daf-8483-4772-8e79-3d69d8477de4",
	}
	got := map[string]string{
		"SD_GPT_ROOT_X86_64":            TypeRootX86_64.String(),
		"SD_GPT_USR_X86_64":             TypeUsrX86_64.String(),
		"SD_GPT_ROOT_X86_64_VERITY":     TypeRootVerityX86_64.String(),
		"SD_GPT_USR_X86_64_VERITY":      TypeUsrVerityX86_64.String(),
		"SD_GPT_ROOT_X86_64_VERITY_SIG": TypeRootVeritySigX86_64.String(),
		"SD_GPT_USR_X86_64_VERITY_SIG":  TypeUsrVeritySigX86_64.String(),
		"SD_GPT_ESP":                    TypeESP.String(),
		"SD_GPT_XBOOTLDR":               TypeXBOOTLDR.String(),
		"SD_GPT_SWAP":                   TypeSwap.String(),
		"SD_GPT_HOME":                   TypeHome.String(),
		"SD_GPT_SRV":                    TypeSrv.String(),
		"SD_GPT_VAR":                    TypeVar.String(),
		"SD_GPT_TMP":                    TypeTmp.String(),
		"SD_GPT_LINUX_GENERIC":          TypeLinuxGeneric.String(),
	}
	if diff := cmp.Diff(spec, got); diff != "" {
		t.Errorf("DPS type GUIDs mismatch (-spec +got):\n%s", diff)
	}
	if AttrNoAuto != 1<<63 || AttrReadOnly != 1<<60 || AttrGrowFS != 1<<59 || AttrHidden != 1<<62 || AttrRequired != 1 {
		t.Error("attribute bits do not match the DPS / UEFI bit numbers")
	}
}

func TestVerityUUIDs(t *testing.T) {
	// A SHA-256 root hash: the data partition gets the first 16 bytes, the
	// hash partition the last 16, printed as they are (no byte swapping).
	rh, _ := hex.DecodeString("a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00")
	data, hash := VerityUUIDs(rh)
	if diff := cmp.Diff("a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90", data.String()); diff != "" {
		t.Errorf("data UUID (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("11223344-5566-7788-99aa-bbccddeeff00", hash.String()); diff != "" {
		t.Errorf("hash UUID (-want +got):\n%s", diff)
	}
	// On disk the GUID is mixed-endian, so the first bytes are swapped there.
	b := make([]byte, 16)
	encodeGUID(b, data)
	if want := "d4c3b2a1f6e51807293a4b5c6d7e8f90"; hex.EncodeToString(b) != want {
		t.Errorf("on-disk data UUID = %x, want %s", b, want)
	}
	// A SHA-512 root hash takes the last 128 bits of 512.
	rh512 := bytes.Repeat([]byte{0}, 64)
	rh512[0], rh512[63] = 0x01, 0xff
	d, h := VerityUUIDs(rh512)
	if d.String() != "01000000-0000-0000-0000-000000000000" || h.String() != "00000000-0000-0000-0000-0000000000ff" {
		t.Errorf("VerityUUIDs(sha512) = %v, %v", d, h)
	}
	if d, h := VerityUUIDs(rh[:15]); !d.IsZero() || !h.IsZero() {
		t.Errorf("VerityUUIDs(15 bytes) = %v, %v, want zero GUIDs", d, h)
	}
}

// sampleTable builds the DPS layout confidisk's images use.
func sampleTable(t testing.TB, size int64, sectorSize int) *Table {
	t.Helper()
	tab, err := New(size, sectorSize)
	if err != nil {
		t.Fatal(err)
	}
	tab.DiskGUID = mustGUID(t, "11111111-2222-4333-8444-555555555555")
	rh, _ := hex.DecodeString("a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00")
	data, hash := VerityUUIDs(rh)
	for _, p := range []Partition{
		{Type: TypeESP, UUID: mustGUID(t, "aaaaaaaa-0000-4000-8000-000000000001"), Name: "esp", Size: 4 << 20},
		{Type: TypeRootX86_64, UUID: data, Name: "root", Size: 8 << 20, Attributes: AttrReadOnly},
		{Type: TypeRootVerityX86_64, UUID: hash, Name: "root-verity", Size: 1 << 20, Attributes: AttrReadOnly},
		{Type: TypeVar, UUID: mustGUID(t, "aaaaaaaa-0000-4000-8000-000000000004"), Name: "state ☃ é",
			Attributes: AttrNoAuto | AttrRequired | AttrHidden | AttrGrowFS},
	} {
		if _, err := tab.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	return tab
}

func TestWriteRead(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		const size = 32 << 20
		tab := sampleTable(t, size, ss)
		disk := make(memDisk, size)
		if err := tab.Write(disk, size); err != nil {
			t.Fatal(err)
		}
		got, err := Read(disk, size, ss)
		if err != nil {
			t.Fatalf("sector size %d: %v", ss, err)
		}
		if diff := cmp.Diff(tab, got); diff != "" {
			t.Errorf("sector size %d: read back mismatch (-wrote +read):\n%s", ss, diff)
		}
		// The layout: 1 MiB aligned starts, rest of the disk for the last one.
		mib := int64(1 << 20)
		wantStarts := []int64{mib, 5 * mib, 13 * mib, 14 * mib}
		for i, p := range got.Partitions {
			if p.Start != wantStarts[i] || p.Index != i+1 {
				t.Errorf("sector size %d: partition %d at %d (index %d), want %d", ss, i, p.Start, p.Index, wantStarts[i])
			}
		}
		last := got.Partitions[3]
		if last.LastLBA != got.LastUsableLBA {
			t.Errorf("Size 0 partition ends at %d, want last usable LBA %d", last.LastLBA, got.LastUsableLBA)
		}
		wantFirst := map[int]uint64{512: 34, 4096: 6}[ss]
		if got.FirstUsableLBA != wantFirst || got.LastUsableLBA != uint64(size/int64(ss))-wantFirst {
			t.Errorf("sector size %d: usable %d..%d", ss, got.FirstUsableLBA, got.LastUsableLBA)
		}
		// Protective MBR record.
		rec := disk[446:462]
		if rec[4] != 0xee || binary.LittleEndian.Uint32(rec[8:]) != 1 ||
			binary.LittleEndian.Uint32(rec[12:]) != uint32(size/int64(ss)-1) || disk[510] != 0x55 || disk[511] != 0xaa {
			t.Errorf("sector size %d: bad protective MBR % x", ss, rec)
		}
	}
}

func TestFind(t *testing.T) {
	tab := sampleTable(t, 32<<20, 512)
	names := func(ps []Partition) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	tests := []struct {
		typ   GUID
		label string
		want  []string
	}{
		{TypeRootX86_64, "", []string{"root"}},
		{TypeRootX86_64, "root", []string{"root"}},
		{TypeRootX86_64, "usr", nil},
		{TypeVar, "state ☃ é", []string{"state ☃ é"}},
		{TypeHome, "", nil},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, names(Find(tab, tc.typ, tc.label))); diff != "" {
			t.Errorf("Find(%v, %q) mismatch (-want +got):\n%s", tc.typ, tc.label, diff)
		}
	}
	if Find(nil, TypeESP, "") != nil {
		t.Error("Find(nil) returned partitions")
	}
}

func TestAddErrors(t *testing.T) {
	tab, err := New(8<<20, 512)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    Partition
		want string
	}{
		{"zero type", Partition{Name: "x", Size: 1 << 20}, "zero type GUID"},
		{"too big", Partition{Type: TypeESP, Size: 8 << 20}, "do not fit"},
		{"negative", Partition{Type: TypeESP, Size: -1}, "negative size"},
		{"long name", Partition{Type: TypeESP, Name: strings.Repeat("x", 37), Size: 1 << 20}, "37 UTF-16 code units"},
		{"nul in name", Partition{Type: TypeESP, Name: "a\x00b", Size: 1 << 20}, "contains NUL"},
	}
	for _, tc := range tests {
		_, err := tab.Add(tc.p)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Add error = %v, want ErrInvalid containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := tab.Add(Partition{Type: TypeESP}); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Add(Partition{Type: TypeESP, Size: 512}); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("Add to a full disk: %v", err)
	}
	if _, err := New(16<<10, 512); err == nil {
		t.Error("New(16 KiB) succeeded")
	}
	if _, err := New(1<<20, 1000); err == nil {
		t.Error("New with sector size 1000 succeeded")
	}
	small := &Table{SectorSize: 512, EntryCount: 1, EntrySize: 128, FirstUsableLBA: 3, LastUsableLBA: 10000}
	if _, err := small.Add(Partition{Type: TypeESP, Size: 512}); err != nil {
		t.Fatal(err)
	}
	if _, err := small.Add(Partition{Type: TypeESP, Size: 512}); err == nil || !strings.Contains(err.Error(), "all 1 entries are used") {
		t.Errorf("Add beyond the entry count: %v", err)
	}
}

func TestWriteErrors(t *testing.T) {
	const size = 32 << 20
	tests := []struct {
		name   string
		mutate func(*Table)
		size   int64
		want   string
	}{
		{"overlap", func(t *Table) { t.Partitions[1].FirstLBA = t.Partitions[0].LastLBA }, size, "overlap"},
		{"outside", func(t *Table) { t.Partitions[3].LastLBA = t.LastUsableLBA + 1 }, size, "outside the usable range"},
		{"disk shrunk", func(*Table) {}, size - 1<<20, "do not fit between the entry arrays"},
		{"unaligned size", func(*Table) {}, size + 1, "not a multiple"},
		{"dup index", func(t *Table) { t.Partitions[1].Index = 1 }, size, "index used twice"},
		{"bad entry size", func(t *Table) { t.EntrySize = 100 }, size, "entries of 100 bytes"},
		{"long name", func(t *Table) { t.Partitions[0].Name = strings.Repeat("é", 37) }, size, "37 UTF-16"},
	}
	for _, tc := range tests {
		tab := sampleTable(t, size, 512)
		tc.mutate(tab)
		disk := make(memDisk, max(tc.size, size))
		err := tab.Write(disk, tc.size)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Write error = %v, want it to contain %q", tc.name, err, tc.want)
		}
		if !bytes.Equal(disk, make([]byte, len(disk))) {
			t.Errorf("%s: Write failed but wrote to the disk", tc.name)
		}
	}
}

// writeSample writes sampleTable to a fresh 32 MiB disk of 512-byte sectors.
func writeSample(t testing.TB) (memDisk, *Table) {
	t.Helper()
	const size = 32 << 20
	tab := sampleTable(t, size, 512)
	disk := make(memDisk, size)
	if err := tab.Write(disk, size); err != nil {
		t.Fatal(err)
	}
	return disk, tab
}

// fixHeaderCRC recomputes the header CRC of the header in lba.
func fixHeaderCRC(d memDisk, lba int64) {
	h := d[lba*512:][:HeaderSize]
	binary.LittleEndian.PutUint32(h[16:20], 0)
	binary.LittleEndian.PutUint32(h[16:20], crc(h))
}

// editHeaders applies f to both headers and fixes their CRCs.
func editHeaders(d memDisk, f func(h []byte)) {
	last := int64(len(d))/512 - 1
	for _, lba := range []int64{1, last} {
		f(d[lba*512:][:512])
		fixHeaderCRC(d, lba)
	}
}

// editEntries applies f to both entry arrays and fixes the entry and header CRCs.
func editEntries(d memDisk, f func(e []byte)) {
	last := int64(len(d))/512 - 1
	for _, lba := range []int64{1, last} {
		h := d[lba*512:][:512]
		elba := int64(binary.LittleEndian.Uint64(h[72:80]))
		n := int64(binary.LittleEndian.Uint32(h[80:84])) * int64(binary.LittleEndian.Uint32(h[84:88]))
		e := d[elba*512:][:n]
		f(e)
		binary.LittleEndian.PutUint32(h[88:92], crc(e))
		fixHeaderCRC(d, lba)
	}
}

func TestBackupFallback(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(d memDisk)
		wantErr error
		wantMsg string
	}{
		{"primary header byte", func(d memDisk) { d[512+60] ^= 0xff }, ErrHeaderCRC, "header CRC32 mismatch: LBA 1 says"},
		{"primary header zeroed", func(d memDisk) { clear(d[512:1024]) }, ErrInvalid, `no "EFI PART" signature in LBA 1`},
		{"primary entries", func(d memDisk) { d[1024+200] ^= 1 }, ErrEntriesCRC, "partition entry array CRC32 mismatch: header says"},
	}
	for _, tc := range tests {
		disk, want := writeSample(t)
		tc.damage(disk)
		got, err := Read(disk, int64(len(disk)), 512)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got.Source != Backup || got.Source.String() != "backup" {
			t.Errorf("%s: Source = %v, want backup", tc.name, got.Source)
		}
		if !errors.Is(got.PrimaryErr, tc.wantErr) || !strings.Contains(got.PrimaryErr.Error(), tc.wantMsg) {
			t.Errorf("%s: PrimaryErr = %v, want %v containing %q", tc.name, got.PrimaryErr, tc.wantErr, tc.wantMsg)
		}
		want.Source = Backup
		if diff := cmp.Diff(want, got, ignoreErr); diff != "" {
			t.Errorf("%s: backup table mismatch (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestBackupAtAlternateLBA: a disk that grew keeps its backup at the old end;
// when the primary entries are damaged, Read follows the primary header's
// alternate LBA.
func TestBackupAtAlternateLBA(t *testing.T) {
	disk, want := writeSample(t)
	grown := append(memDisk(bytes.Clone(disk)), make([]byte, 1<<20)...)
	grown[1024+5] ^= 1 // primary entry array
	got, err := Read(grown, int64(len(grown)), 512)
	if err != nil {
		t.Fatal(err)
	}
	want.Source = Backup
	if diff := cmp.Diff(want, got, ignoreErr); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestBothDamaged(t *testing.T) {
	disk, _ := writeSample(t)
	last := int64(len(disk))/512 - 1
	disk[512+70] ^= 1
	disk[last*512+70] ^= 1
	_, err := Read(disk, int64(len(disk)), 512)
	if err == nil {
		t.Fatal("Read succeeded with both headers damaged")
	}
	for _, s := range []string{"no valid GPT", "primary (LBA 1): header CRC32 mismatch", "backup (LBA 65535): header CRC32 mismatch"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	if !errors.Is(err, ErrHeaderCRC) {
		t.Errorf("error %v is not ErrHeaderCRC", err)
	}

	disk, _ = writeSample(t)
	disk[1024+3] ^= 1
	disk[(last-32)*512+3] ^= 1
	_, err = Read(disk, int64(len(disk)), 512)
	if !errors.Is(err, ErrEntriesCRC) || strings.Count(err.Error(), "partition entry array CRC32 mismatch") != 2 {
		t.Errorf("both entry arrays corrupted: error = %v, want the entries CRC named for both copies", err)
	}
}

func TestReadCorrupt(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		name   string
		damage func(d memDisk)
		want   string
	}{
		{"no MBR signature", func(d memDisk) { d[510] = 0 }, "no protective MBR: boot signature"},
		{"no 0xee record", func(d memDisk) { d[446+4] = 0x83 }, "no partition record of type 0xee"},
		{"revision 2", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint32(h[8:], 0x00020000) }) }, "unsupported header revision"},
		{"header size 91", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint32(h[12:], 91) }) }, "header size 91"},
		{"header size 513", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint32(h[12:], 513) }) }, "header size 513"},
		{"my LBA", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint64(h[24:], 7) }) }, "says it is in LBA 7"},
		{"first > last usable", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint64(h[40:], 1<<40) }) }, "first usable LBA 1099511627776 after last usable"},
		{"last usable at end", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint64(h[48:], 65535) }) }, "reaches the last LBA"},
		{"entry size 100", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint32(h[84:], 100) }) }, "partition entry size 100"},
		{"entry size 132", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint32(h[84:], 132) }) }, "partition entry size 132"},
		{"entry count 0", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint32(h[80:], 0) }) }, "entry count is 0"},
		{"entry count huge", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint32(h[80:], 0xffffffff) }) }, "4294967295 entries × 128 bytes exceeds"},
		{"entries beyond disk", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint64(h[72:], 1<<62) }) }, "partition entry array LBAs 4611686018427387904"},
		{"entries over header", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint64(h[72:], le.Uint64(h[24:])) }) }, "outside 2..65535"},
		{"entries in usable", func(d memDisk) { editHeaders(d, func(h []byte) { le.PutUint64(h[72:], 100) }) }, "overlap the usable range"},
		{"partition before usable", func(d memDisk) { editEntries(d, func(e []byte) { le.PutUint64(e[32:], 33) }) }, "partition 1: LBAs 33..10239 outside the usable range"},
		{"partition after usable", func(d memDisk) { editEntries(d, func(e []byte) { le.PutUint64(e[128*3+40:], 65503) }) }, "partition 4: LBAs 28672..65503 outside"},
		{"partition reversed", func(d memDisk) { editEntries(d, func(e []byte) { le.PutUint64(e[40:], 2000) }) }, "first LBA 2048 after last LBA 2000"},
		{"partitions overlap", func(d memDisk) { editEntries(d, func(e []byte) { le.PutUint64(e[128+32:], 10000) }) }, "partitions 1 and 2 overlap"},
	}
	for _, tc := range tests {
		disk, _ := writeSample(t)
		tc.damage(disk)
		_, err := Read(disk, int64(len(disk)), 512)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Read error = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestReadSmallInputs(t *testing.T) {
	disk, _ := writeSample(t)
	tests := []struct {
		name string
		r    memDisk
		size int64
		ss   int
		want string
	}{
		{"sector size 0", disk, int64(len(disk)), 0, "sector size 0"},
		{"too small", disk[:1024], 1024, 512, "too small"},
		{"short reader", disk[:4096], int64(len(disk)), 512, "unexpected EOF"},
		{"wrong sector size", disk, int64(len(disk)), 4096, `no "EFI PART" signature`},
	}
	for _, tc := range tests {
		_, err := Read(tc.r, tc.size, tc.ss)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Read error = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// TestReadLargeEntries reads a table with 256-byte entries and a 128-byte
// header (both allowed by UEFI), as other tools may write.
func TestReadLargeEntries(t *testing.T) {
	const size = 8 << 20
	tab, err := New(size, 512)
	if err != nil {
		t.Fatal(err)
	}
	tab.EntrySize = 256
	tab.EntryCount = 64
	if _, err := tab.Add(Partition{Type: TypeLinuxGeneric, Name: "data", Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	disk := make(memDisk, size)
	if err := tab.Write(disk, size); err != nil {
		t.Fatal(err)
	}
	editHeaders(disk, func(h []byte) {
		binary.LittleEndian.PutUint32(h[12:], 128)
		h[100] = 0x5a // ignored header tail, covered by the CRC
	})
	for _, lba := range []int64{1, size/512 - 1} {
		h := disk[lba*512:][:128]
		binary.LittleEndian.PutUint32(h[16:20], 0)
		binary.LittleEndian.PutUint32(h[16:20], crc(h))
	}
	got, err := Read(disk, size, 512)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tab, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestSourceString(t *testing.T) {
	if Primary.String() != "primary" || Source(7).String() != "Source(7)" {
		t.Errorf("Source.String: %v %v", Primary, Source(7))
	}
}
