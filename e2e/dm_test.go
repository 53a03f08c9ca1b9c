package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/lab"
)

// testBinary compiles the tests of pkg with the labkernel tag into a static
// binary for the guest.
func testBinary(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg)+".test")
	cmd := exec.Command("go", "test", "-c", "-tags", "labkernel", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s tests: %v\n%s", pkg, err, msg)
	}
	return out
}

// TestLabDMClient runs the dm package's kernel tests (ioctls, multi-target
// tables, suspend/resume, EBUSY and deferred removal, node creation without
// udev, buffer growth) inside the guest against the real device-mapper.
func TestLabDMClient(t *testing.T) {
	bin := testBinary(t, "github.com/confidisk/confidisk/dm")
	res := lab.RunScenario(t, lab.Scenario{
		Name:  "dm-client",
		Disks: []lab.Disk{{Size: 16 << 20}},
		Files: map[string]string{"/bin/dm.test": bin},
		Script: `
out=$(/bin/dm.test -test.v -test.run Kernel 2>&1); rc=$?
echo "$out"
echo "$out" | grep -E '^--- (PASS|FAIL)' | while read -r _ status name _; do
	[ "$status" = "PASS:" ] && result "$name" ok || result "$name" fail "see console"
done
[ $rc -eq 0 ] && result dm-kernel-tests ok "all passed" || result dm-kernel-tests fail "exit $rc"
`,
		Expect: []string{"dm-kernel-tests", "TestKernelVersionAndList", "TestKernelLinearLifecycle", "TestKernelMessageAndErrors"},
	})
	for _, r := range res.Results {
		if !strings.HasPrefix(r.Name, "Test") && r.Name != "dm-kernel-tests" {
			t.Errorf("unexpected result %s", r.Name)
		}
	}
}
