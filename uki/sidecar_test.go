package uki

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
)

// TestSysextCPIO: GNU cpio, the oracle, lists the stub's directories and
// files with their modes, in the stub's order, and extracts the contents.
func TestSysextCPIO(t *testing.T) {
	cpio := testutil.LookPath(t, "cpio", "cpio")
	files := []Sidecar{{"b.raw", []byte("second, 17 bytes.")}, {"a.raw", bytes.Repeat([]byte{7}, 4099)}}
	archive := SysextCPIO(files)
	if len(archive)%4 != 0 {
		t.Fatalf("archive of %d bytes: want a multiple of 4", len(archive))
	}
	cmd := exec.Command(cpio, "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		got = append(got, f[0]+" "+f[len(f)-1])
	}
	want := []string{"dr-xr-xr-x .extra", "dr-xr-xr-x .extra/sysext", "-r--r--r-- .extra/sysext/a.raw", "-r--r--r-- .extra/sysext/b.raw"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("cpio -tv (-want +got):\n%s", d)
	}
	dir := t.TempDir()
	cmd = exec.Command(cpio, "-id", "--quiet")
	cmd.Dir, cmd.Stdin = dir, bytes.NewReader(archive)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, b)
	}
	for _, f := range files {
		if b, err := os.ReadFile(filepath.Join(dir, ".extra/sysext", f.Name)); err != nil || !bytes.Equal(b, f.Data) {
			t.Errorf("%s extracted: %d bytes, %v; want %d bytes as given", f.Name, len(b), err, len(f.Data))
		}
	}
	// The stub's own header of the first directory, and its trailer.
	if h := "070701" + "00000001" + "0000416d" + "00000000" + "00000000" + "00000001"; !bytes.HasPrefix(archive, []byte(h)) {
		t.Errorf("first header %q, want it to start %q", archive[:len(h)], h)
	}
	if !bytes.HasSuffix(archive, []byte("0000000B00000000TRAILER!!!\x00\x00\x00\x00")) {
		t.Errorf("archive ends %q, not with the stub's trailer", archive[len(archive)-32:])
	}
}

func TestSysextEvents(t *testing.T) {
	if ev := SysextEvents(nil); ev != nil || Extend(ev) != [32]byte{} {
		t.Errorf("no files: events %v, want none and PCR 13 zero", ev)
	}
	files := []Sidecar{{"confidisk.raw", []byte("x")}}
	ev := SysextEvents(files)
	if len(ev) != 1 || ev[0].PCR != 13 || ev[0].Digest != sha256.Sum256(SysextCPIO(files)) {
		t.Errorf("events %+v: want one PCR 13 event of the archive's digest", ev)
	}
}

func TestCheckSysextName(t *testing.T) {
	for name, ok := range map[string]bool{
		"confidisk.raw": true, "A.RAW": true, "x.sysext.raw": true,
		"conf.confext.raw": false, "confidisk.img": false, ".hidden.raw": false,
		"é.raw": false, strings.Repeat("a", 252) + ".raw": false, "a/b.raw": false,
	} {
		if err := CheckSysextName(name); (err == nil) != ok {
			t.Errorf("CheckSysextName(%q) = %v, want ok %v", name, err, ok)
		}
	}
}
