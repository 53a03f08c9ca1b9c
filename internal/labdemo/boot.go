package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/confidisk/confidisk/internal/lab"
	"github.com/confidisk/confidisk/internal/labdisk"
)

const bootScript = `
say() { echo "DEMO $*"; }
mkdir -p /run/log/systemd
say "# confidisk boot"
if confidisk boot --mkfs /usr/sbin/mkfs.ext4 > /tmp/boot.json; then
	result boot ok done
else
	result boot fail refused
	say "Boot stopped: the state volume was left exactly as it was."
	exit 0
fi
`

// runBoot is the second act: first boot, second boot, swap attack.
func runBoot(bin string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	k, err := lab.Kernel(ctx, "")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "confidisk-demo-boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, err := labdisk.Build(dir, bin, map[string]string{"etc/hello": "hello from the verity root\n"})
	if err != nil {
		return err
	}
	m, err := lab.NewMachine(dir, k, lab.Disk{Path: d.Path})
	if err != nil {
		return err
	}
	boot := func(title, checks string) (*lab.BootResult, error) {
		fmt.Printf("\n  ── %s ──\n", title)
		initrd := filepath.Join(dir, "initrd.cpio")
		ir := lab.Initramfs{Modules: lab.DefaultModules(), Files: map[string]string{"/bin/confidisk": bin},
			Tools: []string{"mkfs.ext4"}, Init: bootScript + checks}
		if err := ir.Build(ctx, k, initrd); err != nil {
			return nil, err
		}
		return m.Boot(ctx, lab.BootOptions{Initrd: initrd, Append: d.Cmdline(), Console: console{}})
	}

	fmt.Println("  The host hands the guest a disk: a dm-verity root (roothash= on the kernel")
	fmt.Println("  command line) and a blank partition labelled \"state\". The vTPM is swtpm.")
	res, err := boot("first boot: the guest encrypts its own state volume", `
say "# echo 'my secret' > /sysroot/etc/secret"
echo 'my secret' > /sysroot/etc/secret && sync
say "PCR 15 now holds the volume's measurement: $(confidisk tpm pcrs --pcrs 15 --json | tr -d ' \n')"
say "PCR7 $(confidisk tpm pcrs --pcrs 7 --json | tr -d ' \n')"
umount /sysroot
`)
	if err != nil {
		return err
	}
	if f := res.Failed(); len(f) > 0 {
		return fmt.Errorf("first boot failed: %v (console: %s)", f, res.ConsoleLog)
	}
	console, _ := os.ReadFile(res.ConsoleLog)
	mm := regexp.MustCompile(`"7":"([0-9a-f]{64})"`).FindSubmatch(console)
	if mm == nil {
		return fmt.Errorf("no PCR 7 value on the console")
	}
	pcr7, _ := hex.DecodeString(string(mm[1]))

	res, err = boot("second boot: unsealed by the vTPM, checked, opened", `
say "# cat /sysroot/etc/secret"
say "  $(cat /sysroot/etc/secret)"
umount /sysroot
`)
	if err != nil {
		return err
	}
	if f := res.Failed(); len(f) > 0 {
		return fmt.Errorf("second boot failed: %v (console: %s)", f, res.ConsoleLog)
	}

	fmt.Println("\n  ── the host swaps the state volume ──")
	fmt.Println("  The host formats the state partition itself (so it knows the key), marks it")
	fmt.Println("  provisioned, and adds a systemd-tpm2 keyslot that this vTPM unseals — which")
	fmt.Println("  needs only the SRK's public key. If the guest used it, its secrets would be")
	fmt.Println("  readable by the host.")
	tp, stop, err := m.HostTPM()
	if err != nil {
		return err
	}
	_, err = d.ForgeState(tp, pcr7)
	stop()
	if err != nil {
		return err
	}
	res, err = boot("third boot: the swapped volume", "")
	if err != nil {
		return err
	}
	for _, r := range res.Results {
		if r.Name == "boot" && r.OK {
			return fmt.Errorf("UNEXPECTED: the guest accepted the swapped volume")
		}
	}
	fmt.Println("\n  The vTPM unsealed the host's keyslot, but the volume's key does not match the")
	fmt.Println("  fixation digest this guest stored in the vTPM at first boot: refused.")
	return nil
}
