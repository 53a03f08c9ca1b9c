// Command labdemo is the guest half of `make demo`: it boots a real Linux
// kernel under QEMU (with swtpm as its vTPM) and shows, with narration,
//
//   - verity: the kernel's dm-verity protecting an image that confidisk
//     formatted on the host, and refusing the copy the host tampered with;
//   - boot: a guest that encrypts its own state volume on first boot, opens
//     it on the second, and refuses the volume the host swaps in;
//   - image: the real boot chain: a disk from confidisk image build booted
//     through OVMF with Secure Boot, accepted by a broker whose policy the
//     build predicted, and an unsigned UKI refused by the firmware.
//
// Usage (scripts/demo.sh runs it):
//
//	labdemo verity BIN DATA HASH TAMPERED ROOTHASH BLOCK
//	labdemo boot BIN
//	labdemo image BIN GUEST-BIN
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/confidisk/confidisk/lab"
)

func main() {
	var err error
	switch {
	case len(os.Args) == 8 && os.Args[1] == "verity":
		err = run(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6], os.Args[7])
	case len(os.Args) == 3 && os.Args[1] == "boot":
		err = runBoot(os.Args[2])
	case len(os.Args) == 4 && os.Args[1] == "image":
		err = runImage(os.Args[2], os.Args[3])
	default:
		fmt.Fprintln(os.Stderr, "usage: labdemo verity BIN DATA HASH TAMPERED ROOTHASH BLOCK | labdemo boot BIN | labdemo image BIN GUEST-BIN")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "labdemo: %v\n", err)
		os.Exit(1)
	}
}

// console prints the guest's narration ("DEMO" lines), its commands and the
// kernel's dm-verity messages, and drops the rest of the boot noise.
type console struct{}

func (console) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "DEMO "):
			fmt.Println("  guest│ " + strings.TrimPrefix(line, "DEMO "))
		case strings.HasPrefix(line, "confidisk boot: "), strings.HasPrefix(line, "confidisk: "):
			fmt.Println("  guest│ " + line)
		case strings.Contains(line, "device-mapper: verity"):
			fmt.Println("  kernel│ " + strings.TrimSpace(line[strings.Index(line, "device-mapper"):]))
		}
	}
	return len(p), nil
}

const script = `
say() { echo "DEMO $*"; }
run() { say "# $*"; out=$("$@" 2>&1); rc=$?; printf '%%s\n' "$out" | while IFS= read -r l; do [ -n "$l" ] && say "  $l"; done; return $rc; }
say "Linux $(uname -r) booted under QEMU; vTPM: $(ls /dev/tpm0 2>/dev/null || echo none)"
say "/dev/vda = OS image, /dev/vdb = its hash tree, /dev/vdc = a copy the host tampered with"
run confidisk verity open root /dev/vda /dev/vdb %[1]s
mkdir -p /mnt /bad
run mount -o ro /dev/mapper/root /mnt
run cat /mnt/etc/sshd_config
say "The kernel verified every block it read against the root hash."
run umount /mnt
run confidisk verity close root
say ""
say "Now the tampered copy, with the same hash tree and root hash:"
run confidisk verity open tampered /dev/vdc /dev/vdb %[1]s || result demo-tamper fail "open failed"
run mount -o ro /dev/mapper/tampered /bad || result demo-tamper fail "mount failed"
say "# cat /bad/etc/sshd_config"
out=$(cat /bad/etc/sshd_config 2>&1); say "  $out"
case "$out" in
*"I/O error"*|*"Input/output error"*)
	say "Read refused with EIO: the changed block (data block %[2]s) never reaches userspace."
	result demo-tamper ok refused ;;
*) say "UNEXPECTED: $out"; result demo-tamper fail "$out" ;;
esac
result demo-open ok done
`

func run(bin, data, hash, tampered, root, block string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	fmt.Println("  (fetching the Debian 6.12 kernel the first time; then cached)")
	k, err := lab.Kernel(ctx, "")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "confidisk-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m, err := lab.NewMachine(dir, k, lab.Disk{Path: data}, lab.Disk{Path: hash}, lab.Disk{Path: tampered})
	if err != nil {
		return err
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	ir := lab.Initramfs{
		Modules: lab.DefaultModules(),
		Files:   map[string]string{"/bin/confidisk": bin},
		Init:    fmt.Sprintf(script, root, block),
	}
	if err := ir.Build(ctx, k, initrd); err != nil {
		return err
	}
	fmt.Printf("  booting Linux %s (QEMU, swtpm vTPM; software emulation, ~15 s)...\n", k.Version)
	res, err := m.Boot(ctx, lab.BootOptions{Initrd: initrd, Console: console{}})
	if err != nil {
		return err
	}
	if f := res.Failed(); len(f) > 0 || len(res.Results) < 2 {
		return fmt.Errorf("the demo did not go as expected (%v); console log: %s", f, res.ConsoleLog)
	}
	fmt.Printf("  guest powered off after %.0f s.\n", res.Duration.Seconds())
	return nil
}
