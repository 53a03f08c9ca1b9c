package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
)

// verityImage is an ext4 image protected by a hash tree made on the host.
type verityImage struct {
	data, hash string
	root       string
	bulkSHA    string // sha256 of /bulk
	// markerBlock is the data block holding the marker line of /etc/marker.
	markerBlock int64
	markerOff   int64
}

const marker = "confidisk-marker: this line must never change\n"

// buildVerityImage makes a 24 MiB ext4 image with a few files and formats
// its hash tree with the confidisk binary.
func buildVerityImage(t *testing.T, bin string) *verityImage {
	t.Helper()
	mkfs := testutil.LookPath(t, "mkfs.ext4", "e2fsprogs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "hello"), []byte("hello from the verity root\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "etc", "marker"), []byte(strings.Repeat(marker, 200)), 0o644)
	bulk := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for i := range bulk {
		bulk[i] ^= byte(i / 4096)
	}
	os.WriteFile(filepath.Join(tree, "bulk"), bulk, 0o644)
	sum := sha256.Sum256(bulk)
	img := &verityImage{data: filepath.Join(dir, "root.img"), hash: filepath.Join(dir, "root.verity"), bulkSHA: hex.EncodeToString(sum[:])}
	if out, err := exec.Command(mkfs, "-q", "-F", "-b", "4096", "-O", "^has_journal", "-d", tree, img.data, "24M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "verity", "format", img.data, img.hash).CombinedOutput()
	if err != nil {
		t.Fatalf("confidisk verity format: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]{64})$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no root hash in:\n%s", out)
	}
	img.root = string(m[1])
	raw, _ := os.ReadFile(img.data)
	i := bytes.Index(raw, []byte(marker))
	if i < 0 {
		t.Fatal("marker not found in the image")
	}
	img.markerOff = int64(i)
	img.markerBlock = int64(i) / 4096
	return img
}

// TestLabVerityRoot: an image made and formatted on the host is opened in the
// guest by `confidisk verity open`, mounted read-only, its files checked; a
// wrong root hash is refused with nothing left mapped; close removes it.
func TestLabVerityRoot(t *testing.T) {
	bin := lab.ConfidiskBinary(t)
	img := buildVerityImage(t, bin)
	bad := strings.Repeat("0", 64)
	lab.RunScenario(t, lab.Scenario{
		Name:  "verity-root",
		Disks: []lab.Disk{{Path: img.data}, {Path: img.hash}},
		Files: map[string]string{"/bin/confidisk": bin},
		Script: fmt.Sprintf(`
check wrong-root-refused sh -c '! /bin/confidisk verity open bad /dev/vda /dev/vdb %[1]s'
check nothing-mapped-after-failure sh -c 'test "$(ls /dev/mapper)" = control && ! ls /sys/block | grep -q dm-'
check open confidisk verity open root /dev/vda /dev/vdb %[2]s
mkdir -p /mnt
check mount mount -t ext4 -o ro /dev/mapper/root /mnt
check hello sh -c 'test "$(cat /mnt/etc/hello)" = "hello from the verity root"'
check bulk-sha256 sh -c 'test "$(sha256sum /mnt/bulk | cut -d" " -f1)" = %[3]s'
check read-only sh -c '! touch /mnt/new-file 2>/dev/null'
check umount umount /mnt
check close confidisk verity close root
check closed sh -c '! test -e /dev/mapper/root && test "$(ls /dev/mapper)" = control'
`, bad, img.root, img.bulkSHA),
		Expect: []string{"wrong-root-refused", "nothing-mapped-after-failure", "open", "mount", "hello", "bulk-sha256", "read-only", "close", "closed"},
	})
}

// TestLabVerityTamper: one flipped byte in the data image on the host → in
// the guest, reading that file fails with EIO, the kernel logs the corrupted
// data block, and it is the block the host changed.
func TestLabVerityTamper(t *testing.T) {
	bin := lab.ConfidiskBinary(t)
	img := buildVerityImage(t, bin)
	f, err := os.OpenFile(img.data, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, img.markerOff+5)
	b[0] ^= 0x20
	f.WriteAt(b, img.markerOff+5)
	f.Close()
	lab.RunScenario(t, lab.Scenario{
		Name:  "verity-tamper",
		Disks: []lab.Disk{{Path: img.data}, {Path: img.hash}},
		Files: map[string]string{"/bin/confidisk": bin},
		Script: fmt.Sprintf(`
check open confidisk verity open root /dev/vda /dev/vdb %[1]s
mkdir -p /mnt
check mount mount -t ext4 -o ro /dev/mapper/root /mnt
check untouched-file-reads sh -c 'test "$(cat /mnt/etc/hello)" = "hello from the verity root"'
out=$(cat /mnt/etc/marker 2>&1 >/dev/null); rc=$?
case "$rc:$out" in
  0:*) result tampered-read-fails fail "read of the tampered file succeeded" ;;
  *"Input/output error"*|*"I/O error"*) result tampered-read-fails ok "$out" ;;
  *) result tampered-read-fails fail "rc=$rc: $out" ;;
esac
check kernel-names-block sh -c 'dmesg | grep -E "verity: .*data block %[2]d is corrupted"'
`, img.root, img.markerBlock),
		Expect: []string{"open", "mount", "untouched-file-reads", "tampered-read-fails", "kernel-names-block"},
	})
}

// TestLabVerityTable: for the same devices and options, the table confidisk
// loads equals the one veritysetup loads (dmsetup table, veritysetup and
// dmsetup copied into the initramfs as oracles).
func TestLabVerityTable(t *testing.T) {
	bin := lab.ConfidiskBinary(t)
	testutil.LookPath(t, "veritysetup", "cryptsetup-bin")
	testutil.LookPath(t, "dmsetup", "dmsetup")
	img := buildVerityImage(t, bin)
	// A second tree without superblock, after the data on the same device.
	dir := t.TempDir()
	same := filepath.Join(dir, "same.img")
	raw, _ := os.ReadFile(img.data)
	os.WriteFile(same, raw, 0o600)
	os.Truncate(same, int64(len(raw))+1<<20)
	out, err := exec.Command(bin, "verity", "format", "--no-superblock", "--salt", "-", "--data-blocks", fmt.Sprint(len(raw)/4096),
		"--hash-offset", fmt.Sprint(len(raw)), same, same).CombinedOutput()
	if err != nil {
		t.Fatalf("format: %v\n%s", err, out)
	}
	root2 := regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]{64})$`).FindSubmatch(out)[1]
	nsb := fmt.Sprintf("--no-superblock --salt - --data-blocks %d --hash-offset %d", len(raw)/4096, len(raw))
	lab.RunScenario(t, lab.Scenario{
		Name:  "verity-table",
		Disks: []lab.Disk{{Path: img.data}, {Path: img.hash}, {Path: same}},
		Files: map[string]string{"/bin/confidisk": bin},
		Tools: []string{"veritysetup", "dmsetup"},
		Script: fmt.Sprintf(`
# Each tool opens the device alone (both refuse a device that is already
# mapped), the table is kept, the device closed; then the tables are compared.
export DM_DISABLE_UDEV=1
table_of() { # tool name args...: open with one tool, print its table, close
	tool=$1 name=$2; shift 2
	if [ "$tool" = veritysetup ]; then
		veritysetup open "$@" >/dev/null 2>&1 || { echo "veritysetup open failed"; return 1; }
	else
		confidisk verity open "$@" >/dev/null 2>&1 || { echo "confidisk verity open failed"; return 1; }
	fi
	dmsetup table "$name"
	cmp -s "/dev/mapper/$name" "$REF" || echo "CONTENT DIFFERS"
	dmsetup remove "$name"
}
same_table() { # case theirs-args ours-args
	a=$(table_of veritysetup theirs $2); b=$(table_of confidisk ours $3)
	case "$a$b" in *DIFFERS*|*failed*) result "table-$1" fail "veritysetup: $a / confidisk: $b"; return ;; esac
	if [ -n "$a" ] && [ "$a" = "$b" ]; then result "table-$1" ok "$a"; else result "table-$1" fail "veritysetup: $a / confidisk: $b"; fi
}
REF=/dev/vda
same_table default "/dev/vda theirs /dev/vdb %[1]s" "ours /dev/vda /dev/vdb %[1]s"
same_table options "--ignore-zero-blocks --check-at-most-once --restart-on-corruption /dev/vda theirs /dev/vdb %[1]s" \
	"--ignore-zero-blocks --check-at-most-once --restart-on-corruption ours /dev/vda /dev/vdb %[1]s"
same_table nosb "%[3]s /dev/vdc theirs /dev/vdc %[2]s" "%[3]s ours /dev/vdc /dev/vdc %[2]s"
check ours-refuses-busy-device sh -c 'veritysetup open /dev/vda busy /dev/vdb %[1]s && ! /bin/confidisk verity open ours /dev/vda /dev/vdb %[1]s'
`, img.root, root2, nsb),
		Expect: []string{"table-default", "table-options", "table-nosb", "ours-refuses-busy-device"},
	})
}
