package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/lab/disk"
	"github.com/confidisk/confidisk/provision"
)

// cloneDisk is a boot disk whose verity root holds data.bin (random bytes
// the host keeps) besides /etc/hello, for dm-clone mode.
type cloneDisk struct {
	*bootDisk
	data []byte
	// pattern is written over part of data.bin by the guest; expected is
	// data.bin's SHA-256 after that.
	pattern []byte
}

const (
	cloneDataSize = 4 << 20
	// The guest overwrites data.bin from 4 KiB block cloneSeek on with the
	// pattern: 256 KiB, not region-aligned for 64 KiB regions at 1 block in.
	cloneSeek       = 97
	clonePatternLen = 256 << 10
)

func buildCloneDisk(t *testing.T) *cloneDisk {
	t.Helper()
	bin := lab.ConfidiskBinary(t)
	testutil.LookPath(t, "mkfs.ext4", "e2fsprogs")
	cd := &cloneDisk{data: make([]byte, cloneDataSize), pattern: make([]byte, clonePatternLen)}
	rand.Read(cd.data)
	rand.Read(cd.pattern)
	dir := t.TempDir()
	blob := make([]byte, 2<<20) // files the guest never writes
	rand.Read(blob)
	d, err := disk.Build(dir, bin, map[string]string{"etc/hello": "hello from the verity root\n", "data.bin": string(cd.data),
		"usr/lib/blob": string(blob), "etc/os-release": "ID=confidisk-lab\n"})
	if err != nil {
		t.Fatal(err)
	}
	opKey, opPub, err := disk.OperatorKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	cd.bootDisk = &bootDisk{Disk: d, confidisk: bin, appendArgs: append(d.Cmdline(), "confidisk.rw=clone"), opKey: opKey, opPub: opPub}
	return cd
}

// expected is data.bin once the guest wrote the pattern.
func (cd *cloneDisk) expected() string {
	b := bytes.Clone(cd.data)
	copy(b[cloneSeek*4096:], cd.pattern)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (cd *cloneDisk) files(t *testing.T) map[string]string {
	p := filepath.Join(t.TempDir(), "pattern")
	if err := os.WriteFile(p, cd.pattern, 0o600); err != nil {
		t.Fatal(err)
	}
	f := cd.bootDisk.files()
	f["/pattern"] = p
	return f
}

// rootPartition returns the byte range of the disk's root data partition.
func (cd *cloneDisk) rootPartition(t *testing.T) (off, size int64) {
	p := partitionOf(t, cd.Path, gpt.TypeRootX86_64)
	return p.Start, p.Size
}

// cloneScript boots (the power cuts of these scenarios come from the
// script's point lines, after the boot) and runs the checks.
func cloneScript(checks string) string {
	return "mkdir -p /run/log/systemd /etc\n" + bootRun + checks
}

// cloneHelpers are shell functions for the clone scenarios: hyd prints the
// hydrated and total regions (reading the status commits dm-clone's
// metadata), wait_pct waits until at least $1 percent are hydrated.
const cloneHelpers = `
hyd() { confidisk clone status --json | sed -n 's/.*"\(hydrated_regions\|regions\)": \([0-9]*\).*/\2/p' | tr '\n' ' '; }
wait_pct() {
	for _i in $(seq 1 600); do
		set -- "$1" $(hyd)
		[ -n "$3" ] && [ $(( $2 * 100 )) -ge $(( $1 * $3 )) ] && { echo "$2 $3"; return 0; }
		sleep 0.1
	done
	return 1
}
compare_source() { # every file of the verity source reads the same through the clone, except data.bin
	# The clone holds the source open exclusively: mount a copy of it.
	dd if=/dev/mapper/root of=/tmp/src.img bs=1M 2>/dev/null || return 1
	mkdir -p /mnt/src && mount -o ro,loop,noload /tmp/src.img /mnt/src || return 1
	_n=0
	for _f in $(cd /mnt/src && find . -type f ! -name data.bin ! -path ./etc/hello ! -path './lost+found/*'); do
		cmp "/mnt/src/$_f" "/sysroot/$_f" || { umount /mnt/src; return 1; }
		_n=$((_n+1))
	done
	umount /mnt/src; rm /tmp/src.img
	echo "$_n files equal"
	[ "$_n" -ge 2 ]
}
`

// TestLabClone is dm-clone mode on one machine, power cuts included: the
// first boot maps the root from the clone at once and the guest changes it
// with hydration paused, then hydrates and the power is cut at about 30 %;
// the next boot resumes from at least where the cut left it, the guest
// writes again and the power is cut at about 90 %; the next one finishes
// hydration and every file reads as the verity source or as the guest wrote
// it. Then the host destroys the verity source: the boot that finds
// hydration complete records it and maps the copy alone, and after the host
// removes the root partitions from the disk, the next boot still boots.
func TestLabClone(t *testing.T) {
	cd := buildCloneDisk(t)
	m := lab.TestMachine(t, lab.Disk{Path: cd.Path})
	files := cd.files(t)
	tools := []string{"mkfs.ext4"}
	// 4 KiB regions, one at a time, throttled: slow enough to cut the power at 30 %.
	slow := append(append([]string{}, cd.appendArgs...), "confidisk.clone-region-size=4K", "confidisk.clone-hydration-batch-size=1")
	throttle := "echo 40 > /sys/module/dm_clone/parameters/clone_hydration_throttle\n"
	res := lab.RunScenario(t, lab.Scenario{
		Name: "clone-first-boot", Machine: m, Files: files, Tools: tools, DMClone: true,
		Append: append(slow, "confidisk.clone-hydration=0"), CutAt: "hydration-30",
		Script: cloneScript(cloneHelpers + throttle + `
check mounted-from-clone sh -c 'grep -q "^/dev/mapper/` + provision.CloneName + ` /sysroot " /proc/mounts && test "$(cat /sysroot/etc/hello)" = "hello from the verity root"'
check table-is-clone sh -c 'confidisk clone status | grep -q paused'
check write-a sh -c 'echo first > /sysroot/etc/hello && dd if=/pattern of=/sysroot/data.bin bs=4096 seek=` + strconv.Itoa(cloneSeek) + ` conv=notrunc,fsync 2>/dev/null && sync'
check start confidisk clone start
if at=$(wait_pct 30); then result at-30 ok "$at"; else result at-30 fail "$(hyd)"; fi
point hydration-30
`),
		Expect: []string{"boot", "mounted-from-clone", "table-is-clone", "write-a", "start", "at-30"},
	})
	at30 := regionsAt(t, res, "at-30")
	checkCloneSourceMismatch(t, cd, m, files, tools)
	res = lab.RunScenario(t, lab.Scenario{
		Name: "clone-power-cut-30", Machine: m, Files: files, Tools: tools, DMClone: true,
		Append: append(slow, "confidisk.clone-hydration=0"), CutAt: "hydration-90",
		Script: cloneScript(cloneHelpers + throttle + `
check data-a sh -c 'test "$(cat /sysroot/etc/hello)" = first && test "$(sha256sum /sysroot/data.bin | cut -d" " -f1)" = ` + cd.expected() + `'
check write-b sh -c 'echo second > /sysroot/etc/second && sync'
check start confidisk clone start
if at=$(wait_pct 90); then result at-90 ok "$at"; else result at-90 fail "$(hyd)"; fi
point hydration-90
`),
		Expect: []string{"boot", "data-a", "write-b", "start", "at-90"},
	})
	checkResumed(t, res, at30)
	at90 := regionsAt(t, res, "at-90")
	res = lab.RunScenario(t, lab.Scenario{
		Name: "clone-power-cut-90", Machine: m, Files: files, Tools: tools, DMClone: true, Append: cd.appendArgs,
		Script: cloneScript(cloneHelpers + `
check hydrated sh -c 'confidisk clone wait --interval 0.2s --timeout 120s 2>/dev/null'
check data-ab sh -c 'test "$(cat /sysroot/etc/hello)" = first && test "$(cat /sysroot/etc/second)" = second && test "$(sha256sum /sysroot/data.bin | cut -d" " -f1)" = ` + cd.expected() + `'
check source-elsewhere compare_source
check umount umount /sysroot
`),
		Expect: []string{"boot", "hydrated", "data-ab", "source-elsewhere"},
	})
	checkResumed(t, res, at90)

	// The host overwrites the verity source with random bytes: a boot that
	// read any of it would fail verity.
	off, size := cd.rootPartition(t)
	junk := make([]byte, size)
	rand.Read(junk)
	writeAt(t, cd.Path, junk, off)
	noSource := `
check no-verity-no-clone sh -c 'names=$(cat /sys/block/dm-*/dm/name | tr "\n" " "); echo "$names"; ! echo " $names" | grep -qE " (root|rwroot-meta|rwroot-dest) "'
check linear sh -c 'confidisk clone status | grep -q "mapped alone"'
check data-after sh -c 'test "$(cat /sysroot/etc/second)" = second && test "$(sha256sum /sysroot/data.bin | cut -d" " -f1)" = ` + cd.expected() + `'
check writable sh -c 'echo third > /sysroot/etc/third && sync'
check umount umount /sysroot
`
	// A power cut between the end of the clone and its record: the next
	// boot finds hydration complete again and records it.
	lab.RunScenario(t, lab.Scenario{
		Name: "clone-finish-cut", Machine: m, Files: files, Tools: tools, DMClone: true, Append: cd.appendArgs,
		CutAt: "clone-removed", Script: bootScript(""),
	})
	res = lab.RunScenario(t, lab.Scenario{
		Name: "clone-hydrated-swap", Machine: m, Files: files, Tools: tools, DMClone: true, Append: cd.appendArgs,
		Script: cloneScript(noSource), Expect: []string{"boot", "no-verity-no-clone", "linear", "data-after", "writable"},
	})
	if c, _ := field(t, res, "boot")["Clone"].(map[string]any); c["Finished"] != true {
		t.Errorf("the boot after hydration did not record it: %v", c)
	}
	dropRootPartitions(t, cd.Path)
	lab.RunScenario(t, lab.Scenario{
		Name: "clone-verity-dropped", Machine: m, Files: files, Tools: tools, DMClone: true, Append: cd.appendArgs,
		Script: cloneScript(noSource), Expect: []string{"boot", "no-verity-no-clone", "linear", "data-after", "writable"},
	})
}

// regionsAt returns the hydrated regions a result "H T" reported.
func regionsAt(t *testing.T, res *lab.BootResult, name string) uint64 {
	t.Helper()
	for _, r := range res.Results {
		if r.Name == name {
			n, err := strconv.ParseUint(strings.Fields(r.Detail)[0], 10, 64)
			if err != nil {
				t.Fatalf("%s: %q", name, r.Detail)
			}
			return n
		}
	}
	t.Fatalf("no result %s", name)
	return 0
}

// checkResumed requires the boot to have found at least at regions
// hydrated: the progress committed before the cut survived it.
func checkResumed(t *testing.T, res *lab.BootResult, at uint64) {
	t.Helper()
	c, _ := field(t, res, "boot")["Clone"].(map[string]any)
	got, _ := c["Hydrated"].(float64)
	if uint64(got) < at || at == 0 {
		t.Errorf("after the cut the boot found %v regions hydrated, at least %d were committed before it", c, at)
	}
	t.Logf("resumed at %v regions (%d committed before the cut)", c["Hydrated"], at)
}

func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// checkCloneSourceMismatch: mid-hydration, the host puts another image's
// verity root (the same sizes, a valid tree of its own) in place of the
// source, with the partition UUIDs its root hash gives, and boots the guest
// with that roothash=. The boot refuses as soon as the volume's record is
// authenticated, naming both hashes: nothing mapped, nothing written (not
// even the freshness epoch). The host's disk is then put back.
func checkCloneSourceMismatch(t *testing.T, cd *cloneDisk, m *lab.Machine, files map[string]string, tools []string) {
	t.Helper()
	pristine := readFile(t, cd.Path)
	other, err := disk.Build(t.TempDir(), cd.confidisk, map[string]string{"etc/hello": "another image\n"})
	if err != nil {
		t.Fatal(err)
	}
	otherImg := readFile(t, other.Path)
	for _, typ := range []gpt.GUID{gpt.TypeRootX86_64, gpt.TypeRootVerityX86_64} {
		src, dst := partitionOf(t, other.Path, typ), partitionOf(t, cd.Path, typ)
		if src.Size != dst.Size {
			t.Fatalf("the other image's partition %s is %d bytes, the disk's %d", typ, src.Size, dst.Size)
		}
		writeAt(t, cd.Path, otherImg[src.Start:src.Start+src.Size], dst.Start)
	}
	otherHex := other.RootHash
	oh, _ := hex.DecodeString(otherHex)
	dataUUID, hashUUID := gpt.VerityUUIDs(oh)
	err = disk.EditTable(cd.Path, func(tbl *gpt.Table) error {
		for i, p := range tbl.Partitions {
			switch p.Type {
			case gpt.TypeRootX86_64:
				tbl.Partitions[i].UUID = dataUUID
			case gpt.TypeRootVerityX86_64:
				tbl.Partitions[i].UUID = hashUUID
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	edited := readFile(t, cd.Path)
	var args []string
	for _, a := range cd.appendArgs {
		if strings.HasPrefix(a, "roothash=") {
			a = "roothash=" + otherHex
		}
		args = append(args, a)
	}
	lab.RunScenario(t, lab.Scenario{
		Name: "clone-source-mismatch", Machine: m, Files: files, Tools: tools, DMClone: true, Append: args,
		Script: refusedBootScript("", "hydration went on from another source", `
check names-both grep -q 'hydration started from root hash `+cd.RootHash+`, this boot.s roothash= is `+otherHex+`' /tmp/boot.log
check nothing-mapped sh -c '! ls /sys/block/ | grep -q "^dm-"'
`),
		Expect: []string{"refused", "names-both", "nothing-mapped"},
	})
	if !bytes.Equal(edited, readFile(t, cd.Path)) {
		t.Error("clone-source-mismatch: the refused boot wrote to the disk")
	}
	if err := os.WriteFile(cd.Path, pristine, 0o600); err != nil {
		t.Fatal(err)
	}
}

// dropRootPartitions removes the root and root verity partitions from the
// disk's GPT, as an image that dropped its verity source after hydration.
func dropRootPartitions(t *testing.T, path string) {
	t.Helper()
	err := disk.EditTable(path, func(tbl *gpt.Table) error {
		tbl.Partitions = slices.DeleteFunc(tbl.Partitions, func(p gpt.Partition) bool {
			return p.Type == gpt.TypeRootX86_64 || p.Type == gpt.TypeRootVerityX86_64
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLabCloneSourceTamper: the host flips a byte of data.bin in the verity
// source before the first boot in clone mode. Reading it through the clone
// fails (verity), its region is never hydrated (hydration stops one region
// short and a direct read still fails, where a hydrated copy would return
// the tampered byte without error), and the kernel logs the failure.
func TestLabCloneSourceTamper(t *testing.T) {
	cd := buildCloneDisk(t)
	flipInPartition(t, cd.Path, gpt.TypeRootX86_64, cd.data[1<<20:1<<20+4096], 100)
	m := lab.TestMachine(t, lab.Disk{Path: cd.Path})
	lab.RunScenario(t, lab.Scenario{
		// One region per copy: a failed batch fails all its regions.
		Name: "clone-source-tamper", Machine: m, Files: cd.files(t), Tools: []string{"mkfs.ext4"}, DMClone: true,
		Append: append(append([]string{}, cd.appendArgs...), "confidisk.clone-hydration-batch-size=1"),
		Script: cloneScript(cloneHelpers + `
if out=$(dd if=/sysroot/data.bin of=/dev/null bs=1M 2>&1); then result read-refused fail "read without an error"; else result read-refused ok "$(echo "$out" | head -1)"; fi
# Let hydration go round: it stops one region short (it retries the bad one).
last=; for i in $(seq 1 100); do now=$(hyd); [ "$now" = "$last" ] && break; last=$now; sleep 1; done
set -- $now
if [ -n "$2" ] && [ "$1" -lt "$2" ] && [ "$1" -ge $(( $2 - 1 )) ]; then result never-hydrated ok "$now"; else result never-hydrated fail "$now"; fi
if dd if=/sysroot/data.bin of=/dev/null bs=4096 iflag=direct 2>/dev/null; then result still-refused fail "the region read back"; else result still-refused ok; fi
check kernel-says sh -c 'dmesg | grep -E "verity.*(corrupted|error)|hydration failed" | tail -2'
`),
		Expect: []string{"boot", "read-refused", "never-hydrated", "still-refused", "kernel-says"},
	})
}
