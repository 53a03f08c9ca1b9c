package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/confidisk/confidisk/initrd"
)

// RootFS writes into dir the root file system tree of a lab image (see
// `confidisk image build`): Debian's static busybox with its applet links,
// the guest's confidisk at /bin/confidisk, the lab's shell helpers at
// /lab/preamble.sh ([Preamble]), the given extra files (path relative to
// dir → content), and init as /sbin/init: the program confidisk boot
// switches to. init should mount /proc and /sys itself, print LAB-INIT,
// report, print LAB-DONE and power off (poweroff -f).
func RootFS(dir, confidisk, init string, files map[string]string) error {
	bb, err := initrd.StaticBusybox()
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "lab", "proc", "sys", "dev", "tmp", "run", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyExecutable(bb, filepath.Join(dir, "bin/busybox")); err != nil {
		return err
	}
	if err := copyExecutable(confidisk, filepath.Join(dir, "bin/confidisk")); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "bin/busybox" && p != "sbin/init" {
			if err := os.Symlink("/bin/busybox", filepath.Join(dir, p)); err != nil {
				return err
			}
		}
	}
	all := map[string]string{"lab/preamble.sh": Preamble, "etc/os-release": "ID=confidisk-lab\nVERSION_ID=1\n"}
	for p, c := range files {
		all[p] = c
	}
	for p, c := range all {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "sbin/init"), []byte(init), 0o755)
}

func copyExecutable(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
