package e2e

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/sectorcrypt"
)

// TestLabSectorCryptKernel: the kernel's dm-crypt + dm-integrity write a
// known pattern through a volume with hmac-sha256 integrity (4096- and
// 512-byte sectors); on the host, sectorcrypt seals the same pattern with the
// volume key recovered from the header, and every sector's ciphertext and
// tag must be the bytes the kernel wrote, where the dm-integrity layout
// says they are. This is the oracle for writing such volumes offline
// (issue 17).
func TestLabSectorCryptKernel(t *testing.T) {
	bin := lab.ConfidiskBinary(t)
	dir := t.TempDir()
	pattern := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(17, 18))
	for i := range pattern {
		pattern[i] = byte(r.Uint32())
	}
	patFile := filepath.Join(dir, "pattern")
	if err := os.WriteFile(patFile, pattern, 0o600); err != nil {
		t.Fatal(err)
	}
	disks := []string{filepath.Join(dir, "s4096.img"), filepath.Join(dir, "s512.img")}
	lab.RunScenario(t, lab.Scenario{
		Name:  "sectorcrypt-kernel",
		Disks: []lab.Disk{{Path: disks[0], Size: 48 << 20}, {Path: disks[1], Size: 48 << 20}},
		Files: map[string]string{"/bin/confidisk": bin, "/pattern": patFile},
		Script: luksPreamble + `
check format-4096 confidisk luks format -q --integrity hmac-sha256 --sector-size 4096 $fast --key-file /key /dev/vda
check format-512 confidisk luks format -q --integrity hmac-sha256 --sector-size 512 $fast --key-file /key /dev/vdb
for d in a b; do
  check open-$d confidisk luks open --key-file /key /dev/vd$d v$d
  check write-$d dd if=/pattern of=/dev/mapper/v$d bs=64k conv=fsync
  check close-$d confidisk luks close v$d
done
`,
		Expect: []string{"write-a", "write-b"},
	})
	for _, img := range disks {
		t.Run(filepath.Base(img), func(t *testing.T) { checkKernelSectors(t, img, pattern) })
	}
}

// checkKernelSectors compares what the kernel wrote to img with sectorcrypt.
func checkKernelSectors(t *testing.T, img string, pattern []byte) {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := luks2.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	vk, _, err := h.Unlock(f, []byte("correct horse battery staple"), -1)
	if err != nil {
		t.Fatal(err)
	}
	seg := h.Metadata.Segments[0]
	if seg.Integrity == nil || seg.IVTweak != 0 {
		t.Fatalf("segment %+v: want integrity and iv_tweak 0", seg)
	}
	off := int64(seg.Offset)
	sb, err := integrity.ReadSuperblock(f, off)
	if err != nil {
		t.Fatal(err)
	}
	l, err := sb.Layout(uint64(st.Size())/integrity.SectorSize, uint64(off)/integrity.SectorSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sectorcrypt.NewHMACXTS(vk, seg.SectorSize)
	if err != nil {
		t.Fatal(err)
	}
	s := seg.SectorSize
	ct := make([]byte, len(pattern))
	tags := make([]byte, len(pattern)/s*sectorcrypt.TagSize)
	c.Seal(ct, tags, pattern, 0)
	disk := make([]byte, s)
	tag := make([]byte, sectorcrypt.TagSize)
	for k := range len(pattern) / s {
		s512 := uint64(k * s / 512)
		ds, err := l.DataSector(s512)
		if err != nil {
			t.Fatal(err)
		}
		to, err := l.TagOffset(s512)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadAt(disk, int64(ds)*integrity.SectorSize); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadAt(tag, int64(to)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(disk, ct[k*s:(k+1)*s]) {
			t.Fatalf("%d-byte sector %d: the kernel's ciphertext (device sector %d) differs from sectorcrypt's", s, k, ds)
		}
		if !bytes.Equal(tag, tags[k*sectorcrypt.TagSize:(k+1)*sectorcrypt.TagSize]) {
			t.Fatalf("%d-byte sector %d: the kernel's tag (offset %d) %x differs from sectorcrypt's %x", s, k, to, tag, tags[k*sectorcrypt.TagSize:(k+1)*sectorcrypt.TagSize])
		}
	}
	t.Logf("LAB-CHECK %s: %d sectors of %d bytes: ciphertext and tags identical to the kernel's", filepath.Base(img), len(pattern)/s, s)
}
