package lab

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/initrd"
)

// TestDracutUserNet: the archive holds the static busybox, the script and
// the unit, wanted by sysinit.target, nothing under /lib or /bin (symbolic
// links in a dracut initrd); the script is valid for busybox's shell.
func TestDracutUserNet(t *testing.T) {
	bb, err := initrd.StaticBusybox()
	if err != nil {
		missingOrFatal(t, err)
	}
	a := initrd.NewArchive()
	if err := DracutUserNet(a); err != nil {
		t.Fatal(err)
	}
	want := []string{dracutNetBusybox, dracutNetScript, dracutNetUnit, "/etc/systemd/system/sysinit.target.wants/lab-net.service"}
	got := a.Paths()
	for _, p := range want {
		if !slices.Contains(got, p) {
			t.Errorf("the archive lacks %s: %v", p, got)
		}
	}
	for _, p := range got {
		if strings.HasPrefix(p, "/lib") || strings.HasPrefix(p, "/bin") || strings.HasPrefix(p, "/sbin") {
			t.Errorf("the archive names %s: it would replace the initrd's symbolic link", p)
		}
	}
	for _, want := range []string{"Before=confidisk-boot.service", "ExecStart=" + dracutNetBusybox + " sh " + dracutNetScript} {
		if !strings.Contains(dracutNetService, want) {
			t.Errorf("the unit has no %q", want)
		}
	}
	if out, err := exec.Command(bb, "sh", "-n", "-c", dracutNetSh).CombinedOutput(); err != nil {
		t.Errorf("busybox sh -n: %v: %s", err, out)
	}
}

// TestDeviceArgsNoTPM: without swtpm's socket QEMU gets no TPM device.
func TestDeviceArgsNoTPM(t *testing.T) {
	m := &Machine{Disks: []Disk{{Path: "/d.img"}}, UserNet: true}
	with := strings.Join(m.deviceArgs("/s/swtpm.sock"), " ")
	without := strings.Join(m.deviceArgs(""), " ")
	if !strings.Contains(with, "tpm-crb,tpmdev=tpm0") || !strings.Contains(with, "path=/s/swtpm.sock") {
		t.Errorf("with the vTPM: %s", with)
	}
	if strings.Contains(without, "tpm") {
		t.Errorf("without the vTPM: %s", without)
	}
	if !strings.Contains(without, "virtio-net-pci") || !strings.Contains(without, "file=/d.img") {
		t.Errorf("without the vTPM, the disk or the network card is gone: %s", without)
	}
}
