package e2e

import (
	"bytes"
	"crypto/rand"
	"os"
	"testing"

	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/lab/disk"
)

// TestLabUsrhash is usrhash= on one machine: the first boot makes the root
// file system inside the self-encrypted state volume and mounts the verity
// /usr on it through an overlay; what the guest writes to /etc and /usr
// survives the reboot; then the host flips a byte of a /usr file: reading it
// fails (verity), and so does changing it (the overlay's copy-up reads it),
// so no tampered byte reaches the encrypted root.
func TestLabUsrhash(t *testing.T) {
	bin := lab.ConfidiskBinary(t)
	testutil.LookPath(t, "mkfs.ext4", "e2fsprogs")
	big := make([]byte, 1<<20)
	rand.Read(big)
	dir := t.TempDir()
	d, err := disk.BuildUsr(dir, bin, map[string]string{
		"share/hello": "hello from the verity usr\n", "share/big": string(big), "lib/os-release": "ID=confidisk-lab\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	_, opPub, err := disk.OperatorKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	bd := &bootDisk{Disk: d, confidisk: bin, opPub: opPub}
	m := lab.TestMachine(t, lab.Disk{Path: d.Path})
	files, tools, args := bd.files(), []string{"mkfs.ext4"}, d.UsrCmdline()
	lab.RunScenario(t, lab.Scenario{
		Name: "usrhash-first-boot", Machine: m, Files: files, Tools: tools, Append: args,
		Script: bootScript(`
check root-on-state sh -c 'grep -q "^/dev/mapper/state /sysroot " /proc/mounts'
check usr-overlay sh -c 'grep -q "^overlay /sysroot/usr overlay" /proc/mounts && test "$(cat /sysroot/usr/share/hello)" = "hello from the verity usr"'
check skeleton sh -c 'test -d /sysroot/etc && test -d /sysroot/var/tmp && test "$(readlink /sysroot/lib)" = usr/lib && test "$(cat /sysroot/lib/os-release)" = ID=confidisk-lab'
check write sh -c 'echo etc > /sysroot/etc/written && echo usr > /sysroot/usr/share/added && echo changed > /sysroot/usr/share/hello && sync'
check umount sh -c 'umount /sysroot/usr && umount /sysroot'
`),
		Expect: []string{"boot", "root-on-state", "usr-overlay", "skeleton", "write", "umount"},
	})
	lab.RunScenario(t, lab.Scenario{
		Name: "usrhash-second-boot", Machine: m, Files: files, Tools: tools, Append: args,
		Script: bootScript(`
check survived sh -c 'test "$(cat /sysroot/etc/written)" = etc && test "$(cat /sysroot/usr/share/added)" = usr && test "$(cat /sysroot/usr/share/hello)" = changed'
check lower-unchanged sh -c 'test "$(cat /run/confidisk/verity-root/share/hello)" = "hello from the verity usr"'
check umount sh -c 'umount /sysroot/usr && umount /sysroot'
`),
		Expect: []string{"boot", "survived", "lower-unchanged", "umount"},
	})
	flipInPartition(t, d.Path, gpt.TypeUsrX86_64, big[512<<10:512<<10+4096], 100)
	lab.RunScenario(t, lab.Scenario{
		Name: "usrhash-tamper", Machine: m, Files: files, Tools: tools, Append: args,
		Script: bootScript(`
if out=$(cat /sysroot/usr/share/big 2>&1 >/dev/null); then result read-refused fail "read without an error"; else result read-refused ok "$out"; fi
if echo x >> /sysroot/usr/share/big 2>/tmp/err; then result change-refused fail "appended"; else result change-refused ok "$(cat /tmp/err)"; fi
check no-copy-up sh -c '! test -e /run/confidisk/state/overlay/usr/upper/share/big'
check kernel-says sh -c 'dmesg | grep -E "verity.*corrupted" | tail -1'
check umount sh -c 'umount /sysroot/usr && umount /sysroot'
`),
		Expect: []string{"boot", "read-refused", "change-refused", "no-copy-up", "kernel-says"},
	})
}

// flipInPartition flips one bit of byte off of the first occurrence of
// needle in the partition of type typ of the disk image at path.
func flipInPartition(t *testing.T, path string, typ gpt.GUID, needle []byte, off int) {
	t.Helper()
	p := partitionOf(t, path, typ)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, p.Size)
	if _, err := f.ReadAt(b, p.Start); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, needle)
	if i < 0 {
		t.Fatal("the data is not in the partition")
	}
	if _, err := f.WriteAt([]byte{b[i+off] ^ 0x40}, p.Start+int64(i+off)); err != nil {
		t.Fatal(err)
	}
}

// partitionOf returns the partition of type typ of the disk image at path.
func partitionOf(t *testing.T, path string, typ gpt.GUID) gpt.Partition {
	t.Helper()
	tbl, err := disk.ReadTable(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tbl.Partitions {
		if p.Type == typ {
			return p
		}
	}
	t.Fatalf("no partition of type %s", typ)
	return gpt.Partition{}
}
