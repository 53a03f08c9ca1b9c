package gpt

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
)

// sfdiskJSON is the subset of `sfdisk --json` output the tests compare.
type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		FirstLBA   uint64 `json:"firstlba"`
		LastLBA    uint64 `json:"lastlba"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Node  string `json:"node"`
			Start uint64 `json:"start"`
			Size  uint64 `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
			Attrs string `json:"attrs"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// sfdiskPart is one partition as sfdisk prints it, normalised for comparison.
type sfdiskPart struct {
	Index       int
	Start, Size uint64
	Type, UUID  string
	Name, Attrs string
}

func runSfdisk(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	bin := testutil.LookPath(t, "sfdisk", "fdisk")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func sfdiskParts(t *testing.T, img string) (sfdiskJSON, []sfdiskPart) {
	t.Helper()
	var j sfdiskJSON
	if err := json.Unmarshal([]byte(runSfdisk(t, "", "--json", img)), &j); err != nil {
		t.Fatalf("parse sfdisk --json: %v", err)
	}
	var out []sfdiskPart
	for _, p := range j.PartitionTable.Partitions {
		var idx int
		if _, err := fmt.Sscanf(strings.TrimPrefix(p.Node, img), "%d", &idx); err != nil {
			t.Fatalf("sfdisk node %q: %v", p.Node, err)
		}
		out = append(out, sfdiskPart{Index: idx, Start: p.Start, Size: p.Size,
			Type: strings.ToLower(p.Type), UUID: strings.ToLower(p.UUID), Name: p.Name, Attrs: p.Attrs})
	}
	return j, out
}

// libfdiskAttrs formats attribute bits the way libfdisk (sfdisk) prints them.
func libfdiskAttrs(a uint64) string {
	var words []string
	for bit, name := range []string{"RequiredPartition", "NoBlockIOProtocol", "LegacyBIOSBootable"} {
		if a&(1<<bit) != 0 {
			words = append(words, name)
		}
	}
	var guid []string
	for bit := 48; bit < 64; bit++ {
		if a&(1<<bit) != 0 {
			guid = append(guid, fmt.Sprint(bit))
		}
	}
	if len(guid) > 0 {
		words = append(words, "GUID:"+strings.Join(guid, ","))
	}
	return strings.Join(words, " ")
}

func ourParts(tab *Table) []sfdiskPart {
	var out []sfdiskPart
	for _, p := range tab.Partitions {
		out = append(out, sfdiskPart{Index: p.Index, Start: p.FirstLBA, Size: p.LastLBA - p.FirstLBA + 1,
			Type: p.Type.String(), UUID: p.UUID.String(), Name: p.Name, Attrs: libfdiskAttrs(p.Attributes)})
	}
	return out
}

func writeImage(t *testing.T, tab *Table, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := tab.Write(f, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return img
}

func readImage(t *testing.T, img string) *Table {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Read(f, fi.Size(), 512)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// TestSfdiskReadsOurTable: sfdisk sees the types, UUIDs, names, attributes,
// starts and sizes we wrote, and finds nothing to complain about.
func TestSfdiskReadsOurTable(t *testing.T) {
	const size = 32 << 20
	tab := sampleTable(t, size, 512)
	img := writeImage(t, tab, size)

	j, got := sfdiskParts(t, img)
	if diff := cmp.Diff(ourParts(tab), got); diff != "" {
		t.Errorf("sfdisk --json partitions mismatch (-ours +sfdisk):\n%s", diff)
	}
	pt := j.PartitionTable
	if pt.Label != "gpt" || pt.ID != strings.ToUpper(tab.DiskGUID.String()) || pt.SectorSize != 512 || pt.LastLBA != tab.LastUsableLBA {
		t.Errorf("sfdisk table header: label %q id %q sector size %d last LBA %d; want gpt %v 512 %d",
			pt.Label, pt.ID, pt.SectorSize, pt.LastLBA, tab.DiskGUID, tab.LastUsableLBA)
	}

	dump := runSfdisk(t, "", "--dump", img)
	for _, p := range tab.Partitions {
		s := fmt.Sprintf("%s%d : start=%12d, size=%12d, type=%s, uuid=%s", img, p.Index, p.FirstLBA, p.LastLBA-p.FirstLBA+1,
			strings.ToUpper(p.Type.String()), strings.ToUpper(p.UUID.String()))
		if !strings.Contains(dump, s) {
			t.Errorf("sfdisk --dump lacks %q:\n%s", s, dump)
		}
	}
	if !strings.Contains(dump, "label-id: "+strings.ToUpper(tab.DiskGUID.String())) {
		t.Errorf("sfdisk --dump lacks the disk GUID:\n%s", dump)
	}

	if out := runSfdisk(t, "", "--verify", img); !strings.Contains(out, "No errors detected") {
		t.Errorf("sfdisk --verify:\n%s", out)
	}
}

// TestWeReadSfdiskTable: a table sfdisk writes reads back identically here.
func TestWeReadSfdiskTable(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 48<<20); err != nil {
		t.Fatal(err)
	}
	script := `label: gpt
label-id: 0A1B2C3D-4E5F-4607-8899-AABBCCDDEEFF
start=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=AAAAAAAA-0000-4000-8000-000000000001, name="esp", attrs="RequiredPartition LegacyBIOSBootable"
size=16MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=A1B2C3D4-E5F6-0718-293A-4B5C6D7E8F90, name="root ☃", attrs="GUID:60"
size=1MiB, type=2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5, uuid=11223344-5566-7788-99AA-BBCCDDEEFF00, name="root-verity", attrs="GUID:60"
type=4D21B016-B534-45C2-A9FB-5C16E091FD2D, uuid=FFEEDDCC-BBAA-4099-8877-665544332211, name="a-name-of-thirty-six-code-units-long", attrs="GUID:59,62,63"
`
	runSfdisk(t, script, "-q", "--no-reread", "--no-tell-kernel", img)
	tab := readImage(t, img)
	j, want := sfdiskParts(t, img)
	if diff := cmp.Diff(want, ourParts(tab)); diff != "" {
		t.Errorf("our reading of sfdisk's table mismatch (-sfdisk +ours):\n%s", diff)
	}
	if tab.DiskGUID.String() != "0a1b2c3d-4e5f-4607-8899-aabbccddeeff" || tab.Source != Primary {
		t.Errorf("disk GUID %v source %v", tab.DiskGUID, tab.Source)
	}
	if tab.LastUsableLBA != j.PartitionTable.LastLBA {
		t.Errorf("last usable LBA %d, sfdisk says %d", tab.LastUsableLBA, j.PartitionTable.LastLBA)
	}
	// The DPS verity pair: the UUIDs are the halves of the root hash.
	data, hash := VerityUUIDs([]byte{0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18, 0x29, 0x3a, 0x4b, 0x5c, 0x6d, 0x7e, 0x8f, 0x90,
		0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00})
	if r := Find(tab, TypeRootX86_64, ""); len(r) != 1 || r[0].UUID != data {
		t.Errorf("root partition %+v, want UUID %v", r, data)
	}
	if v := Find(tab, TypeRootVerityX86_64, "root-verity"); len(v) != 1 || v[0].UUID != hash {
		t.Errorf("verity partition %+v, want UUID %v", v, hash)
	}

	// Damage sfdisk's primary header: we read its backup, identically.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XXXX"), 512+56); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	backup := readImage(t, img)
	if backup.Source != Backup {
		t.Errorf("source %v, want backup", backup.Source)
	}
	tab.Source = Backup
	if diff := cmp.Diff(tab, backup, ignoreErr); diff != "" {
		t.Errorf("backup of sfdisk's table mismatch (-primary +backup):\n%s", diff)
	}
}
