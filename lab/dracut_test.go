package lab

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/initrd"
	"github.com/confidisk/confidisk/internal/testutil"
)

// TestAppendArchive: the output is the base initrd unchanged, padded to 4
// bytes, then a newc archive that cpio (the oracle) lists.
func TestAppendArchive(t *testing.T) {
	testutil.LookPath(t, "cpio", "cpio")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	if err := os.WriteFile(base, []byte("not a multiple of four"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := initrd.NewArchive()
	a.File("/etc/systemd/system/lab.service", 0o644, []byte("[Unit]\n"))
	a.Symlink("/etc/systemd/system/sysinit.target.wants/lab.service", "/etc/systemd/system/lab.service")
	out := filepath.Join(dir, "out.img")
	if err := AppendArchive(base, out, a); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("not a multiple of four\x00\x00")) {
		t.Fatalf("the output does not start with the base and its padding: %q", b[:min(len(b), 32)])
	}
	cmd := exec.Command("cpio", "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(b[24:])
	list, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	got := strings.Fields(string(list))
	for _, want := range []string{"etc/systemd/system/lab.service", "etc/systemd/system/sysinit.target.wants/lab.service"} {
		if !strings.Contains(string(list), want) {
			t.Errorf("cpio lists %v, not %s", got, want)
		}
	}
}

func TestDracutArgs(t *testing.T) {
	k := &KernelInfo{Version: "6.12.118+deb12-amd64", ModulesDir: "/k/lib/modules/6.12.118+deb12-amd64"}
	got := Dracut{Drivers: []string{"virtio_blk"}}.args("/w", k, "/out.img")
	want := []string{"--force", "--no-hostonly", "--no-hostonly-cmdline", "--no-early-microcode",
		"--conf", "/w/dracut.conf", "--confdir", "/w/conf.d", "--tmpdir", "/w", "--kmoddir", k.ModulesDir, "--compress", "gzip",
		"-m", "systemd systemd-initrd base dm confidisk", "--add-drivers", "virtio_blk", "/out.img", k.Version}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("dracut arguments (-want +got):\n%s", d)
	}
}
