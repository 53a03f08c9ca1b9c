//go:build !confidisk_guest

package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/dist"
	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/internal/testutil"
)

// buildSysext runs `confidisk image sysext --json` with a stand-in binary
// and returns the report and the binary's bytes.
func buildSysext(t *testing.T, out string, args ...string) (map[string]any, []byte) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "confidisk-guest")
	content := bytes.Repeat([]byte("not really confidisk\n"), 5000)
	if err := os.WriteFile(bin, content, 0o755); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runIn(t, "", append([]string{"image", "sysext", "--json", "--confidisk", bin, "--seed", "sysext test"}, append(args, out)...)...)
	if err != nil {
		t.Fatalf("image sysext: %v\n%s", err, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	return rep, content
}

// TestImageSysextDissect: systemd-dissect, the oracle, recognises the image
// as an extension for the initrd with our release file, finds the usr and
// usr-verity partitions at the UUIDs the usr hash gives, and reads back the
// binary and the unit; veritysetup verifies the usr partition against the
// hash partition and the reported hash.
func TestImageSysextDissect(t *testing.T) {
	dissect := testutil.LookPath(t, "systemd-dissect", "systemd-container")
	veritysetup := testutil.LookPath(t, "veritysetup", "cryptsetup-bin")
	if os.Geteuid() != 0 {
		testutil.Missing(t, "root (systemd-dissect attaches the image to a loop device)", "run the tests as root")
	}
	img := filepath.Join(t.TempDir(), "confidisk.raw")
	rep, bin := buildSysext(t, img)
	var stderr bytes.Buffer
	cmd := exec.Command(dissect, "--json=short", img)
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("systemd-dissect: %v: %s", err, stderr.Bytes())
	}
	var d struct {
		ExtensionRelease []string `json:"extensionRelease"`
		InitRD           bool     `json:"useInitRDExtension"`
		System           bool     `json:"useSystemExtension"`
		Mounts           []struct {
			Designator string `json:"designator"`
			UUID       string `json:"partition_uuid"`
			FSType     string `json:"fstype"`
		} `json:"mounts"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("systemd-dissect --json: %v: %s", err, raw)
	}
	hash := fmt.Sprint(rep["root_hash"])
	hb, _ := hex.DecodeString(hash)
	dataUUID, hashUUID := gpt.VerityUUIDs(hb)
	type mount struct{ Designator, UUID, FSType string }
	var got []mount
	for _, m := range d.Mounts {
		got = append(got, mount{m.Designator, m.UUID, m.FSType})
	}
	want := []mount{{"usr", dataUUID.String(), "erofs"}, {"usr-verity", hashUUID.String(), "DM_verity_hash"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("systemd-dissect's partitions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ID=_any", "SYSEXT_SCOPE=initrd", "ARCHITECTURE=x86-64"}, d.ExtensionRelease); diff != "" {
		t.Errorf("extension-release (-want +got):\n%s", diff)
	}
	if !d.InitRD || d.System {
		t.Errorf("systemd-dissect: extension for the initrd %v, for the system %v: want only the initrd", d.InitRD, d.System)
	}
	for p, want := range map[string][]byte{"/usr/bin/confidisk": bin, "/usr/lib/systemd/system/confidisk-boot.service": dist.BootUnit} {
		out := filepath.Join(t.TempDir(), "copy")
		if b, err := exec.Command(dissect, "--copy-from", img, p, out).CombinedOutput(); err != nil {
			t.Fatalf("systemd-dissect --copy-from %s: %v: %s", p, err, b)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
			t.Errorf("%s in the image differs from what was given (%d bytes, want %d)", p, len(got), len(want))
		}
	}
	parts := rep["partitions"].([]any)
	files := make([]string, 2)
	for i, p := range parts {
		m := p.(map[string]any)
		files[i] = filepath.Join(t.TempDir(), fmt.Sprint(m["name"]))
		extract(t, img, files[i], int64(m["start"].(float64)), int64(m["size"].(float64)))
	}
	if b, err := exec.Command(veritysetup, "verify", files[0], files[1], hash).CombinedOutput(); err != nil {
		t.Errorf("veritysetup verify: %v: %s", err, b)
	}
}

// extract copies size bytes at off of img into out.
func extract(t *testing.T, img, out string, off, size int64) {
	t.Helper()
	b := readFile(t, img)
	if err := os.WriteFile(out, b[off:off+size], 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestImageSysextReproducible: the same inputs and seed give the same bytes.
func TestImageSysextReproducible(t *testing.T) {
	testutil.LookPath(t, "mkfs.erofs", "erofs-utils")
	a, b := filepath.Join(t.TempDir(), "confidisk.raw"), filepath.Join(t.TempDir(), "confidisk.raw")
	buildSysext(t, a)
	buildSysext(t, b)
	if !bytes.Equal(readFile(t, a), readFile(t, b)) {
		t.Error("two builds with the same seed differ")
	}
}

// TestImageSysextRefuses: bad input is refused before anything is written.
func TestImageSysextRefuses(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "old.raw")
	if err := os.WriteFile(existing, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		out  string
		says string
	}{
		{"not .raw", nil, filepath.Join(dir, "confidisk.img"), "must be called NAME.raw"},
		{"exists", nil, existing, "exists (use --force"},
		{"bad name", nil, filepath.Join(dir, ".hidden.raw"), `extension name ".hidden"`},
		{"os id without version", []string{"--os-id", "fedora"}, filepath.Join(dir, "a.raw"), "a VERSION_ID= is needed"},
		{"no binary", []string{"--confidisk", filepath.Join(dir, "missing")}, filepath.Join(dir, "b.raw"), "confidisk binary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runIn(t, "", append(append([]string{"image", "sysext"}, tc.args...), tc.out)...)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("image sysext %s: %v, want an error saying %q", tc.out, err, tc.says)
			}
			if tc.out != existing && pathExists(tc.out) {
				t.Errorf("%s was written", tc.out)
			}
		})
	}
	if b := readFile(t, existing); string(b) != "keep" {
		t.Error("the existing file changed")
	}
}
