// Package testutil holds helpers shared by the project's tests: finding the
// oracle tools (veritysetup, cryptsetup, swtpm, qemu) and deciding what a
// missing one means.
//
// Outside CI a missing tool skips the test with a message that says how to
// install it. With CI=true (as .ci/run sets it) a missing tool fails the test:
// CI must never pass by skipping.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where every oracle
// must be present.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing reports a missing prerequisite: a failure under CI, a skip elsewhere.
// hint tells the reader how to get it (for example "apt-get install cryptsetup-bin").
func Missing(t testing.TB, what, hint string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is missing (CI=true turns this into a failure): %s", what, hint)
	}
	t.Skipf("%s is missing: %s (run `make deps` as root)", what, hint)
}

// LookPath returns the absolute path of tool, or reports it missing through
// [Missing] with the Debian package that provides it.
func LookPath(t testing.TB, tool, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		Missing(t, tool, "apt-get install -y "+debianPackage)
	}
	return p
}
