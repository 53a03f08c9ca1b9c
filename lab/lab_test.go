package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confidisk/confidisk/internal/testutil"
)

// TestLabBoot boots the default initramfs with one disk and the project's
// binary and checks from inside the guest that the binary runs and that the
// vTPM, the modules and the disk are there.
func TestLabBoot(t *testing.T) {
	const size = 32 << 20
	m := TestMachine(t, Disk{Size: size})
	RunScenario(t, Scenario{
		Name:    "boot",
		Machine: m,
		Files:   map[string]string{"/bin/confidisk": ConfidiskBinary(t)},
		Script: fmt.Sprintf(`
check confidisk-runs confidisk --help
check tpm-device sh -c '[ -c /dev/tpm0 ] || [ -c /dev/tpmrm0 ]'
check dm-mod-loaded sh -c 'grep -q "^dm_mod " /proc/modules || [ -d /sys/module/dm_mod ]'
check dm-verity-loaded grep -q "^dm_verity " /proc/modules
check vda-size sh -c '[ -b /dev/vda ] && [ "$(cat /sys/block/vda/size)" = %d ]'
check kernel-release sh -c '[ "$(uname -r)" = %q ]'
`, size/512, m.Kernel.Version),
		Expect: []string{"confidisk-runs", "tpm-device", "dm-mod-loaded", "dm-verity-loaded", "vda-size", "kernel-release"},
	})
}

// tpmResetCount is guest shell code that prints the vTPM's resetCount
// (TPM2_ReadClock, raw on /dev/tpm0: the guest has no tpm2-tools) as
// "RESULT tpm-reset-count ok <hex>". The count lives in the TPM's NV state
// and grows at every TPM reset, so a larger count after a reboot shows that
// the second boot talked to the same vTPM.
const tpmResetCount = `
printf '\200\001\000\000\000\012\000\000\001\201' >/tmp/clock.cmd
exec 3<>/dev/tpm0
# One write() of the whole command (dd), then one read() of the response.
dd if=/tmp/clock.cmd bs=10 >&3 2>/tmp/clock.err
dd bs=4096 count=1 <&3 >/tmp/clock.bin 2>>/tmp/clock.err
exec 3>&-
rc=$(dd if=/tmp/clock.bin bs=1 skip=6 count=4 2>/dev/null | hexdump -v -e '4/1 "%02x"')
count=$(dd if=/tmp/clock.bin bs=1 skip=26 count=4 2>/dev/null | hexdump -v -e '4/1 "%02x"')
if [ "$rc" = 00000000 ] && [ -n "$count" ]; then
	result tpm-reset-count ok "$count"
else
	result tpm-reset-count fail "TPM2_ReadClock response code '$rc':" $(cat /tmp/clock.err)
fi
`

// resetCount returns the detail of the tpm-reset-count result as a number.
func resetCount(t *testing.T, res *BootResult) uint64 {
	t.Helper()
	for _, r := range res.Results {
		if r.Name == "tpm-reset-count" {
			n, err := strconv.ParseUint(r.Detail, 16, 32)
			if err != nil {
				t.Fatalf("tpm-reset-count %q: %v", r.Detail, err)
			}
			return n
		}
	}
	t.Fatal("no tpm-reset-count result")
	return 0
}

// TestLabRebootKeepsDiskAndVTPM boots one machine twice: a file written to
// vda in the first boot is read in the second, the swtpm state persists on
// the host, and the second boot sees the same vTPM (its reset count grew).
func TestLabRebootKeepsDiskAndVTPM(t *testing.T) {
	testutil.LookPath(t, "mke2fs", "e2fsprogs")
	m := TestMachine(t, Disk{Size: 16 << 20})
	first := RunScenario(t, Scenario{
		Name:    "reboot-1",
		Machine: m,
		Tools:   []string{"mke2fs"}, // e2fsprogs with its libraries: busybox's makes only ext2
		Script: `
check mkfs mke2fs -q -F -t ext4 /dev/vda
mkdir -p /mnt/vda
check mount mount -t ext4 /dev/vda /mnt/vda
echo "written in boot 1" >/mnt/vda/hello
check umount umount /mnt/vda
` + tpmResetCount,
		Expect: []string{"mkfs", "mount", "umount", "tpm-reset-count"},
	})
	state := filepath.Join(m.TPMStateDir(), "tpm2-00.permall")
	if fi, err := os.Stat(state); err != nil || fi.Size() == 0 {
		t.Fatalf("vtpm state %s after boot 1: %v (want a non-empty file)", state, err)
	}
	second := RunScenario(t, Scenario{
		Name:    "reboot-2",
		Machine: m,
		Script: `
mkdir -p /mnt/vda
check mount mount -t ext4 /dev/vda /mnt/vda
check read-back grep -qx "written in boot 1" /mnt/vda/hello
umount /mnt/vda
` + tpmResetCount,
		Expect: []string{"mount", "read-back", "tpm-reset-count"},
	})
	before, after := resetCount(t, first), resetCount(t, second)
	t.Logf("vtpm resetCount: boot 1 %d, boot 2 %d", before, after)
	if after <= before {
		t.Errorf("vtpm resetCount went from %d to %d across the reboot; want it to grow (same vTPM state)", before, after)
	}
}

// TestLabPowerCut cuts the power at a point and checks that what was synced
// before it is on the disk image and what the script would write after it is
// not.
func TestLabPowerCut(t *testing.T) {
	m := TestMachine(t, Disk{Size: 1 << 20})
	res := RunScenario(t, Scenario{
		Name:    "power-cut",
		Machine: m,
		CutAt:   "before-write",
		Script: `
printf 'BEFORE-CUT' | dd of=/dev/vda bs=512 seek=0 conv=notrunc 2>/dev/null
result wrote-before ok
point before-write
printf 'AFTER-CUT' | dd of=/dev/vda bs=512 seek=8 conv=notrunc 2>/dev/null
sync
result wrote-after ok
`,
		Expect: []string{"wrote-before"},
	})
	if !res.Cut || len(res.Points) == 0 || res.Points[len(res.Points)-1] != "before-write" {
		t.Fatalf("boot result: cut=%v points=%v, want a cut at before-write", res.Cut, res.Points)
	}
	for _, r := range res.Results {
		if r.Name == "wrote-after" {
			t.Fatalf("the guest went past the cut point: %+v", r)
		}
	}
	img, err := os.ReadFile(filepath.Clean(m.Disks[0].Path))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(img, []byte("BEFORE-CUT")) {
		t.Errorf("disk image lacks the write synced before the cut: %q", img[:16])
	}
	if bytes.Contains(img, []byte("AFTER-CUT")) {
		t.Errorf("disk image has the write from after the cut")
	}
}

// bootScript boots m once with script and the default modules, without the
// checks of RunScenario, for tests of failing guests.
func bootScript(ctx context.Context, t *testing.T, m *Machine, script string, console io.Writer) (*BootResult, error) {
	t.Helper()
	initrd := filepath.Join(t.TempDir(), "initrd")
	ir := Initramfs{Modules: []string{}, ModuleDirs: []string{}, Init: script}
	if err := ir.Build(ctx, m.Kernel, initrd); err != nil {
		t.Fatal(err)
	}
	return m.Boot(ctx, BootOptions{Initrd: initrd, Console: console})
}

// TestLabGuestPanicEndsBoot checks that a kernel panic ends the boot at once
// (panic=-1 with -no-reboot) with an error that shows the console.
func TestLabGuestPanicEndsBoot(t *testing.T) {
	m := TestMachine(t)
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	start := time.Now()
	res, err := bootScript(ctx, t, m, "echo c >/proc/sysrq-trigger\nsleep 600\n", nil)
	if err == nil {
		t.Fatal("boot of a panicking guest succeeded")
	}
	t.Logf("panicking guest ended after %.1fs", time.Since(start).Seconds())
	if ctx.Err() != nil {
		t.Fatalf("the panic did not end the boot before the timeout: %v", err)
	}
	if !strings.Contains(err.Error(), "Kernel panic") {
		t.Errorf("error lacks the panic message from the console:\n%v", err)
	}
	if res == nil || res.Done {
		t.Errorf("boot result %+v, want one without LAB-DONE", res)
	}
	if errors.Is(err, ErrPanicBeforeInit) || res.Retried != nil {
		t.Errorf("a panic of the scenario (after /init) was taken for an early one: %v", err)
	}
}

// TestLabPanicBeforeInitRetried checks that a kernel that panics before
// /init (here: no init at all) is booted a second time, and that the error
// says so when it panics again.
func TestLabPanicBeforeInitRetried(t *testing.T) {
	m := TestMachine(t)
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	initrd := filepath.Join(t.TempDir(), "initrd")
	if err := (&Initramfs{Modules: []string{}, ModuleDirs: []string{}, Init: "true\n"}).Build(ctx, m.Kernel, initrd); err != nil {
		t.Fatal(err)
	}
	res, err := m.Boot(ctx, BootOptions{Initrd: initrd, Append: []string{"rdinit=/no/such/init"}})
	if !errors.Is(err, ErrPanicBeforeInit) {
		t.Fatalf("Boot: %v, want ErrPanicBeforeInit", err)
	}
	if res == nil || !errors.Is(res.Retried, ErrPanicBeforeInit) {
		t.Fatalf("boot result %+v: want a retried first attempt", res)
	}
	if m.boots != 2 {
		t.Errorf("%d boots, want 2", m.boots)
	}
}

// TestLabStallBeforeInitRetried: a kernel that does not reach /init within
// the machine's deadline (here one far shorter than a boot) is stopped and
// booted a second time, and the error says so when it stalls again.
func TestLabStallBeforeInitRetried(t *testing.T) {
	m := TestMachine(t)
	m.InitDeadline = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	initrd := filepath.Join(t.TempDir(), "initrd")
	if err := (&Initramfs{Modules: []string{}, ModuleDirs: []string{}, Init: "true\n"}).Build(ctx, m.Kernel, initrd); err != nil {
		t.Fatal(err)
	}
	res, err := m.Boot(ctx, BootOptions{Initrd: initrd})
	if !errors.Is(err, ErrStalledBeforeInit) {
		t.Fatalf("Boot: %v, want ErrStalledBeforeInit", err)
	}
	if res == nil || !errors.Is(res.Retried, ErrStalledBeforeInit) || m.boots != 2 {
		t.Fatalf("boot result %+v after %d boots: want a retried first attempt", res, m.boots)
	}
}

// cancelOn cancels a context when a console line contains a marker.
type cancelOn struct {
	marker string
	cancel context.CancelFunc
}

func (c cancelOn) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(c.marker)) {
		c.cancel()
	}
	return len(p), nil
}

// TestLabHungGuestEndsWithContext checks that a guest that never finishes is
// killed when the boot's context ends, and that the error has the console.
func TestLabHungGuestEndsWithContext(t *testing.T) {
	m := TestMachine(t)
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	_, err := bootScript(ctx, t, m, "echo hanging-now\nwhile :; do sleep 1; done\n", cancelOn{"hanging-now", cancel})
	if err == nil {
		t.Fatal("boot of a hung guest succeeded")
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "hanging-now") {
		t.Errorf("error = %v, want a cancellation that shows the console", err)
	}
}
