package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/lab/disk"
	"github.com/confidisk/confidisk/lab/labbroker"
	"github.com/confidisk/confidisk/provision"
)

// imageInit is the demo image's /sbin/init: what the booted system sees.
const imageInit = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
say() { echo "DEMO $*"; }
echo "LAB-INIT"
say "/sbin/init of the verified root is running"
for w in $(cat /proc/cmdline); do case "$w" in roothash=*) say "root hash from the signed addon: ${w#roothash=}";; esac; done
set -- $(od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c)
say "SecureBoot=$5"
say "mounted: $(grep -E '^(overlay|/dev/mapper)' /proc/mounts | cut -d' ' -f1-3 | tr '\n' ';')"
echo "LAB-DONE 0"
poweroff -f
`

// runImage is demo step 9: `confidisk image keys` and `image build` make a
// signed disk and its broker policy; OVMF with Secure Boot boots it, the
// guest self-encrypts its state and the broker accepts its evidence; then
// the host swaps in an unsigned UKI and the firmware refuses it.
func runImage(bin, guest string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	k, err := lab.Kernel(ctx, "")
	if err != nil {
		return err
	}
	stubs, err := lab.Stubs(ctx, "", 254)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "confidisk-demo-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	keys := filepath.Join(dir, "keys")
	owner := "6f1a4f2e-5d0c-4b7a-9e38-2a1c0d9b7e11"
	if err := show(bin, "image", "keys", "--owner", owner, "--name", "demo", keys); err != nil {
		return err
	}
	vars := filepath.Join(dir, "vars.fd")
	fmt.Println("  (enrolling PK, KEK and db in a copy of OVMF's variable store with virt-fw-vars)")
	if err := lab.EnrollKeys(ctx, "", lab.SecureBootKeys{Owner: owner, PK: filepath.Join(keys, "PK.crt"),
		KEK: filepath.Join(keys, "KEK.crt"), DB: filepath.Join(keys, "db.crt"), SecureBootOn: true}, vars); err != nil {
		return err
	}
	b, err := labbroker.Start(filepath.Join(dir, "broker"))
	if err != nil {
		return err
	}
	defer b.Close()
	root := filepath.Join(dir, "rootfs")
	if err := lab.RootFS(root, guest, imageInit, nil); err != nil {
		return err
	}
	_, opPub, err := disk.OperatorKeys(dir)
	if err != nil {
		return err
	}
	img, policy := filepath.Join(dir, "disk.img"), filepath.Join(dir, "policy.json")
	cmdline := "console=ttyS0 panic=-1 loglevel=1 cryptomgr.notests mitigations=off ip=" + lab.GuestIP + "::" + lab.HostIP +
		":255.255.255.0::eth0:none confidisk.broker=" + b.URL
	if err := show(bin, "image", "build", "--root", root, "--kernel", k.Vmlinuz, "--modules-dir", k.ModulesDir,
		"--confidisk", guest, "--stub", stubs.Linux, "--addon-stub", stubs.Addon, "--keys", keys, "--cmdline", cmdline,
		"--file", "/etc/confidisk/broker.pem="+b.CACert, "--file", provision.DefaultRecoveryKey+"="+opPub,
		"--state-size", "64M", "--seed", "demo", "--policy", policy, img); err != nil {
		return err
	}
	pol, err := attest.LoadPolicy(policy)
	if err != nil {
		return err
	}
	fmt.Printf("  policy.json pins PCRs 4, 7, 11, 12 to the predicted values; the broker loads it:\n")
	for _, i := range []int{4, 7, 11, 12} {
		fmt.Printf("    pcr %2d = %s\n", i, pol.PCRs[i][0])
	}
	if err := b.SetPolicy(pol); err != nil {
		return err
	}
	m, err := imageMachine(dir, k, img, vars)
	if err != nil {
		return err
	}
	fmt.Println("  booting the disk through OVMF with Secure Boot (UKI, signed roothash= addon; ~25 s)...")
	res, err := m.Boot(ctx, lab.BootOptions{Console: console{}})
	if err != nil {
		return err
	}
	vols, err := b.Store.Volumes(ctx)
	if err != nil || len(vols) != 1 {
		return fmt.Errorf("the broker knows %d volumes (%v), want the guest's", len(vols), err)
	}
	fmt.Printf("  guest powered off after %.0f s; the broker registered volume %s and accepted its evidence.\n", res.Duration.Seconds(), vols[0].UUID)
	return refuseUnsigned(ctx, m, stubs.Linux)
}

// refuseUnsigned: the host replaces the signed UKI with the same UKI
// unsigned; the firmware refuses to start it.
func refuseUnsigned(ctx context.Context, m *lab.Machine, stub string) error {
	fmt.Println("  the host replaces \\EFI\\BOOT\\BOOTX64.EFI with the same UKI, unsigned:")
	img := m.Disks[0].Path
	esp := img + "@@1M"
	signed := filepath.Join(m.Dir, "signed.efi")
	if err := mtools("mcopy", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", signed); err != nil {
		return err
	}
	sb, err := os.ReadFile(signed)
	if err != nil {
		return err
	}
	unsigned, err := lab.UnsignedCopy(sb, stub)
	if err != nil {
		return err
	}
	u := filepath.Join(m.Dir, "unsigned.efi")
	if err := os.WriteFile(u, unsigned, 0o644); err != nil {
		return err
	}
	if err := mtools("mcopy", "-o", "-i", esp, u, "::/EFI/BOOT/BOOTX64.EFI"); err != nil {
		return err
	}
	_, err = m.Boot(ctx, lab.BootOptions{Console: firmwareConsole{}})
	if err == nil || !strings.Contains(err.Error(), "Access Denied") {
		return fmt.Errorf("the unsigned UKI was not refused: %v", err)
	}
	fmt.Println("  the firmware refused it (Secure Boot): nothing of the guest ran.")
	return nil
}

// firmwareConsole shows OVMF's refusal.
type firmwareConsole struct{}

func (firmwareConsole) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(p), "\n") {
		if strings.Contains(line, "Access Denied") {
			fmt.Println("  firmware│ " + strings.TrimSpace(line[strings.Index(line, "BdsDxe"):]))
		}
	}
	return len(p), nil
}

func imageMachine(dir string, k *lab.KernelInfo, disk, vars string) (*lab.Machine, error) {
	m, err := lab.NewMachine(filepath.Join(dir, "vm"), k, lab.Disk{Path: disk})
	if err != nil {
		return nil, err
	}
	if m.Firmware, err = lab.NewFirmware(vars); err != nil {
		return nil, err
	}
	m.UserNet = true
	return m, nil
}

// show prints and runs a confidisk command.
func show(bin string, args ...string) error {
	short := make([]string, len(args))
	for i, a := range args {
		if len(a) > 48 {
			a = a[:45] + "..."
		}
		short[i] = a
	}
	fmt.Printf("  $ confidisk %s\n", strings.Join(short, " "))
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			fmt.Println("    " + l)
		}
	}
	if err != nil {
		return fmt.Errorf("confidisk %s: %w", args[0]+" "+args[1], err)
	}
	return nil
}

func mtools(tool string, args ...string) error {
	cmd := exec.Command(tool, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", tool, err, out)
	}
	return nil
}
