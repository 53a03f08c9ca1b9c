package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/image"
	"github.com/confidisk/confidisk/initrd"
	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/lab/disk"
	"github.com/confidisk/confidisk/lab/labbroker"
	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/secureboot"
	"github.com/confidisk/confidisk/uki"
)

// imageLab is what the image scenarios share: the operator's binary, Secure
// Boot keys and the firmware variable store they are enrolled in, a root
// file system, a broker, and the build inputs.
type imageLab struct {
	op, guest string
	sysext    string // the initrd system extension every image carries
	opPub     string // the operator's recovery public key (PEM)
	kernel    *lab.KernelInfo
	stubs     *lab.StubSet
	dir, keys string
	owner     string
	varsSB    string // OVMF variables with the keys enrolled, Secure Boot on
	rootfs    string
	broker    *labbroker.Broker
	cmdline   string
	files     []string // --file arguments of the initrd
}

// operatorBinary builds the full confidisk (image, initrd, serve commands).
func operatorBinary(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "confidisk")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/confidisk")
	cmd.Dir = ".."
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build confidisk: %v\n%s", err, msg)
	}
	return out
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// missingOrFatal reports a missing tool or package as [testutil.Missing].
func missingOrFatal(t *testing.T, err error) {
	t.Helper()
	var mt *lab.MissingToolError
	if errors.As(err, &mt) {
		testutil.Missing(t, mt.Tool, "apt-get install -y "+mt.Package)
	}
	t.Fatal(err)
}

// rootInit is the image's /sbin/init, which confidisk boot switches to: it
// reports what the booted system sees, then powers off.
const rootInit = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
echo "LAB-INIT $(cut -d' ' -f1 /proc/uptime)"
. /lab/preamble.sh
check cmdline cat /proc/cmdline
check secureboot sh -c 'set -- $(od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c); echo $5'
check pcrs sh -c 'confidisk tpm pcrs --pcrs 4,7,11,12,13 --json | tr -d " \n"'
check root-content sh -c 'test "$(cat /etc/hello)" = "hello from the image"'
result previous ok "$(cat /etc/written 2>/dev/null || echo none)"
check state-writable sh -c 'echo written > /etc/written && sync && grep -q written /etc/written'
sync
echo "LAB-DONE 0"
poweroff -f
`

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// newImageLab prepares everything the image scenarios share.
func newImageLab(t *testing.T) *imageLab {
	t.Helper()
	testutil.LookPath(t, "mkfs.erofs", "erofs-utils")
	testutil.LookPath(t, "mkfs.fat", "dosfstools")
	testutil.LookPath(t, "mcopy", "mtools")
	ctx := context.Background()
	l := &imageLab{dir: t.TempDir(), owner: "6f1a4f2e-5d0c-4b7a-9e38-2a1c0d9b7e11"}
	l.kernel = lab.TestKernel(t)
	var err error
	if l.stubs, err = lab.Stubs(ctx, "", 254); err != nil {
		testutil.Missing(t, "systemd-boot-efi 254", err.Error())
	}
	l.op, l.guest = operatorBinary(t), lab.ConfidiskBinary(t)
	// Every image carries the initrd system extension next to its UKI: the
	// stub passes it on and measures it into PCR 13, which the boot checks
	// against the prediction (the busybox initrd does not merge it).
	l.sysext = filepath.Join(l.dir, "confidisk.raw")
	run(t, l.op, "image", "sysext", "--confidisk", l.guest, "--seed", "confidisk lab sysext", l.sysext)
	l.keys = filepath.Join(l.dir, "keys")
	run(t, l.op, "image", "keys", "--owner", l.owner, "--name", "confidisk lab", "--auth-time", "2026-01-01T00:00:00Z", l.keys)
	l.varsSB = filepath.Join(l.dir, "vars-sb.fd")
	k := lab.SecureBootKeys{Owner: l.owner, PK: filepath.Join(l.keys, "PK.crt"), KEK: filepath.Join(l.keys, "KEK.crt"), DB: filepath.Join(l.keys, "db.crt"), SecureBootOn: true}
	if err := lab.EnrollKeys(ctx, "", k, l.varsSB); err != nil {
		missingOrFatal(t, err)
	}
	l.rootfs = filepath.Join(l.dir, "rootfs")
	if err := lab.RootFS(l.rootfs, l.guest, rootInit, map[string]string{"etc/hello": "hello from the image\n"}); err != nil {
		missingOrFatal(t, err)
	}
	if l.broker, err = labbroker.Start(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.broker.Close() })
	l.cmdline = strings.Join([]string{"console=ttyS0", "panic=-1", "loglevel=4", "cryptomgr.notests", "mitigations=off",
		"ip=" + lab.GuestIP + "::" + lab.HostIP + ":255.255.255.0::eth0:none",
		"confidisk.broker=" + l.broker.URL}, " ")
	_, op, err := disk.OperatorKeys(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	l.opPub = op
	l.files = []string{"/etc/confidisk/broker.pem=" + l.broker.CACert, provision.DefaultRecoveryKey + "=" + op}
	return l
}

// build runs `confidisk image build` into dir and returns the disk, the
// policy and the reference values.
func (l *imageLab) build(t *testing.T, dir string, stubs *lab.StubSet, extra ...string) (disk string, ref *image.Reference) {
	t.Helper()
	var files []string
	for _, f := range l.files {
		files = append(files, "--file", f)
	}
	return l.buildWith(t, dir, stubs, append(files, extra...)...)
}

// buildWith is build without the initrd's files (l.files): for a
// prebuilt --initrd.
func (l *imageLab) buildWith(t *testing.T, dir string, stubs *lab.StubSet, extra ...string) (disk string, ref *image.Reference) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk = filepath.Join(dir, "disk.img")
	args := []string{"image", "build", "--root", l.rootfs, "--fs", "erofs",
		"--kernel", l.kernel.Vmlinuz, "--modules-dir", l.kernel.ModulesDir, "--confidisk", l.guest,
		"--stub", stubs.Linux, "--addon-stub", stubs.Addon, "--keys", l.keys,
		"--cmdline", l.cmdline, "--seed", "confidisk lab image", "--state-size", "64M", "--sysext", l.sysext,
		"--policy", filepath.Join(dir, "policy.json"), "--reference", filepath.Join(dir, "reference.json"), "--json"}
	args = append(args, extra...)
	run(t, l.op, append(args, disk)...)
	b, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	ref = &image.Reference{}
	if err := json.Unmarshal(b, ref); err != nil {
		t.Fatal(err)
	}
	return disk, ref
}

// checkPredicted: the PCRs the guest read (`confidisk tpm pcrs --json`)
// equal the reference values: 4, 7, 11, 12 and 13 (not zero: every lab
// image carries the system extension).
func checkPredicted(t *testing.T, pcrs string, ref *image.Reference) {
	t.Helper()
	if ref.PCRs[13] == strings.Repeat("00", 32) {
		t.Error("pcr 13 predicted zero: the image carries a system extension")
	}
	for _, i := range []int{4, 7, 11, 12, 13} {
		if want := fmt.Sprintf(`"%d":"%s"`, i, ref.PCRs[i]); !strings.Contains(pcrs, want) {
			t.Errorf("pcr %d: the guest reads %s, predicted %s", i, pcrs, ref.PCRs[i])
		}
	}
}

// checkDracutUKI: the UKI's initrd is Debian's dracut systemd initrd with
// the confidisk module (and the operator's recovery key and the broker's
// certificate), nothing of confidisk's own initrd; the UKI's command line
// has no roothash=, the signed addon brings it; the system extension lies
// next to the UKI. Through OVMF with Secure Boot, confidisk-boot.service
// self-encrypts the state volume, the broker accepts the guest's evidence
// under the build's policy, which pins the predicted PCRs 4, 7, 11, 12 and
// 13, and registers the volume, systemd switches root, and the guest reads those
// PCRs equal to the reference values. Debian's dracut-core initrd has no
// network (dracut-network conflicts with it): the lab adds a unit that
// brings up the user network before confidisk-boot.service
// ([lab.DracutUserNet]); confidisk.broker= is in the UKI's signed command
// line.
func (l *imageLab) checkDracutUKI(t *testing.T) {
	base := lab.TestDracut(t, lab.Dracut{ModuleDir: dracutModule, Confidisk: l.guest})
	a := initrd.NewArchive()
	a.File(provision.DefaultRecoveryKey, 0o644, readFile(t, l.opPub))
	a.File("/etc/confidisk/broker.pem", 0o644, readFile(t, l.broker.CACert))
	if err := lab.DracutUserNet(a); err != nil {
		missingOrFatal(t, err)
	}
	rd := filepath.Join(t.TempDir(), "initrd.img")
	if err := lab.AppendArchive(base, rd, a); err != nil {
		t.Fatal(err)
	}
	cmdline := "console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests mitigations=off rd.shell=0 rd.emergency=poweroff systemd.show_status=1 init=/sbin/init confidisk.broker=" + l.broker.URL
	dir := filepath.Join(l.dir, "dracut")
	disk, ref := l.buildWith(t, dir, l.stubs, "--initrd", rd, "--cmdline", cmdline, "--policy-pcrs", "4,7,11,12,13")
	pol, err := attest.LoadPolicy(filepath.Join(dir, "policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{4, 7, 11, 12, 13} {
		if v := pol.PCRs[i]; len(v) != 1 || v[0] != ref.PCRs[i] {
			t.Fatalf("the policy pins pcr %d to %v, want the predicted %s", i, v, ref.PCRs[i])
		}
	}
	registered := l.brokerWatch(t, filepath.Join(dir, "policy.json"))
	m := l.machine(t, disk, l.varsSB)
	res := lab.RunScenario(t, lab.Scenario{Name: "image-dracut-uki", Machine: m,
		Expect: []string{"cmdline", "secureboot", "pcrs", "root-content", "state-writable"}})
	details := resultDetails(res)
	if !strings.Contains(details["cmdline"], "roothash="+ref.RootHash) {
		t.Errorf("/proc/cmdline %q has no roothash=%s (from the addon)", details["cmdline"], ref.RootHash)
	}
	checkPredicted(t, details["pcrs"], ref)
	console := readFile(t, res.ConsoleLog)
	// systemd's console forwarding prefixes the unit's lines with
	// "confidisk[PID]:" (the status lines shorten the unit's name).
	for _, want := range []string{`dracut-059`, `LAB-NET \S+ ` + lab.GuestIP + `/24`,
		`confidisk\[[0-9]+\]: confidisk boot: freshness: broker at epoch [0-9]+ \(evidence accepted\)`,
		`confidisk\[[0-9]+\]: confidisk boot: reached mounted`} {
		if !regexp.MustCompile(want).Match(console) {
			t.Errorf("the console has no %q: not the dracut initrd's confidisk-boot.service with the lab's network and the broker", want)
		}
	}
	registered()
}

// brokerWatch loads the policy in policyFile into the lab's broker and
// returns the check to run after the boot: the broker accepted the guest's
// evidence, so it holds exactly one more volume, whose epoch the boot has
// advanced.
func (l *imageLab) brokerWatch(t *testing.T, policyFile string) func() {
	t.Helper()
	pol, err := attest.LoadPolicy(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.broker.SetPolicy(pol); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before, err := l.broker.Store.Volumes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		vols, err := l.broker.Store.Volumes(ctx)
		if err != nil || len(vols) != len(before)+1 {
			t.Fatalf("broker volumes %d after the boot, %d before (%v): want the one the guest registered", len(vols), len(before), err)
		}
		known := map[string]bool{}
		for _, v := range before {
			known[v.UUID] = true
		}
		for _, v := range vols {
			if known[v.UUID] {
				continue
			}
			if e, err := l.broker.Store.Epoch(ctx, v.UUID); err != nil || e == 0 {
				t.Errorf("broker epoch of %s: %d, %v; want the boot to have advanced it", v.UUID, e, err)
			}
		}
	}
}

// machine returns a machine booting a copy of disk through OVMF with vars.
func (l *imageLab) machine(t *testing.T, disk, vars string) *lab.Machine {
	t.Helper()
	m := lab.TestMachine(t)
	d := filepath.Join(m.Dir, "disk.img")
	v := filepath.Join(m.Dir, "vars.fd")
	copyFile(t, disk, d, 0o644)
	copyFile(t, vars, v, 0o644)
	m.Disks = []lab.Disk{{Path: d}}
	fw, err := lab.NewFirmware(v)
	if err != nil {
		missingOrFatal(t, err)
	}
	m.Firmware, m.UserNet = fw, true
	return m
}

// TestLabImage boots disks built by `confidisk image build` through OVMF
// with Secure Boot on, the keys `confidisk image keys` made enrolled, and
// checks each claim against what the host can do.
func TestLabImage(t *testing.T) {
	l := newImageLab(t)
	disk, ref := l.build(t, filepath.Join(l.dir, "v1"), l.stubs)
	t.Run("reproducible", func(t *testing.T) { l.checkReproducible(t, disk) })
	t.Run("boot", func(t *testing.T) { l.checkBoot(t, "image-boot", disk, ref) })
	t.Run("boot-257", func(t *testing.T) {
		s, err := lab.Stubs(context.Background(), "", 257)
		if err != nil {
			testutil.Missing(t, "systemd-boot-efi 257", err.Error())
		}
		d, r := l.build(t, filepath.Join(l.dir, "v257"), s)
		l.checkBoot(t, "image-boot-257", d, r)
	})
	t.Run("dracut-uki", func(t *testing.T) { l.checkDracutUKI(t) })
	t.Run("update-signed-policy", func(t *testing.T) { l.checkSignedPolicyUpdate(t) })
	t.Run("unsigned-uki", func(t *testing.T) { l.checkUnsignedUKI(t, disk) })
	t.Run("foreign-addon", func(t *testing.T) { l.checkForeignAddon(t, disk) })
	t.Run("cmdline-override", func(t *testing.T) { l.checkCmdlineOverride(t, disk, ref) })
	t.Run("reseal-after-recovery", func(t *testing.T) { l.checkResealAfterRecovery(t, disk) })
}

// checkReproducible: a second build of the same inputs is byte-identical,
// disk and policy both.
func (l *imageLab) checkReproducible(t *testing.T, disk string) {
	start := time.Now()
	disk2, _ := l.build(t, filepath.Join(l.dir, "v1-again"), l.stubs)
	for _, f := range [][2]string{{disk, disk2}, {filepath.Join(filepath.Dir(disk), "policy.json"), filepath.Join(filepath.Dir(disk2), "policy.json")}} {
		a, b := fileDigest(t, f[0]), fileDigest(t, f[1])
		if a != b {
			t.Errorf("%s and %s differ (%s, %s)", f[0], f[1], a, b)
		}
	}
	fmt.Printf("LAB image-reproducible %s %.1fs\n", map[bool]string{true: "FAIL", false: "PASS"}[t.Failed()], time.Since(start).Seconds())
}

func fileDigest(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkBoot: the signed UKI starts, roothash= arrives through the signed
// addon, the state volume is self-encrypted, the broker with the generated
// policy accepts the evidence, and the PCRs the guest reads are the
// predicted ones.
func (l *imageLab) checkBoot(t *testing.T, name, disk string, ref *image.Reference) {
	registered := l.brokerWatch(t, filepath.Join(filepath.Dir(disk), "policy.json"))
	m := l.machine(t, disk, l.varsSB)
	res := lab.RunScenario(t, lab.Scenario{Name: name, Machine: m,
		Expect: []string{"cmdline", "secureboot", "pcrs", "root-content", "state-writable"}})
	details := resultDetails(res)
	if !strings.Contains(details["cmdline"], "roothash="+ref.RootHash) {
		t.Errorf("/proc/cmdline %q has no roothash=%s", details["cmdline"], ref.RootHash)
	}
	if details["secureboot"] != "1" {
		t.Errorf("SecureBoot = %q, want 1", details["secureboot"])
	}
	checkPredicted(t, details["pcrs"], ref)
	registered()
	f, err := os.Open(m.Disks[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	magic := make([]byte, 6)
	if _, err := f.ReadAt(magic, partitionStart(t, m.Disks[0].Path, stateType)); err != nil || string(magic) != "LUKS\xba\xbe" {
		t.Errorf("the state partition starts with %q (%v), not a LUKS2 header: it was not self-encrypted", magic, err)
	}
}

// GPT partition types (Discoverable Partitions Specification).
const (
	espType   = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	stateType = "4D21B016-B534-45C2-A9FB-5C16E091FD2D"
)

// espOffset is the byte offset of the disk's ESP.
func espOffset(t *testing.T, disk string) int64 { return partitionStart(t, disk, espType) }

// partitionStart is the byte offset of the disk's partition of type typ.
func partitionStart(t *testing.T, disk, typ string) int64 {
	start, _ := partition(t, disk, typ)
	return start
}

// partition is the byte offset and size of the disk's partition of type
// typ, read with sfdisk.
func partition(t *testing.T, disk, typ string) (start, size int64) {
	t.Helper()
	out := run(t, "sfdisk", "--json", disk)
	var pt struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Start int64  `json:"start"`
				Size  int64  `json:"size"`
				Type  string `json:"type"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(out), &pt); err != nil {
		t.Fatal(err)
	}
	ss := pt.PartitionTable.SectorSize
	if ss == 0 {
		ss = 512
	}
	for _, p := range pt.PartitionTable.Partitions {
		if strings.EqualFold(p.Type, typ) {
			return p.Start * ss, p.Size * ss
		}
	}
	t.Fatalf("no partition of type %s on the disk", typ)
	return 0, 0
}

// installImage is the host installing another image on a guest's disk
// (an update, or a downgrade): the new disk's ESP, root and verity
// partitions, the guest's state partition kept as it is.
func installImage(t *testing.T, guestDisk, newDisk string) {
	t.Helper()
	oldStart, oldSize := partition(t, guestDisk, stateType)
	newStart, newSize := partition(t, newDisk, stateType)
	if oldSize != newSize {
		t.Fatalf("state partitions of %d and %d bytes", oldSize, newSize)
	}
	f, err := os.Open(guestDisk)
	if err != nil {
		t.Fatal(err)
	}
	state := make([]byte, oldSize)
	_, err = f.ReadAt(state, oldStart)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, newDisk, guestDisk, 0o644)
	g, err := os.OpenFile(guestDisk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt(state, newStart); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// replaceESPFile is the host rewriting a file on the disk's ESP.
func replaceESPFile(t *testing.T, disk, espPath string, data []byte) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mcopy", "-o", "-i", fmt.Sprintf("%s@@%d", disk, espOffset(t, disk)), src, "::"+espPath)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v: %s", err, out)
	}
}

// espFile reads a file from the disk's ESP.
func espFile(t *testing.T, disk, espPath string) []byte {
	t.Helper()
	cmd := exec.Command("mcopy", "-i", fmt.Sprintf("%s@@%d", disk, espOffset(t, disk)), "::"+espPath, "-")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mcopy %s: %v", espPath, err)
	}
	return out
}

// checkUnsignedUKI: the host replaces the signed UKI with the same UKI
// unsigned; the firmware refuses it.
func (l *imageLab) checkUnsignedUKI(t *testing.T, disk string) {
	m := l.machine(t, disk, l.varsSB)
	signed := espFile(t, m.Disks[0].Path, image.UKIPath)
	unsigned, err := lab.UnsignedCopy(signed, l.stubs.Linux)
	if err != nil {
		t.Fatal(err)
	}
	replaceESPFile(t, m.Disks[0].Path, image.UKIPath, unsigned)
	lab.RunScenario(t, lab.Scenario{Name: "image-unsigned-uki", Machine: m, Stops: "Access Denied"})
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkForeignAddon: the host replaces the addon with one signed by its own
// key carrying its own root hash. The stub refuses to load it (Secure Boot)
// and boots on without it; the initrd finds no roothash= and powers off.
func (l *imageLab) checkForeignAddon(t *testing.T, disk string) {
	m := l.machine(t, disk, l.varsSB)
	owner, _ := secureboot.ParseGUID(l.owner)
	foreign, err := secureboot.GenerateKeys(rand.Reader, owner, "host", time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	addon, err := uki.Assemble(readFile(t, l.stubs.Addon), []uki.Part{{Name: ".cmdline", Data: []byte("roothash=" + strings.Repeat("66", 32))}})
	if err != nil {
		t.Fatal(err)
	}
	if addon, err = foreign.DB.SignPE(addon); err != nil {
		t.Fatal(err)
	}
	replaceESPFile(t, m.Disks[0].Path, image.AddonPath, addon)
	res := lab.RunScenario(t, lab.Scenario{Name: "image-foreign-addon", Machine: m, Stops: "no roothash= (or usrhash=) on the kernel command line"})
	console := readFile(t, res.ConsoleLog)
	if bytes.Contains(console, []byte("roothash="+strings.Repeat("66", 32))) {
		t.Error("the foreign addon's roothash= reached the kernel command line")
	}
}

// checkCmdlineOverride: with Secure Boot off, the host adds a boot entry
// whose LoadOptions replace the UKI's command line (here: the same line
// with an init= of its choosing). PCR 11 stays the same, PCR 12 changes, and
// a broker pinning PCRs 11 and 12 refuses the guest.
func (l *imageLab) checkCmdlineOverride(t *testing.T, disk string, ref *image.Reference) {
	pol, err := ref.Policy([]int{11, 12})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.broker.SetPolicy(pol); err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(t.TempDir(), "vars-override.fd")
	override := l.cmdline + " roothash=" + ref.RootHash + " init=/bin/sh"
	if err := lab.AddBootEntry(context.Background(), "", lab.OVMFVars, vars, `\EFI\BOOT\BOOTX64.EFI`, override); err != nil {
		t.Fatal(err)
	}
	m := l.machine(t, disk, vars)
	// The validator checks the pinned PCRs in order: a refusal naming PCR
	// 12 means PCR 11 (the UKI's sections) was the predicted value.
	lab.RunScenario(t, lab.Scenario{Name: "image-cmdline-override", Machine: m, Stops: "not allowed by the policy: pcr 12 is "})
}

// pcrKey writes an RSA key for signed PCR policies and returns its file.
func pcrKey(t *testing.T, dir, name string) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkSignedPolicyUpdate: image v1, whose UKI carries a .pcrsig by the
// vendor's PCR key with security version 1, boots and self-encrypts, the
// state key sealed to PCRs 7 and 15 and to PCR 11 as signed by that key,
// and raises the vTPM's security version floor to 1. The operator ships v2
// (a new root, hence a new roothash= addon, and a new command line, hence
// a new PCR 11; signed by the same key with version 2). Before the
// broker's policy has v2's reference values the broker refuses it; after
// a reload with the merged policy v2 unseals without the recovery key,
// finds v1's data and raises the floor to 2. v1 installed again (a
// downgrade) is refused by the vTPM, below the floor, with or without a
// broker; an unversioned v1 build is not protected by the floor, and the
// broker, with v1 retired, refuses it. A UKI whose PCR 11 signature is by
// another key (v3) is refused by the vTPM. The boots the vTPM refuses
// leave the disk alone.
func (l *imageLab) checkSignedPolicyUpdate(t *testing.T) {
	key := pcrKey(t, l.dir, "pcr-v.pem")
	root2 := filepath.Join(l.dir, "rootfs-v2")
	if err := lab.RootFS(root2, l.guest, rootInit, map[string]string{"etc/hello": "hello from the image\n", "etc/lab-version": "2\n"}); err != nil {
		t.Fatal(err)
	}
	d1, ref1 := l.build(t, filepath.Join(l.dir, "sv1"), l.stubs, "--pcr-private-key", key, "--security-version", "1")
	d2, ref2 := l.build(t, filepath.Join(l.dir, "sv2"), l.stubs, "--pcr-private-key", key, "--security-version", "2",
		"--root", root2, "--cmdline", l.cmdline+" lab.version=2")
	d1u, _ := l.build(t, filepath.Join(l.dir, "sv1u"), l.stubs, "--pcr-private-key", key)
	d3, _ := l.build(t, filepath.Join(l.dir, "sv3"), l.stubs, "--pcr-private-key", pcrKey(t, l.dir, "pcr-other.pem"), "--cmdline", l.cmdline+" lab.version=3")
	if ref1.RootHash == ref2.RootHash {
		t.Fatal("v2 has v1's root hash")
	}
	policy := func(disk string) string { return filepath.Join(filepath.Dir(disk), "policy.json") }
	setPolicy := func(t *testing.T, disks ...string) {
		t.Helper()
		merged := filepath.Join(t.TempDir(), "broker.json")
		args := []string{"image", "merge-policies", "--out", merged}
		for _, d := range disks {
			args = append(args, policy(d))
		}
		run(t, l.op, args...)
		pol, err := attest.LoadPolicy(merged)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.broker.SetPolicy(pol); err != nil {
			t.Fatal(err)
		}
	}
	console := func(t *testing.T, res *lab.BootResult, want ...string) {
		t.Helper()
		c := readFile(t, res.ConsoleLog)
		for _, w := range want {
			if !bytes.Contains(c, []byte(w)) {
				t.Errorf("the console has no %q", w)
			}
		}
	}
	setPolicy(t, d1)
	m := l.machine(t, d1, l.varsSB)
	expect := []string{"cmdline", "previous", "state-writable"}
	res := lab.RunScenario(t, lab.Scenario{Name: "update-signed-policy-v1", Machine: m, Expect: expect})
	console(t, res, "sealing also to pcr 11", "image security version 1; the vTPM's floor is 1")
	t.Run("broker-reference", func(t *testing.T) { l.checkBrokerReference(t, m, d1, d2, ref2, setPolicy) })

	// The operator retires v1; the host installs v1 again.
	setPolicy(t, d2)
	// A boot the vTPM refuses leaves the disk alone; one the broker
	// refuses has unsealed and advanced the volume's freshness epoch first.
	refused := func(name, disk, stops string, byTPM bool, want ...string) {
		t.Helper()
		installImage(t, m.Disks[0].Path, disk)
		before := fileDigest(t, m.Disks[0].Path)
		console(t, lab.RunScenario(t, lab.Scenario{Name: name, Machine: m, Stops: stops}), want...)
		if byTPM && fileDigest(t, m.Disks[0].Path) != before {
			t.Errorf("%s: the refused boot changed the disk", name)
		}
	}
	refused("update-downgrade-refused", d1, "security version below the vTPM's floor", true, "The state volume was NOT modified")
	refused("update-downgrade-refused-broker", d1u, "the broker refused this guest", false, "pcr values are not allowed by the policy")
	setPolicy(t, d3)
	refused("update-foreign-pcr-key", d3, "no valid signature for the pcr policy", true)
}

// checkBrokerReference: v2 installed before the broker's policy has its
// reference values is refused by the broker; after the operator reloads
// the merged v1+v2 policy it boots, unseals without the recovery key,
// runs v2's root and command line, finds v1's data, and raises the vTPM's
// floor to 2.
func (l *imageLab) checkBrokerReference(t *testing.T, m *lab.Machine, d1, d2 string, ref2 *image.Reference, setPolicy func(*testing.T, ...string)) {
	start := time.Now()
	installImage(t, m.Disks[0].Path, d2)
	res := lab.RunScenario(t, lab.Scenario{Name: "update-broker-reference-unknown", Machine: m, Stops: "the broker refused this guest"})
	if c := readFile(t, res.ConsoleLog); !bytes.Contains(c, []byte("pcr values are not allowed by the policy")) {
		t.Error("the broker refused v2 for another reason than its policy")
	}
	setPolicy(t, d1, d2)
	res = lab.RunScenario(t, lab.Scenario{Name: "update-signed-policy", Machine: m, Expect: []string{"cmdline", "previous", "state-writable"}})
	for _, r := range res.Results {
		if r.Name == "cmdline" && (!strings.Contains(r.Detail, "lab.version=2") || !strings.Contains(r.Detail, "roothash="+ref2.RootHash)) {
			t.Errorf("boot 2 ran %q, not v2's command line and root", r.Detail)
		}
		if r.Name == "previous" && r.Detail != "written" {
			t.Errorf("boot 2 found %q, not v1's data", r.Detail)
		}
	}
	c := readFile(t, res.ConsoleLog)
	if bytes.Contains(c, []byte("luks recover")) {
		t.Error("boot 2 fell to the recovery path")
	}
	if !bytes.Contains(c, []byte("image security version 2; the vTPM's floor is 2")) {
		t.Error("boot 2 did not raise the vTPM's floor to 2")
	}
	fmt.Printf("LAB update-broker-reference %s %.1fs\n", map[bool]string{true: "FAIL", false: "PASS"}[t.Failed()], time.Since(start).Seconds())
}
