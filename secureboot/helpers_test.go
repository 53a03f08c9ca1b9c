package secureboot

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confidisk/confidisk/internal/testutil"
)

// testTime is the fixed validity start and .auth timestamp of the tests.
var testTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testOwner is the SignatureOwner of the tests' signature lists.
var testOwner = GUID{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07}

// testKeys generates a key set for one test.
func testKeys(t *testing.T) *KeySet {
	t.Helper()
	ks, err := GenerateKeys(strings.NewReader(strings.Repeat("serial-bytes-for-tests!", 8)), testOwner, "confidisk test", testTime, testTime.AddDate(10, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// testPE cross-compiles testdata/pe for windows/amd64 and returns the image;
// trailing bytes are appended so its length is not a multiple of 8.
func testPE(t *testing.T) []byte {
	t.Helper()
	goBin := needTool(t, "go", "golang-go")
	out := filepath.Join(t.TempDir(), "test.exe")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./testdata/pe")
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build test PE: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, "odd"...)
	if len(b)%8 == 0 {
		t.Fatalf("test PE is %d bytes, want a length that needs padding", len(b))
	}
	return b
}

// writeTemp writes b to a new file named name in a temporary directory.
func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runTool runs an oracle, returning its combined output and whether it
// exited 0.
func runTool(t *testing.T, tool string, args ...string) (string, bool) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(tool, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("%s: %v", tool, err)
		}
	}
	return out.String(), err == nil
}

func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	return testutil.LookPath(t, tool, pkg)
}
