// Command provisionlab measures first-boot provisioning of a state volume in
// the lab (a real kernel under QEMU, TCG on the development machines):
// cryptsetup luksFormat --integrity hmac-sha256 with its full wipe, next to
// confidisk luks format with the full wipe and with the fast initialisation,
// on the same device in the same guest; then a whole `confidisk boot` first
// boot on a state partition of the same size, step by step. bench/provision.sh
// runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/lab/disk"
)

func main() {
	bin := flag.String("bin", "bin/confidisk", "static confidisk binary")
	sizeMiB := flag.Int("size", 1024, "volume size in MiB")
	flag.Parse()
	if err := run(*bin, *sizeMiB); err != nil {
		fmt.Fprintf(os.Stderr, "provisionlab: %v\n", err)
		os.Exit(1)
	}
}

const formats = `
export DM_DISABLE_UDEV=1
printf 'bench passphrase' > /key
fast="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
t() { # name cmd...: time a command, print "TIME name seconds"
	n=$1; shift
	s=$(cut -d' ' -f1 /proc/uptime); "$@" >/tmp/out 2>&1; rc=$?; e=$(cut -d' ' -f1 /proc/uptime)
	[ $rc -eq 0 ] || { echo "FAILED $n: $(tail -2 /tmp/out)"; return 1; }
	echo "TIME $n $(awk -v s="$s" -v e="$e" 'BEGIN { printf "%d", (e - s) * 1000 }')"
}
wipe() { dd if=/dev/zero of=/dev/vda bs=1M count=32 conv=fsync 2>/dev/null; }
wipe; t cryptsetup-full cryptsetup luksFormat -q --type luks2 --integrity hmac-sha256 $fast --key-file /key /dev/vda
wipe; t confidisk-full confidisk luks format -q --integrity hmac-sha256 $fast --key-file /key /dev/vda
wipe; t confidisk-fast confidisk luks format -q --integrity hmac-sha256 --integrity-fast $fast --key-file /key /dev/vda
wipe; t confidisk-none confidisk luks format -q --integrity hmac-sha256 --integrity-no-wipe $fast --key-file /key /dev/vda
result formats ok done
`

func run(bin string, sizeMiB int) error {
	bin, _ = filepath.Abs(bin)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	k, err := lab.Kernel(ctx, "")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "provisionlab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m, err := lab.NewMachine(dir, k, lab.Disk{Size: int64(sizeMiB) << 20})
	if err != nil {
		return err
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	ir := lab.Initramfs{Modules: lab.DefaultModules(), Files: map[string]string{"/bin/confidisk": bin},
		Tools: []string{"cryptsetup"}, Init: formats}
	if err := ir.Build(ctx, k, initrd); err != nil {
		return err
	}
	var out strings.Builder
	if _, err := m.Boot(ctx, lab.BootOptions{Initrd: initrd, Console: &out}); err != nil {
		return err
	}
	times := map[string]string{}
	for _, mm := range regexp.MustCompile(`TIME (\S+) (\d+)`).FindAllStringSubmatch(out.String(), -1) {
		times[mm[1]] = mm[2]
	}
	if f := regexp.MustCompile(`FAILED .*`).FindString(out.String()); f != "" {
		return fmt.Errorf("%s", f)
	}
	offline, err := formatOffline(bin, dir, sizeMiB)
	if err != nil {
		return err
	}
	times["confidisk-offline"] = fmt.Sprint(offline.Milliseconds())
	ms := func(k string) float64 { var v float64; fmt.Sscan(times[k], &v); return v / 1000 }
	fmt.Printf("LUKS2 + hmac-sha256 integrity on %d MiB, in one guest (%s, %s)\n", sizeMiB, k.Version, "TCG")
	fmt.Printf("  %-44s %9s %9s\n", "format + tag initialisation", "seconds", "speedup")
	for _, row := range []struct{ key, label string }{
		{"cryptsetup-full", "cryptsetup luksFormat --integrity (full wipe)"},
		{"confidisk-full", "confidisk luks format --integrity (full wipe)"},
		{"confidisk-fast", "confidisk ... --integrity-fast (1 MiB at each end)"},
		{"confidisk-none", "confidisk ... --integrity-no-wipe"},
		{"confidisk-offline", "confidisk ... --offline, on the host (all tags)"},
	} {
		fmt.Printf("  %-44s %9.1f %8.1fx\n", row.label, ms(row.key), ms("cryptsetup-full")/ms(row.key))
	}

	fmt.Printf("  (--offline runs on the host, where a pre-encrypted volume is made, with the CPU's\n" +
		"  VAES and AVX-512; the guest rows run under the lab's emulation)\n")

	// A whole first boot on a state partition of the same size.
	dd := filepath.Join(dir, "boot")
	os.MkdirAll(dd, 0o755)
	bd, err := disk.BuildSized(dd, bin, map[string]string{"etc/hello": "hi\n"}, int64(sizeMiB)<<20)
	if err != nil {
		return err
	}
	bm, err := lab.NewMachine(dd, k, lab.Disk{Path: bd.Path})
	if err != nil {
		return err
	}
	ir = lab.Initramfs{Modules: lab.DefaultModules(), Files: map[string]string{"/bin/confidisk": bin},
		Tools: []string{"mkfs.ext4"}, Init: "mkdir -p /run/log/systemd\nconfidisk boot --mkfs /usr/sbin/mkfs.ext4 && result boot ok done\n"}
	if err := ir.Build(ctx, k, initrd); err != nil {
		return err
	}
	out.Reset()
	if _, err := bm.Boot(ctx, lab.BootOptions{Initrd: initrd, Append: bd.Cmdline(), Console: &out}); err != nil {
		return err
	}
	if !strings.Contains(out.String(), "reached mounted") {
		return fmt.Errorf("the first boot did not finish; console:\n%s", out.String())
	}
	fmt.Printf("\nconfidisk boot, first boot, %d MiB state partition (fast tag initialisation), time reached:\n", sizeMiB)
	prev := 0.0
	for _, mm := range regexp.MustCompile(`reached (\S+) after ([0-9.]+)s`).FindAllStringSubmatch(out.String(), -1) {
		var at float64
		fmt.Sscan(mm[2], &at)
		fmt.Printf("  %-16s %6.1f s  (+%.1f s)\n", mm[1], at, at-prev)
		prev = at
	}
	return nil
}

// formatOffline times `confidisk luks format --integrity hmac-sha256
// --offline` of an image of sizeMiB on the host: every sector and tag
// written in userspace, then synced.
func formatOffline(bin, dir string, sizeMiB int) (time.Duration, error) {
	img, key := filepath.Join(dir, "offline.img"), filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("bench passphrase"), 0o600); err != nil {
		return 0, err
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return 0, err
	}
	if err := os.Truncate(img, int64(sizeMiB)<<20); err != nil {
		return 0, err
	}
	start := time.Now()
	out, err := exec.Command(bin, "luks", "format", "-q", "--integrity", "hmac-sha256", "--offline",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", key, img).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("luks format --offline: %v: %s", err, out)
	}
	return time.Since(start), nil
}
