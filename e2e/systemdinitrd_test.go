package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/confidisk/confidisk/initrd"
	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/lab/disk"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/provision"
)

// dracutModule is the project's dracut module, relative to this package.
const dracutModule = "../dist/dracut/90confidisk"

// systemdRootInit is the root's /sbin/init in the systemd initrd scenarios:
// systemd switched root to it (so /proc, /sys, /dev and /run are already
// there), it reports what the root is and powers off.
const systemdRootInit = `#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc 2>/dev/null
. /lab/preamble.sh
check switched-root sh -c "test $$ = 1 && grep '^overlay / overlay ' /proc/mounts"
check root-content sh -c 'test "$(cat /etc/hello)" = "hello from the verity root"'
result previous ok "$(cat /etc/written 2>/dev/null || echo none)"
check state-writable sh -c 'echo written > /etc/written && sync && grep -q written /etc/written'
check pcr15 sh -c 'confidisk tpm pcrs --pcrs 15 --json | tr -d " \n"'
sync
echo "LAB-DONE 0"
poweroff -f
`

// labInitUnit says LAB-INIT as soon as systemd runs units, and, when it is
// stopped (the switch to the root, or the power-off after a refusal),
// prints confidisk-boot.service's journal (LABJ lines) and the
// device-mapper devices (LABDM lines) on the console: what the guest's
// journal says, and what stayed mapped.
const labInitUnit = `[Unit]
Description=lab: LAB-INIT, then confidisk's journal and the device-mapper devices when stopped
DefaultDependencies=no
After=systemd-journald.service
Before=confidisk-boot.service
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
StandardOutput=journal+console
ExecStart=/bin/sh -c 'echo "LAB-INIT $(cut -d" " -f1 /proc/uptime)"'
ExecStop=/bin/sh -c 'journalctl -b -o cat -u confidisk-boot.service | sed "s/^/LABJ /"; dmsetup ls 2>&1 | sed "s/^/LABDM /"'
`

// provisioned is the journal line (via labInitUnit) of a boot that
// provisions the state volume.
const provisioned = `LABJ .*is blank: first boot, provisioning`

// systemdLab is one dracut build of a systemd initrd with the confidisk
// module, and the disk it boots.
type systemdLab struct {
	initrd string // dracut's initrd
	disk   *disk.Disk
	opPub  string // the operator's recovery public key, for the initrd
	dir    string
}

// newSystemdLab builds the disk (a busybox root whose /sbin/init is
// systemdRootInit) and the initrd: Debian's dracut with "systemd
// systemd-initrd base dm confidisk", nothing else of the lab's.
func newSystemdLab(t *testing.T) *systemdLab {
	t.Helper()
	bin := lab.ConfidiskBinary(t)
	testutil.LookPath(t, "mkfs.ext4", "e2fsprogs")
	testutil.LookPath(t, "dracut", "dracut-core")
	l := &systemdLab{dir: t.TempDir()}
	tree := filepath.Join(l.dir, "rootfs")
	if err := lab.RootFS(tree, bin, systemdRootInit, map[string]string{"etc/hello": "hello from the verity root\n"}); err != nil {
		t.Fatal(err)
	}
	var err error
	if l.disk, err = disk.BuildTree(l.dir, bin, tree, 64<<20, 160<<20); err != nil {
		t.Fatal(err)
	}
	if _, l.opPub, err = disk.OperatorKeys(l.dir); err != nil {
		t.Fatal(err)
	}
	l.initrd = lab.TestDracut(t, lab.Dracut{ModuleDir: dracutModule, Confidisk: bin})
	return l
}

// initrdFor is the dracut initrd with the lab's unit and the operator key
// appended, and with extra (guest path → content) on top.
func (l *systemdLab) initrdFor(t *testing.T, extra map[string]string) string {
	t.Helper()
	a := initrd.NewArchive()
	a.File("/etc/systemd/system/lab-init.service", 0o644, []byte(labInitUnit))
	a.Symlink("/etc/systemd/system/sysinit.target.wants/lab-init.service", "/etc/systemd/system/lab-init.service")
	pub, err := os.ReadFile(l.opPub)
	if err != nil {
		t.Fatal(err)
	}
	a.File(provision.DefaultRecoveryKey, 0o644, pub)
	for p, c := range extra {
		a.File(p, 0o644, []byte(c))
	}
	f, err := os.CreateTemp(l.dir, "initrd-lab-*.img")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := lab.AppendArchive(l.initrd, f.Name(), a); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// machine is a new machine booting a copy of the disk as it is now.
func (l *systemdLab) machine(t *testing.T) *lab.Machine {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	b, err := os.ReadFile(l.disk.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, b, 0o600); err != nil {
		t.Fatal(err)
	}
	m := lab.TestMachine(t, lab.Disk{Path: img})
	// LAB-INIT comes from the initrd's units, after systemd's start-up.
	m.InitDeadline = 2 * lab.DefaultInitDeadline
	return m
}

// cmdline is what the systemd initrd boots with: the verity root and no
// shell on the host's console, whatever fails.
func (l *systemdLab) cmdline() []string {
	return []string{"roothash=" + l.disk.RootHash, "rd.shell=0", "rd.emergency=poweroff", "systemd.show_status=1", "init=/sbin/init"}
}

// TestLabSystemdInitrd boots the disk through a systemd initrd that dracut
// built with the confidisk module: first boot (self-encryption, root
// mounted at /sysroot, systemd switches root), second boot, refused boots
// (the host strips the volume's integrity, names it in rd.luks.uuid=,
// withholds the vTPM), and a power cut during the
// first boot of another machine that the next boot recovers from.
func TestLabSystemdInitrd(t *testing.T) {
	l := newSystemdLab(t)
	checkDracutModule(t, l.initrd)
	pristine := l.machine(t)
	m := l.machine(t)
	plain := l.initrdFor(t, nil)
	res := lab.RunScenario(t, lab.Scenario{Name: "systemd-initrd-first-boot", Machine: m, Initrd: plain, Append: l.cmdline(),
		Expect: []string{"switched-root", "root-content", "previous", "state-writable", "pcr15"}})
	console := readFile(t, res.ConsoleLog)
	wantResult(t, res, "previous", "none")
	for _, want := range []string{provisioned, `LABJ confidisk boot: reached mounted after`, `Starting .*initrd-switch-root.service`} {
		if !regexp.MustCompile(want).Match(console) {
			t.Errorf("first boot: the console has no %q", want)
		}
	}
	if bytes.Contains(console, []byte("LABDM No devices found")) {
		t.Error("first boot: nothing was mapped when the initrd ended")
	}

	pcr15 := strings.TrimSpace(resultDetails(res)["pcr15"])
	res = lab.RunScenario(t, lab.Scenario{Name: "systemd-initrd-second-boot", Machine: m, Initrd: plain, Append: l.cmdline(),
		Expect: []string{"switched-root", "root-content", "previous", "state-writable", "pcr15"}})
	wantResult(t, res, "previous", "written")
	// PCR 15 holds the volume key's measurement once (confidisk's; no
	// crypttab entry makes systemd-cryptsetup measure it again).
	if got := strings.TrimSpace(resultDetails(res)["pcr15"]); got != pcr15 || strings.Contains(got, strings.Repeat("00", 32)) {
		t.Errorf("pcr 15 is %s on the second boot, %s on the first: want the same, not zero", got, pcr15)
	}
	if regexp.MustCompile(provisioned).Match(readFile(t, res.ConsoleLog)) {
		t.Error("second boot: provisioned the volume again")
	}

	checkSystemdRefusals(t, l, m, plain)
	checkSystemdPowerCut(t, l, pristine)
}

// resultDetails maps each result's name to its detail.
func resultDetails(res *lab.BootResult) map[string]string {
	m := map[string]string{}
	for _, r := range res.Results {
		m[r.Name] = r.Detail
	}
	return m
}

// wantResult fails unless the result name's detail is want.
func wantResult(t *testing.T, res *lab.BootResult, name, want string) {
	t.Helper()
	if got := strings.TrimSpace(resultDetails(res)[name]); got != want {
		t.Errorf("result %s is %q, want %q", name, got, want)
	}
}

// checkDracutModule: the initrd dracut made holds the binary, the unit
// required by initrd-root-fs.target, and the masked generators that would
// otherwise map roothash= or mount /dev/mapper/root themselves.
func checkDracutModule(t *testing.T, img string) {
	t.Helper()
	testutil.LookPath(t, "lsinitrd", "dracut-core")
	start := time.Now()
	out, err := exec.Command("lsinitrd", img).Output()
	if err != nil {
		t.Fatalf("lsinitrd: %v", err)
	}
	list := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 9 {
			list[f[8]] = true
		}
	}
	var missing []string
	for _, p := range []string{"usr/bin/confidisk", "usr/sbin/mkfs.ext4",
		"usr/lib/systemd/system/confidisk-boot.service",
		"usr/lib/systemd/system/initrd-root-fs.target.requires/confidisk-boot.service",
		"etc/systemd/system-generators/systemd-fstab-generator",
		"etc/systemd/system-generators/systemd-gpt-auto-generator",
		"etc/systemd/system-generators/systemd-veritysetup-generator"} {
		if !list[p] {
			missing = append(missing, p)
		}
	}
	status := "PASS"
	if len(missing) > 0 {
		status = "FAIL"
		t.Errorf("dracut's initrd lacks %v", missing)
	}
	fmt.Printf("LAB dracut-module %s %.1fs\n", status, time.Since(start).Seconds())
}

// checkSystemdRefusals: the host strips the state volume's integrity (a
// valid header, keyslots untouched), then names the volume in an
// rd.luks.uuid= of its own on the command line, for systemd-cryptsetup to
// open it. Each time confidisk-boot.service refuses, its journal says why,
// nothing stays mapped, systemd powers off without switching root, and
// nothing was written to the disk. Last, the host boots the machine without
// its vTPM: the unit waits confidisk.device-timeout= for the TPM device and
// refuses the same way.
func checkSystemdRefusals(t *testing.T, l *systemdLab, m *lab.Machine, img string) {
	t.Helper()
	d := &bootDisk{Disk: &disk.Disk{Path: m.Disks[0].Path, RootHash: l.disk.RootHash, State: l.disk.State}}
	pristine := readFile(t, d.Path)
	h, _, err := luks2.Read(d.StateDevice())
	if err != nil {
		t.Fatal(err)
	}
	attack := func(name string, edit func(), args []string, says string, noTPM bool) {
		t.Helper()
		if edit != nil {
			edit()
		}
		before := readFile(t, d.Path)
		res := lab.RunScenario(t, lab.Scenario{Name: name, Machine: m, Initrd: img, Append: args, Stops: says, NoTPM: noTPM})
		if res != nil {
			console := readFile(t, res.ConsoleLog)
			for _, want := range []string{`LABJ .*` + regexp.QuoteMeta(says), `LABDM No devices found`} {
				if !regexp.MustCompile(want).Match(console) {
					t.Errorf("%s: the console has no %q", name, want)
				}
			}
			if bytes.Contains(console, []byte("initrd-switch-root.service")) {
				t.Errorf("%s: systemd switched root", name)
			}
		}
		if !bytes.Equal(before, readFile(t, d.Path)) {
			t.Errorf("%s: the refused boot wrote to the disk", name)
		}
		if err := os.WriteFile(d.Path, pristine, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	attack("systemd-initrd-refusal", func() {
		editHeader(t, d, func(h *luks2.Header) { h.Metadata.Segments[0].Integrity = nil })
	}, l.cmdline(), "below the security floor: segment 0 has no integrity protection", false)
	attack("systemd-initrd-crypttab-conflict", nil, append(l.cmdline(), "rd.luks.uuid=luks-"+h.UUID),
		"is also named by the command line's rd.luks.uuid=luks-"+h.UUID+": systemd-cryptsetup would open it without confidisk's checks", false)
	// The host withholds the vTPM: confidisk waits confidisk.device-timeout=
	// for /dev/tpmrm0, then refuses; nothing is unlocked without it.
	attack("systemd-initrd-no-tpm", nil, append(l.cmdline(), "confidisk.device-timeout=2"),
		"waited 2s for the TPM /dev/tpmrm0", true)
}

// checkSystemdPowerCut: on a new machine, the power is cut during the first
// boot under the systemd initrd once the key is sealed (before its
// fixation); the next boot finishes provisioning and switches root.
func checkSystemdPowerCut(t *testing.T, l *systemdLab, m *lab.Machine) {
	t.Helper()
	stop := l.initrdFor(t, map[string]string{"/etc/systemd/system/confidisk-boot.service.d/lab-stop.conf": "[Service]\nExecStart=\nExecStart=/usr/bin/confidisk boot --no-switch-root --stop-at " + string(provision.StepSealed) + "\n"})
	lab.RunScenario(t, lab.Scenario{Name: "systemd-initrd-power-cut", Machine: m, Initrd: stop, Append: l.cmdline(), CutAt: string(provision.StepSealed)})
	res := lab.RunScenario(t, lab.Scenario{Name: "systemd-initrd-power-cut-next-boot", Machine: m, Initrd: l.initrdFor(t, nil), Append: l.cmdline(),
		Expect: []string{"switched-root", "root-content", "previous", "state-writable", "pcr15"}})
	wantResult(t, res, "previous", "none")
	if !bytes.Contains(readFile(t, res.ConsoleLog), []byte("after the key was sealed: finishing it")) {
		t.Error("the boot after the power cut did not finish the interrupted provisioning")
	}
}
