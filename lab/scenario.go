package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confidisk/confidisk/initrd"
	"github.com/confidisk/confidisk/internal/testutil"
)

// DefaultTimeout bounds one boot of a scenario when [Scenario.Timeout] is 0.
// It is generous for TCG, where a busybox guest reaches /init in ~5 s.
const DefaultTimeout = 5 * time.Minute

// Scenario is one boot of an end-to-end test.
type Scenario struct {
	// Name identifies the scenario in the LAB summary line.
	Name string
	// Script is the guest shell script (see [Preamble] for its helpers).
	Script string
	// Disks are the disks of a new machine; ignored when Machine is set.
	Disks []Disk
	// Machine, if set, is booted again with its disks and vTPM state: a
	// reboot. Make one with [TestMachine].
	Machine *Machine
	// Modules to load; nil means [DefaultModules].
	Modules []string
	// Files and Tools are copied into the initramfs (see [Initramfs]).
	Files map[string]string
	// Tools are host programs copied with their libraries (see [Initramfs]).
	Tools []string
	// Append holds extra kernel parameters.
	Append []string
	// Expect lists result names that must be reported (a reported one
	// that is not ok fails the scenario anyway).
	Expect []string
	// CutAt cuts the power at this point; the scenario then requires the
	// cut to happen, and the script's RESULT lines before it still count.
	CutAt string
	// Timeout bounds the boot; 0 means [DefaultTimeout].
	Timeout time.Duration
	// Stops, when set, is a refused boot: the guest must end without
	// LAB-DONE (the firmware refuses the image, or the initrd powers the
	// machine off) and its console must contain Stops.
	Stops string
	// DMClone ships and loads dm-clone, which Debian's kernel lacks: the
	// module is built out of tree for the machine's kernel on first use
	// ([TestDMCloneModule], cached) and /init loads it after its
	// dependencies (see [Initramfs.DMClone]). The module is unsigned, so
	// only the lab's direct kernel boots can load it: a [Machine] with
	// Firmware is refused (its initrd comes from the disk's UKI, and under
	// Secure Boot the kernel is locked down and loads no unsigned module).
	DMClone bool
	// Initrd, when set, is a prebuilt initrd booted instead of one built
	// from Script, Modules, Files and Tools (which are then unused): e.g. a
	// distribution's systemd initrd ([Dracut]), where the scenario's checks
	// live in the root's /sbin/init and in units of the initrd.
	Initrd string
	// NoTPM boots this once without the machine's vTPM (see
	// [BootOptions.NoTPM]): the guest finds no TPM device.
	NoTPM bool
}

// validate checks that sc can boot on m.
func (sc Scenario) validate(m *Machine) error {
	if sc.Initrd != "" && (m.Firmware != nil || sc.DMClone) {
		return errors.New("a prebuilt initrd is for a direct kernel boot: not with Firmware (the initrd comes from the disk's UKI) or DMClone (which adds to the lab's own initramfs)")
	}
	if sc.DMClone && m.Firmware != nil {
		return errors.New("DMClone needs the lab's direct kernel boot: with Firmware the initrd comes from the disk's UKI, and under Secure Boot the kernel (LOCK_DOWN_IN_EFI_SECURE_BOOT) refuses the unsigned dm-clone.ko")
	}
	return nil
}

// TestKernel returns the lab kernel for a test, reporting missing tools
// through [testutil.Missing] (a skip locally, a failure under CI=true).
func TestKernel(t testing.TB) *KernelInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := Kernel(ctx, "")
	if err != nil {
		missingOrFatal(t, err)
	}
	return k
}

// TestMachine returns a machine in a fresh temporary directory of t with the
// given disks and the lab kernel, after checking the host tools the lab
// needs. Boot it several times with [Scenario.Machine] to reboot it.
func TestMachine(t testing.TB, disks ...Disk) *Machine {
	t.Helper()
	testutil.LookPath(t, "qemu-system-x86_64", "qemu-system-x86")
	testutil.LookPath(t, "swtpm", "swtpm")
	if _, err := initrd.StaticBusybox(); err != nil {
		missingOrFatal(t, err)
	}
	k := TestKernel(t)
	m, err := NewMachine(t.TempDir(), k, disks...)
	if err != nil {
		t.Fatalf("create lab machine: %v", err)
	}
	return m
}

// missingOrFatal turns a missing tool or kernel package into
// [testutil.Missing] and anything else into a fatal error.
func missingOrFatal(t testing.TB, err error) {
	t.Helper()
	var mt *MissingToolError
	switch {
	case errors.As(err, &mt):
		testutil.Missing(t, mt.Tool, "apt-get install -y "+mt.Package)
	case errors.Is(err, ErrNoKernelPackage):
		testutil.Missing(t, "the lab kernel package", "run `apt-get update` as root")
	default:
		t.Fatalf("lab: %v", err)
	}
}

// RunScenario boots a scenario and returns what the guest reported. It
// fails the test, with the last console lines, when the boot fails, when a
// RESULT is fail, when an expected result is missing, when the script's exit
// status is not 0, or when a requested power cut did not happen. It prints
// exactly one line "LAB <name> PASS|FAIL <seconds>s" to standard output (and
// the test log) unless the test is skipped for a missing tool. Set
// CONFIDISK_LAB_CONSOLE=1 to stream the console to standard output.
func RunScenario(t testing.TB, sc Scenario) *BootResult {
	t.Helper()
	start := time.Now()
	m := sc.Machine
	if m == nil {
		m = TestMachine(t, sc.Disks...)
	}
	invalid := sc.validate(m)
	// Before the LAB line is due (a missing build tool skips the test) and
	// before the boot's timeout starts (a first build takes a while).
	var dmClone string
	if sc.DMClone && invalid == nil {
		dmClone = TestDMCloneModule(t, m.Kernel)
	}
	passed := false
	defer func() {
		status := "FAIL"
		if passed {
			status = "PASS"
		}
		line := fmt.Sprintf("LAB %s %s %.1fs", sc.Name, status, time.Since(start).Seconds())
		fmt.Println(line)
		t.Log(line)
	}()
	if invalid != nil {
		t.Fatalf("lab %s: %v", sc.Name, invalid)
	}

	timeout := sc.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	opts := BootOptions{Append: sc.Append, CutAt: sc.CutAt, NoTPM: sc.NoTPM}
	switch {
	case m.Firmware != nil: // a firmware boot takes everything from its disk
	case sc.Initrd != "":
		opts.Initrd = sc.Initrd
	default:
		opts.Initrd = scenarioInitramfs(ctx, t, m, sc, dmClone)
	}
	if os.Getenv("CONFIDISK_LAB_CONSOLE") == "1" {
		opts.Console = os.Stdout
	}
	res, err := m.Boot(ctx, opts)
	if sc.Stops != "" {
		passed = res != nil && stoppedWith(t, sc, res, err)
		return res
	}
	if err != nil {
		t.Fatalf("lab %s: %v", sc.Name, err)
	}
	if res.Retried != nil {
		t.Logf("lab %s: booted twice, the first kernel panicked or stalled before /init: %.200s", sc.Name, res.Retried)
	}
	t.Logf("lab %s: %s, boot-to-init %.1fs, boot %.1fs, console log %s", sc.Name, res.Accel,
		res.InitTime.Seconds(), res.Duration.Seconds(), res.ConsoleLog)
	if problems := res.problems(sc); len(problems) > 0 {
		t.Fatalf("lab %s:\n  %s\nlast console lines:\n%s", sc.Name, strings.Join(problems, "\n  "), res.Tail())
	}
	passed = true
	return res
}

// scenarioInitramfs builds the initramfs of sc in m's directory, with the
// module dmClone when it is set.
func scenarioInitramfs(ctx context.Context, t testing.TB, m *Machine, sc Scenario, dmClone string) string {
	t.Helper()
	modules := sc.Modules
	if modules == nil {
		modules = DefaultModules()
	}
	f, err := os.CreateTemp(m.Dir, "initrd-*.cpio")
	if err != nil {
		t.Fatalf("lab %s: %v", sc.Name, err)
	}
	f.Close()
	ir := Initramfs{Modules: modules, Files: sc.Files, Tools: sc.Tools, Init: sc.Script, DMClone: dmClone}
	if err := ir.Build(ctx, m.Kernel, f.Name()); err != nil {
		t.Fatalf("lab %s: build initramfs: %v", sc.Name, err)
	}
	return f.Name()
}

// stoppedWith checks a boot that must be refused ([Scenario.Stops]): it
// ended without LAB-DONE, for a reason other than a timeout, and the
// console says sc.Stops. It fails the test otherwise.
func stoppedWith(t testing.TB, sc Scenario, res *BootResult, err error) bool {
	t.Helper()
	console, rerr := os.ReadFile(res.ConsoleLog)
	switch {
	case err == nil:
		t.Fatalf("lab %s: the guest finished (LAB-DONE %d), want a refused boot; last console lines:\n%s", sc.Name, res.ExitStatus, res.Tail())
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStalledBeforeInit):
		t.Fatalf("lab %s: %v", sc.Name, err)
	case rerr != nil:
		t.Fatalf("lab %s: %v", sc.Name, rerr)
	case !strings.Contains(string(console), sc.Stops):
		t.Fatalf("lab %s: the boot stopped (%.200v) but the console does not say %q; last console lines:\n%s", sc.Name, err, sc.Stops, res.Tail())
	}
	t.Logf("lab %s: refused as expected (%s), boot %.1fs, console log %s", sc.Name, sc.Stops, res.Duration.Seconds(), res.ConsoleLog)
	return true
}

// problems lists what makes a boot fail scenario sc.
func (r *BootResult) problems(sc Scenario) []string {
	var p []string
	for _, f := range r.Failed() {
		p = append(p, fmt.Sprintf("RESULT %s fail %s", f.Name, f.Detail))
	}
	seen := map[string]bool{}
	for _, res := range r.Results {
		seen[res.Name] = true
	}
	for _, name := range sc.Expect {
		if !seen[name] {
			p = append(p, fmt.Sprintf("expected result %s is missing", name))
		}
	}
	switch {
	case sc.CutAt != "" && !r.Cut:
		p = append(p, fmt.Sprintf("the power was not cut at %q (points reached: %v)", sc.CutAt, r.Points))
	case sc.CutAt == "" && r.ExitStatus != 0:
		p = append(p, fmt.Sprintf("the script exited with status %d", r.ExitStatus))
	}
	return p
}

// ConfidiskBinary builds the project's guest binary (./cmd/confidisk of the
// module that contains the test with -tags confidisk_guest, as an initrd
// carries it; CGO_ENABLED=0, so it runs in the initramfs without a C
// library) into a temporary directory of t and returns its path, for
// [Scenario.Files], e.g. Files: map[string]string{"/bin/confidisk": lab.ConfidiskBinary(t)}.
func ConfidiskBinary(t testing.TB) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("find the module root: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || root == "" {
		t.Fatal("find the module root: go env GOMOD is empty (not inside the module)")
	}
	out := filepath.Join(t.TempDir(), "confidisk")
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "confidisk_guest", "-o", out, "./cmd/confidisk")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build confidisk: %v\n%s", err, msg)
	}
	return out
}
