package tpmtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/internal/testutil"
)

// StartDir launches swtpm like [Start] but on an existing state directory
// (an absolute path), e.g. the vTPM state of a lab VM that is powered off,
// so that a test can act as the host, who has that state in its hands. The
// sockets live in a temporary directory of their own; swtpm's log is written
// to swtpm.log in stateDir, as [Start] does. swtpm locks the state directory
// (.lock), so StartDir fails while another swtpm uses it. swtpm runs with
// startup-clear: to the TPM this is a reboot of the machine.
func StartDir(t testing.TB, stateDir string) *SWTPM {
	t.Helper()
	bin := testutil.LookPath(t, "swtpm", "swtpm")
	if !filepath.IsAbs(stateDir) {
		t.Fatalf("swtpm state directory %q is not an absolute path", stateDir)
	}
	if strings.Contains(stateDir, ",") {
		t.Fatalf("swtpm state directory %q contains a comma, which swtpm's option parser splits at", stateDir)
	}
	if fi, err := os.Stat(stateDir); err != nil || !fi.IsDir() {
		t.Fatalf("swtpm state directory %q: not a directory (%v)", stateDir, err)
	}
	sockDir, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	s := &SWTPM{t: t, dir: stateDir, sock: filepath.Join(sockDir, "tpm.sock"), ctrl: filepath.Join(sockDir, "tpm.sock.ctrl")}
	s.start(bin)
	return s
}
