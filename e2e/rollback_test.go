package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/confidisk/confidisk/lab"
)

// TestLabRollbackTPM: boot 1 writes A, the host copies the disk, boot 2
// writes B, the host restores the copy: boot 3 is refused by the vTPM
// counter, with a message naming both epochs, and the volume is untouched.
func TestLabRollbackTPM(t *testing.T) {
	d := buildBootDisk(t)
	m := lab.TestMachine(t, lab.Disk{Path: d.Path})
	files := d.files()
	tools := []string{"mkfs.ext4"}
	write := func(name, value string) lab.Scenario {
		return lab.Scenario{
			Name: name, Machine: m, Files: files, Tools: tools, Append: d.appendArgs,
			Script: bootScript(`
check write sh -c 'echo ` + value + ` > /sysroot/etc/data && sync'
check umount umount /sysroot
`),
			Expect: []string{"boot", "write"},
		}
	}
	lab.RunScenario(t, write("rollback-tpm-boot-1", "A"))
	copyOf := filepath.Join(t.TempDir(), "copy.img")
	img, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(copyOf, img, 0o600)
	lab.RunScenario(t, write("rollback-tpm-boot-2", "B"))
	old, _ := os.ReadFile(copyOf)
	if err := os.WriteFile(d.Path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	lab.RunScenario(t, lab.Scenario{
		Name: "rollback-tpm", Machine: m, Files: files, Tools: tools, Append: d.appendArgs,
		Script: refusedBootScript("", "the restored old copy was accepted", `
check names-both-epochs grep -q 'older than its freshness anchor: .*volume is at epoch [0-9]*, the vTPM counter at [0-9]*' /tmp/boot.log
check state-not-mapped sh -c '! test -e /dev/mapper/state'
`),
		Expect: []string{"refused", "names-both-epochs", "state-not-mapped"},
	})
	if now, _ := os.ReadFile(d.Path); string(now) != string(old) {
		t.Error("the refused boot changed the restored disk")
	}
}

// TestLabRollbackCrash: the power is cut after the new epoch reached the
// volume but before the vTPM counter was advanced; the next boot accepts the
// honest volume and completes the advance.
func TestLabRollbackCrash(t *testing.T) {
	d := buildBootDisk(t)
	m := lab.TestMachine(t, lab.Disk{Path: d.Path})
	files := d.files()
	tools := []string{"mkfs.ext4"}
	lab.RunScenario(t, lab.Scenario{Name: "rollback-crash-boot-1", Machine: m, Files: files, Tools: tools, Append: d.appendArgs,
		Script: bootScript(""), Expect: []string{"boot"}})
	lab.RunScenario(t, lab.Scenario{Name: "rollback-crash-boot-2", Machine: m, Files: files, Tools: tools, Append: d.appendArgs,
		CutAt: "epoch-written", Script: bootScript("")})
	res := lab.RunScenario(t, lab.Scenario{Name: "rollback-crash", Machine: m, Files: files, Tools: tools, Append: d.appendArgs,
		Script: bootScript(`check rw-root sh -c 'echo ok > /sysroot/etc/after && sync'`), Expect: []string{"boot", "rw-root"}})
	out := field(t, res, "boot")
	fr, _ := out["Freshness"].(map[string]any)
	if fr == nil || fr["CaughtUp"] != true {
		t.Errorf("boot after the cut: %v, want a caught-up freshness advance", out)
	}
}
