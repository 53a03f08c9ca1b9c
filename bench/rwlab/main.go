// Command rwlab measures the three read-write roots over a verity root in
// the lab (a real kernel under QEMU, TCG on the development machines): the
// time from the start of `confidisk boot` to the mounted read-write root
// (its "reached mounted" checkpoint) on a first boot with
// confidisk.rw=overlay, copy and clone, each on a fresh copy of the same
// disk (a 256 MiB ext4 root filled with random files, its verity tree, a
// blank state partition) and a fresh vTPM; then dm-clone's hydration
// throughput for three region sizes, from `confidisk clone start` to the end
// of `confidisk clone wait` on a clone booted with hydration paused.
// bench/rw.sh runs it. It prints figures and ratios; it asserts no timing.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/lab/disk"
)

func main() {
	bin := flag.String("bin", "bin/confidisk", "confidisk binary for the host (verity format)")
	guest := flag.String("guest", "bin/confidisk-guest", "static confidisk binary for the guest's initrd")
	rootMiB := flag.Int("root", 256, "root file system size in MiB")
	stateMiB := flag.Int("state", 0, "state partition size in MiB (0: 1.5 × the root)")
	regions := flag.String("regions", "8K,64K,1M", "dm-clone region sizes for the hydration runs")
	runs := flag.Int("runs", 5, "first boots of each mode for the boot times (the median is compared)")
	flag.Parse()
	if *stateMiB == 0 {
		*stateMiB = *rootMiB * 3 / 2
	}
	if err := run(*bin, *guest, *rootMiB, *stateMiB, strings.Split(*regions, ","), max(1, *runs)); err != nil {
		fmt.Fprintf(os.Stderr, "rwlab: %v\n", err)
		os.Exit(1)
	}
}

// fileMiB is the size of each random file of the root; the files fill the
// root to 80 % (ext4's metadata and journal take 13 %; the rest is
// left free for the guest's writes).
const fileMiB = 4

const hello = "hello from the verity root"

// A bootCase is one first boot on a fresh disk and vTPM.
type bootCase struct {
	name   string
	append []string
	clone  bool
	// hydrate is the guest's hydration measurement: "" none, "wait" (the
	// boot started hydration: wait for its end), "start" (paused at boot:
	// time start + wait).
	hydrate string
	region  string
}

// bootScript is the guest's script for c: `confidisk boot` (its log, with
// the checkpoint lines, on the console), checks of the mounted root, and the
// hydration measurement. sum is data/00.bin's SHA-256, read back after
// hydration.
func bootScript(c bootCase, sum string) string {
	s := `
mkdir -p /run/log/systemd /etc
export DM_DISABLE_UDEV=1
now() { cut -d' ' -f1 /proc/uptime; }
ms() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%d", (e - s) * 1000 }'; }
s0=$(now)
if confidisk boot --mkfs /usr/sbin/mkfs.ext4 2>/tmp/boot.log; then
	e0=$(now); cat /tmp/boot.log; echo "TIME boot-command $(ms $s0 $e0)"; result boot ok
else
	cat /tmp/boot.log; result boot fail "$(tail -3 /tmp/boot.log)"; exit 1
fi
check rw-mounted sh -c 'grep " /sysroot " /proc/mounts | grep -q " rw," && test "$(cat /sysroot/etc/hello)" = "` + hello + `"'
check writable sh -c 'echo changed > /sysroot/etc/hello && sync'
`
	switch c.hydrate {
	case "wait":
		s += `if confidisk clone wait --interval 0.25s --timeout 1200s >/tmp/wait.log 2>&1; then e=$(now); echo "TIME hydrated-after-boot-start $(ms $s0 $e)"; result hydrated ok; else result hydrated fail "$(tail -2 /tmp/wait.log)"; fi
`
	case "start":
		s += `s=$(now)
if confidisk clone start >/tmp/wait.log 2>&1 && confidisk clone wait --interval 0.25s --timeout 1200s >>/tmp/wait.log 2>&1; then e=$(now); echo "TIME hydration $(ms $s $e)"; result hydrated ok; else result hydrated fail "$(tail -2 /tmp/wait.log)"; fi
`
	}
	if c.clone {
		s += `check clone-status confidisk clone status
`
	}
	s += `check data-intact sh -c 'test "$(sha256sum /sysroot/data/00.bin | cut -d" " -f1)" = ` + sum + `'
umount /sysroot || true
`
	return s
}

// measured is what one boot reported.
type measured struct {
	points [][2]string // checkpoint, seconds since the start of confidisk boot
	times  map[string]float64
	accel  string
}

func (m measured) at(point string) float64 {
	for _, p := range m.points {
		if p[0] == point {
			var v float64
			fmt.Sscan(p[1], &v)
			return v
		}
	}
	return 0
}

func run(bin, guest string, rootMiB, stateMiB int, regions []string, runs int) error {
	bin, _ = filepath.Abs(bin)
	guest, _ = filepath.Abs(guest)
	start := time.Now()
	load0, _ := os.ReadFile("/proc/loadavg")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()
	k, err := lab.Kernel(ctx, "")
	if err != nil {
		return err
	}
	ko, err := lab.DMCloneModule(ctx, "", k)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rwlab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, sum, nfiles, err := buildDisk(bin, filepath.Join(dir, "base"), rootMiB, stateMiB)
	if err != nil {
		return err
	}
	cases := benchCases(regions)
	results := map[string][]measured{}
	for i, c := range bootOrder(cases, runs) {
		t0 := time.Now()
		m, err := bootOnce(ctx, k, ko, guest, d, filepath.Join(dir, fmt.Sprintf("%02d-%s", i, c.name)), c, sum)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		results[c.name] = append(results[c.name], m)
		fmt.Fprintf(os.Stderr, "rwlab: %s: mounted after %.1f s (command %.2f s), guest run %.0f s\n",
			c.name, m.at("mounted"), m.times["boot-command"], time.Since(t0).Seconds())
	}
	load1, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("Read-write root over a %d MiB verity root (ext4, %d MiB of random files), state partition %d MiB\n",
		rootMiB, nfiles*fileMiB, stateMiB)
	fmt.Printf("kernel %s, %s, 2 vCPUs; host %d CPUs; every boot a first boot on a fresh disk and vTPM\n",
		k.Version, results["overlay"][0].accel, runtime.NumCPU())
	reportBoots(cases, results)
	reportHydration(cases, results, rootMiB)
	fmt.Printf("\nload average before %s, after %s; wall time %.0f s\n",
		strings.Join(strings.Fields(string(load0))[:3], " "), strings.Join(strings.Fields(string(load1))[:3], " "), time.Since(start).Seconds())
	return nil
}

// buildDisk makes the disk every boot copies, in base: the root holds
// random files (real blocks for the copy and the hydration) filling 80 %
// of it. It returns the disk, the SHA-256 of data/00.bin and the number of
// files.
func buildDisk(bin, base string, rootMiB, stateMiB int) (*disk.Disk, string, int, error) {
	files := map[string]string{"etc/hello": hello + "\n", "etc/os-release": "ID=confidisk-lab\n"}
	nfiles := rootMiB * 80 / 100 / fileMiB
	var sum string
	for i := range nfiles {
		b := make([]byte, fileMiB<<20)
		rand.Read(b)
		if i == 0 {
			h := sha256.Sum256(b)
			sum = hex.EncodeToString(h[:])
		}
		files[fmt.Sprintf("data/%02d.bin", i)] = string(b)
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, "", 0, err
	}
	d, err := disk.BuildRoot(base, bin, files, int64(rootMiB)<<20, int64(stateMiB)<<20)
	if err != nil {
		return nil, "", 0, err
	}
	os.RemoveAll(filepath.Join(base, "tree")) // BuildRoot's copy of the files
	return d, sum, nfiles, nil
}

// benchCases are the three boot-time modes, then one paused clone per
// region size for the hydration runs.
func benchCases(regions []string) []bootCase {
	cases := []bootCase{
		{name: "overlay", append: []string{"confidisk.rw=overlay"}},
		{name: "copy", append: []string{"confidisk.rw=copy"}},
		{name: "clone", append: []string{"confidisk.rw=clone"}, clone: true, hydrate: "wait", region: "64K"},
	}
	for _, r := range regions {
		cases = append(cases, bootCase{name: "clone-" + r, clone: true, hydrate: "start", region: r,
			append: []string{"confidisk.rw=clone", "confidisk.clone-region-size=" + r, "confidisk.clone-hydration=0"}})
	}
	return cases
}

// bootOrder runs the boot-time modes runs times, interleaved (a slow spell
// of the machine then hits every mode alike; a repeated clone boot does not
// wait for its hydration), then the hydration cases once.
func bootOrder(cases []bootCase, runs int) []bootCase {
	var order []bootCase
	for i := range runs {
		for _, c := range cases[:3] {
			if i > 0 && c.hydrate == "wait" {
				c.hydrate = ""
			}
			order = append(order, c)
		}
	}
	return append(order, cases[3:]...)
}

// reportBoots prints the boot-time table, the ratios and each mode's
// checkpoints.
func reportBoots(cases []bootCase, results map[string][]measured) {
	fmt.Printf("\n`confidisk boot` start to mounted read-write root, seconds: its \"reached mounted\" checkpoint (0.1 s steps;\n" +
		"median and range of the runs) and the whole command timed by the guest (/proc/uptime)\n")
	fmt.Printf("  %-44s %4s %17s %8s %10s\n", "mode", "runs", "mounted", "command", "vs overlay")
	ov := median(results["overlay"], "mounted")
	for _, c := range cases {
		ms := results[c.name]
		rng := ""
		if lo, hi := spread(ms, "mounted"); len(ms) > 1 {
			rng = fmt.Sprintf("(%.1f–%.1f)", lo, hi)
		}
		fmt.Printf("  %-44s %4d %5.1f %11s %8.2f %9.2fx\n", c.label(), len(ms), median(ms, "mounted"), rng,
			median(ms, "boot-command"), median(ms, "mounted")/ov)
	}
	cl, cp := median(results["clone"], "mounted"), median(results["copy"], "mounted")
	fmt.Printf("  clone / overlay = %.2f (command: %.2f; issue 18's bar: within 10 %%, ≤ 1.10); copy / clone = %.1fx (command: %.1fx)\n",
		cl/ov, median(results["clone"], "boot-command")/median(results["overlay"], "boot-command"),
		cp/cl, median(results["copy"], "boot-command")/median(results["clone"], "boot-command"))
	fmt.Printf("\nCheckpoints of each mode's first run (seconds since the start of confidisk boot):\n")
	for _, c := range cases[:3] {
		var pts []string
		for _, p := range results[c.name][0].points {
			pts = append(pts, p[0]+" "+p[1])
		}
		fmt.Printf("  %-8s %s\n", c.name, strings.Join(pts, ", "))
	}
}

// label names c in the boot-time table.
func (c bootCase) label() string {
	if !c.clone {
		return "confidisk.rw=" + c.name
	}
	hyd := "hydrating"
	if c.hydrate == "start" {
		hyd = "paused"
	}
	return fmt.Sprintf("confidisk.rw=clone, %s, %s", c.region, hyd)
}

// reportHydration prints the hydration throughput of each region size.
func reportHydration(cases []bootCase, results map[string][]measured, rootMiB int) {
	rootBytes := float64(int64(rootMiB) << 20)
	fmt.Printf("\nHydration of the whole %d MiB root (every region, used or not), `confidisk clone start` to the end of\n"+
		"`confidisk clone wait --interval 0.25s`, on a clone booted with confidisk.clone-hydration=0, batch 32 regions:\n", rootMiB)
	fmt.Printf("  %-10s %9s %9s\n", "region", "seconds", "MB/s")
	for _, c := range cases[3:] {
		s := results[c.name][0].times["hydration"]
		fmt.Printf("  %-10s %9.1f %9.1f\n", c.region, s, rootBytes/1e6/s)
	}
	if s := results["clone"][0].times["hydrated-after-boot-start"]; s > 0 {
		fmt.Printf("  default clone boot (64K, hydration started by the boot): hydrated %.1f s after `confidisk boot` started\n", s)
	}
}

// value is a checkpoint's time, or else a TIME's, of m.
func (m measured) value(key string) float64 {
	if v := m.at(key); v > 0 {
		return v
	}
	return m.times[key]
}

// median is the median of key over ms (the lower middle one of an even
// count).
func median(ms []measured, key string) float64 {
	v := values(ms, key)
	return v[(len(v)-1)/2]
}

// spread is the smallest and largest value of key over ms.
func spread(ms []measured, key string) (float64, float64) {
	v := values(ms, key)
	return v[0], v[len(v)-1]
}

func values(ms []measured, key string) []float64 {
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = m.value(key)
	}
	slices.Sort(v)
	return v
}

var (
	pointRE  = regexp.MustCompile(`confidisk boot: reached (\S+) after ([0-9.]+)s`)
	timeRE   = regexp.MustCompile(`TIME (\S+) (\d+)`)
	statusRE = regexp.MustCompile(`/dev/mapper/rwroot: [^\r\n]*`)
)

// bootOnce boots c on a fresh copy of d in dir with a fresh vTPM.
func bootOnce(ctx context.Context, k *lab.KernelInfo, ko, guest string, d *disk.Disk, dir string, c bootCase, sum string) (measured, error) {
	var m measured
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return m, err
	}
	img := filepath.Join(dir, "disk.img")
	if out, err := exec.Command("cp", "--sparse=always", d.Path, img).CombinedOutput(); err != nil {
		return m, fmt.Errorf("copy the disk: %v: %s", err, out)
	}
	defer os.Remove(img)
	// The copy's dirty pages written back before the boot, not during it.
	if f, err := os.OpenFile(img, os.O_RDWR, 0); err == nil {
		f.Sync()
		f.Close()
	}
	mach, err := lab.NewMachine(dir, k, lab.Disk{Path: img})
	if err != nil {
		return m, err
	}
	ir := lab.Initramfs{Modules: lab.DefaultModules(), Files: map[string]string{"/bin/confidisk": guest},
		Tools: []string{"mkfs.ext4"}, Init: bootScript(c, sum)}
	if c.clone {
		ir.DMClone = ko
	}
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := ir.Build(ctx, k, initrd); err != nil {
		return m, err
	}
	bctx, cancel := context.WithTimeout(ctx, 25*time.Minute)
	defer cancel()
	var out strings.Builder
	res, err := mach.Boot(bctx, lab.BootOptions{Initrd: initrd, Append: append(d.Cmdline(), c.append...), Console: &out})
	if err != nil {
		return m, fmt.Errorf("%v; console:\n%s", err, tail(out.String()))
	}
	if f := res.Failed(); len(f) > 0 || res.ExitStatus != 0 {
		return m, fmt.Errorf("failed checks %v (exit status %d); console:\n%s", f, res.ExitStatus, tail(out.String()))
	}
	m.accel = res.Accel
	m.times = map[string]float64{}
	for _, mm := range pointRE.FindAllStringSubmatch(out.String(), -1) {
		m.points = append(m.points, [2]string{mm[1], mm[2]})
	}
	for _, mm := range timeRE.FindAllStringSubmatch(out.String(), -1) {
		var v float64
		fmt.Sscan(mm[2], &v)
		m.times[mm[1]] = v / 1000
	}
	if m.at("mounted") == 0 {
		return m, fmt.Errorf("no \"reached mounted\" line; console:\n%s", tail(out.String()))
	}
	if c.clone {
		if st := statusRE.FindAllString(out.String(), -1); len(st) > 0 {
			fmt.Fprintf(os.Stderr, "rwlab: %s: %s\n", c.name, st[len(st)-1])
		}
	}
	return m, nil
}

// tail is the last 40 lines of a console.
func tail(s string) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-40):], "\n")
}
