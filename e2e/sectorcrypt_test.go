package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/sectorcrypt"
)

// TestLabSectorCryptKernel: the kernel's dm-crypt + dm-integrity write a
// known pattern through volumes with hmac-sha256 integrity (4096- and
// 512-byte sectors), hmac-sha512 and aes-gcm-random with aead (4096); on the host, sectorcrypt seals the same pattern with the
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
	disks := []string{filepath.Join(dir, "s4096.img"), filepath.Join(dir, "s512.img"), filepath.Join(dir, "sha512.img"), filepath.Join(dir, "aead.img")}
	lab.RunScenario(t, lab.Scenario{
		Name: "sectorcrypt-kernel",
		Disks: []lab.Disk{{Path: disks[0], Size: 48 << 20}, {Path: disks[1], Size: 48 << 20}, {Path: disks[2], Size: 48 << 20},
			{Path: disks[3], Size: 48 << 20}},
		Files: map[string]string{"/bin/confidisk": bin, "/pattern": patFile},
		Script: luksPreamble + `
check format-4096 confidisk luks format -q --integrity hmac-sha256 --sector-size 4096 $fast --key-file /key /dev/vda
check format-512 confidisk luks format -q --integrity hmac-sha256 --sector-size 512 $fast --key-file /key /dev/vdb
check format-sha512 confidisk luks format -q --integrity hmac-sha512 --sector-size 4096 $fast --key-file /key /dev/vdc
check format-aead confidisk luks format -q --integrity aead --sector-size 4096 $fast --key-file /key /dev/vdd
for d in a b c d; do
  check open-$d confidisk luks open --key-file /key /dev/vd$d v$d
  check write-$d dd if=/pattern of=/dev/mapper/v$d bs=64k conv=fsync
  check close-$d confidisk luks close v$d
done
`,
		Expect: []string{"write-a", "write-b", "write-c", "write-d"},
	})
	for _, img := range disks {
		t.Run(filepath.Base(img), func(t *testing.T) { checkKernelSectors(t, img, pattern) })
	}
}

// checkKernelSectors compares what the kernel wrote to img with sectorcrypt.
func checkKernelSectors(t *testing.T, img string, pattern []byte) {
	f, h, l := volumeLayout(t, img, os.O_RDONLY)
	defer f.Close()
	vk, _, err := h.Unlock(f, []byte("correct horse battery staple"), -1)
	if err != nil {
		t.Fatal(err)
	}
	seg := h.Metadata.Segments[0]
	if seg.Integrity == nil || seg.IVTweak != 0 {
		t.Fatalf("segment %+v: want integrity and iv_tweak 0", seg)
	}
	c, err := sectorcrypt.ForSegment(seg.Encryption, seg.Integrity.Type, vk, seg.SectorSize)
	if err != nil {
		t.Fatal(err)
	}
	s, ts := seg.SectorSize, c.TagSize()
	ct := make([]byte, len(pattern))
	tags := make([]byte, len(pattern)/s*ts)
	gcm, random := c.(*sectorcrypt.GCMRandom)
	if !random {
		c.Seal(ct, tags, pattern, 0)
	}
	disk := make([]byte, s)
	tag := make([]byte, ts)
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
		if random { // the kernel drew the IV: open the sector with it
			if err := gcm.Open(ct[k*s:(k+1)*s], disk, tag, s512); err != nil || !bytes.Equal(ct[k*s:(k+1)*s], pattern[k*s:(k+1)*s]) {
				t.Fatalf("%d-byte sector %d: the kernel's sector (device sector %d) does not open with sectorcrypt to the pattern: %v", s, k, ds, err)
			}
			continue
		}
		if !bytes.Equal(disk, ct[k*s:(k+1)*s]) {
			t.Fatalf("%d-byte sector %d: the kernel's ciphertext (device sector %d) differs from sectorcrypt's", s, k, ds)
		}
		if !bytes.Equal(tag, tags[k*ts:(k+1)*ts]) {
			t.Fatalf("%d-byte sector %d: the kernel's tag (offset %d) %x differs from sectorcrypt's %x", s, k, to, tag, tags[k*ts:(k+1)*ts])
		}
	}
	what := "ciphertext and tags identical to the kernel's"
	if random {
		what = "the kernel's sectors open with sectorcrypt (tag and IV where dm-integrity keeps them) to the pattern"
	}
	t.Logf("LAB-CHECK %s: %d sectors of %d bytes with %s %s: %s", filepath.Base(img), len(pattern)/s, s, seg.Encryption, seg.Integrity.Type, what)
}

// TestLabOfflineIntegrity: volumes written entirely by `confidisk luks
// format --offline` on the host (no device-mapper; hmac-sha256, hmac-sha512,
// aead) open in the guest's kernel, with confidisk (offline-integrity-open)
// and with cryptsetup (offline-integrity-cryptsetup), with no
// recalculation: the data given reads back, the rest reads as zeros without
// an I/O error, and a flipped ciphertext byte gives EIO. integritysetup
// dump on the host agrees with the superblock the kernel uses.
func TestLabOfflineIntegrity(t *testing.T) {
	bin := lab.ConfidiskBinary(t)
	is := testutil.LookPath(t, "integritysetup", "cryptsetup-bin")
	dir := t.TempDir()
	pattern := make([]byte, 3<<20)
	r := rand.New(rand.NewPCG(19, 20))
	for i := range pattern {
		pattern[i] = byte(r.Uint32())
	}
	patFile := filepath.Join(dir, "pattern")
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("correct horse battery staple"), 0o600)
	if err := os.WriteFile(patFile, pattern, 0o600); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, args ...string) string {
		img := filepath.Join(dir, name)
		if err := os.WriteFile(img, nil, 0o600); err != nil || os.Truncate(img, 48<<20) != nil {
			t.Fatal(err)
		}
		a := append([]string{"luks", "format", "-q", "--integrity", "hmac-sha256", "--offline", "--pbkdf", "pbkdf2",
			"--pbkdf-force-iterations", "1000", "--key-file", key}, args...)
		run(t, bin, append(a, img)...)
		return img
	}
	withData := mk("data.img", "--data", patFile)
	sha512 := mk("sha512.img", "--integrity", "hmac-sha512", "--data", patFile)
	aead := mk("aead.img", "--integrity", "aead", "--data", patFile)
	zeros := mk("zeros.img", "--sector-size", "512")
	tampered := mk("tampered.img", "--data", patFile)
	flipCiphertext(t, tampered)
	dumpAgrees(t, is, withData)
	dumpAgrees(t, is, sha512)
	dumpAgrees(t, is, aead)

	disks := []lab.Disk{{Path: withData}, {Path: zeros}, {Path: tampered}, {Path: sha512}, {Path: aead}}
	files := map[string]string{"/bin/confidisk": bin, "/pattern": patFile}
	lab.RunScenario(t, lab.Scenario{
		Name: "offline-integrity-open", Disks: disks, Files: files,
		Script: luksPreamble + offlineReadsBack + `
check ours-open confidisk luks open --key-file /key /dev/vda v
reads_back data-reads-back /dev/mapper/v
rest=$(dd if=/dev/mapper/v bs=1M skip=$n 2>/dev/null | tr -d '\000' | wc -c)
[ "$rest" = 0 ] && result rest-zeros ok "" || result rest-zeros fail "$rest non-zero bytes after the data"
check whole-volume-reads dd if=/dev/mapper/v of=/dev/null bs=1M
check ours-close confidisk luks close v
check zeros-open confidisk luks open --key-file /key /dev/vdb z
nz=$(dd if=/dev/mapper/z bs=1M 2>/dev/null | tr -d '\000' | wc -c); rc=$?
[ "$nz" = 0 ] && result zeros-512 ok "" || result zeros-512 fail "$nz non-zero bytes"
check zeros-whole-volume dd if=/dev/mapper/z of=/dev/null bs=1M
check zeros-close confidisk luks close z
check tampered-open confidisk luks open --key-file /key /dev/vdc x
out=$(dd if=/dev/mapper/x of=/dev/null bs=1M 2>&1); rc=$?
case "$rc:$out" in
  0:*) result tamper-eio fail "the tampered volume read back without an error" ;;
  *"I/O error"*|*"Input/output error"*) result tamper-eio ok "$(echo "$out" | head -1)" ;;
  *) result tamper-eio fail "rc=$rc: $out" ;;
esac
check tampered-close confidisk luks close x
for d in d:sha512 e:aead; do
  check ${d#*:}-open confidisk luks open --key-file /key /dev/vd${d%:*} s
  reads_back ${d#*:}-reads-back /dev/mapper/s
  check ${d#*:}-whole-volume dd if=/dev/mapper/s of=/dev/null bs=1M
  check ${d#*:}-close confidisk luks close s
done
dmesg | grep -iE 'recalc|journal' | head -3
`,
		Expect: []string{"data-reads-back", "rest-zeros", "whole-volume-reads", "zeros-512", "zeros-whole-volume", "tamper-eio",
			"sha512-reads-back", "sha512-whole-volume", "aead-reads-back", "aead-whole-volume"},
	})
	lab.RunScenario(t, lab.Scenario{
		Name: "offline-integrity-cryptsetup", Disks: disks, Files: files,
		Tools: []string{"cryptsetup", "dmsetup", "blockdev"},
		Script: luksPreamble + offlineReadsBack + `
for d in a:sha256 d:sha512 e:aead; do
  check ${d#*:}-open cryptsetup open --key-file /key /dev/vd${d%:*} c
  reads_back ${d#*:}-reads-back /dev/mapper/c
  check ${d#*:}-whole-volume dd if=/dev/mapper/c of=/dev/null bs=1M
  check ${d#*:}-close cryptsetup close c
done
check tampered-open cryptsetup open --key-file /key /dev/vdc x
if dd if=/dev/mapper/x of=/dev/null bs=1M 2>/dev/null; then result tamper-eio fail "cryptsetup read the tampered volume"; else result tamper-eio ok ""; fi
check tampered-close cryptsetup close x
`,
		Expect: []string{"sha256-reads-back", "sha256-whole-volume", "sha512-reads-back", "sha512-whole-volume",
			"aead-reads-back", "aead-whole-volume", "tamper-eio"},
	})
}

// offlineReadsBack is shell for the offline-integrity scenarios: $want and
// $n (the pattern's digest and size in MiB), and reads_back NAME DEVICE,
// which reports whether DEVICE starts with the pattern.
const offlineReadsBack = `
want=$(sha256sum /pattern | cut -d' ' -f1)
n=$(( $(stat -c %s /pattern) / 1048576 ))
reads_back() {
  got=$(dd if=$2 bs=1M count=$n 2>/dev/null | sha256sum | cut -d' ' -f1)
  [ "$got" = "$want" ] && result $1 ok "$got" || result $1 fail "want $want got $got"
}
`

// flipCiphertext flips one byte of the first data sector of the volume img.
func flipCiphertext(t *testing.T, img string) {
	t.Helper()
	f, _, l := volumeLayout(t, img, os.O_RDWR)
	defer f.Close()
	ds, err := l.DataSector(8)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	pos := int64(ds)*integrity.SectorSize + 100
	f.ReadAt(b, pos)
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, pos); err != nil {
		t.Fatal(err)
	}
}

// dumpAgrees checks that integritysetup dump of the superblock that
// `confidisk luks format --offline` wrote says what the layout does.
func dumpAgrees(t *testing.T, integritysetup, img string) {
	t.Helper()
	f, _, l := volumeLayout(t, img, os.O_RDONLY)
	defer f.Close()
	off := int64(l.Offset) * integrity.SectorSize
	area := make([]byte, 1<<20)
	if _, err := f.ReadAt(area, off); err != nil {
		t.Fatal(err)
	}
	sbFile := filepath.Join(t.TempDir(), "sb")
	if err := os.WriteFile(sbFile, area, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(integritysetup, "dump", sbFile).CombinedOutput()
	if err != nil {
		t.Fatalf("integritysetup dump: %v: %s", err, out)
	}
	sb, err := integrity.ReadSuperblock(f, off)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("integrity_tag_size %d", sb.IntegrityTagSize),
		fmt.Sprintf("provided_data_sectors %d", sb.ProvidedDataSectors),
		fmt.Sprintf("journal_sections %d", sb.JournalSections),
		"sector_size 4096", "flags fix_padding",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("integritysetup dump lacks %q:\n%s", want, out)
		}
	}
}

// volumeLayout opens the LUKS2 volume img with integrity and returns it
// with its header and the dm-integrity layout its superblock gives.
func volumeLayout(t *testing.T, img string, flag int) (*os.File, *luks2.Header, *integrity.Layout) {
	t.Helper()
	f, err := os.OpenFile(img, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := luks2.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(h.Metadata.Segments[0].Offset)
	sb, err := integrity.ReadSuperblock(f, off)
	if err != nil {
		t.Fatal(err)
	}
	l, err := sb.Layout(uint64(st.Size())/integrity.SectorSize, uint64(off)/integrity.SectorSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f, h, l
}
