package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

// KernelInfo locates an unpacked Debian kernel in the lab cache.
type KernelInfo struct {
	// Version is the kernel release, e.g. "6.12.117+deb12-amd64" (uname -r).
	Version string
	// Vmlinuz is the path of the bootable kernel image.
	Vmlinuz string
	// ModulesDir is lib/modules/<Version> of the unpacked package, with the
	// modules.dep that depmod wrote.
	ModulesDir string
	// Dir is the cache directory of this version; decompressed modules are
	// kept under Dir/ko.
	Dir string
}

// kernelPackageRE matches the package names [Kernel] chooses from; the
// submatch is the kernel release.
var kernelPackageRE = regexp.MustCompile(`^linux-image-(6\.12\.[0-9]+\+deb12-amd64)-unsigned$`)

// DefaultCacheDir returns the lab's cache directory: $CONFIDISK_LAB_CACHE, or
// confidisk-lab under $XDG_CACHE_HOME or ~/.cache. It lies outside the
// repository so that kernels survive `git clean` and are shared by clones.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("CONFIDISK_LAB_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the user cache directory (set CONFIDISK_LAB_CACHE): %w", err)
	}
	return filepath.Join(d, "confidisk-lab"), nil
}

// Kernel returns the newest linux-image-6.12.*+deb12-amd64-unsigned kernel
// that apt knows (or the version pinned by CONFIDISK_LAB_KERNEL), downloading
// and unpacking it into cacheDir/kernel/<version> on first use. An empty
// cacheDir means [DefaultCacheDir].
//
// A version is complete when its "complete" marker exists; the marker is
// written last, and the unpacked tree only gets its final name by rename, so
// an interrupted run is redone. A lock file serialises concurrent callers
// (several test binaries may start at once). A cached version costs one
// `apt-cache search` (about a second); a pinned one costs nothing.
func Kernel(ctx context.Context, cacheDir string) (*KernelInfo, error) {
	if cacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		cacheDir = d
	}
	version, err := kernelVersion(ctx, os.Getenv("CONFIDISK_LAB_KERNEL"))
	if err != nil {
		return nil, err
	}
	base := filepath.Join(cacheDir, "kernel")
	k := kernelAt(base, version)
	err = fillOnce(ctx, k.Dir, filepath.Join(base, version+".lock"), func() error {
		return unpackKernel(ctx, base, version)
	})
	if err != nil {
		return nil, fmt.Errorf("prepare kernel %s: %w", version, err)
	}
	return k, nil
}

// kernelAt describes the cache layout of version under base.
func kernelAt(base, version string) *KernelInfo {
	dir := filepath.Join(base, version)
	return &KernelInfo{
		Version:    version,
		Vmlinuz:    filepath.Join(dir, "root", "boot", "vmlinuz-"+version),
		ModulesDir: filepath.Join(dir, "root", "lib", "modules", version),
		Dir:        dir,
	}
}

// kernelVersion resolves the kernel release to use: the pinned one (a release
// or a full package name) or the newest that apt-cache lists.
func kernelVersion(ctx context.Context, pinned string) (string, error) {
	if pinned != "" {
		v := strings.TrimSuffix(strings.TrimPrefix(pinned, "linux-image-"), "-unsigned")
		if strings.ContainsAny(v, "/ \t") || v == "" {
			return "", fmt.Errorf("CONFIDISK_LAB_KERNEL=%q is not a kernel release like 6.12.117+deb12-amd64", pinned)
		}
		return v, nil
	}
	aptCache, err := lookTool("apt-cache", "apt")
	if err != nil {
		return "", err
	}
	out, err := runOut(ctx, "", aptCache, "search", "--names-only", `^linux-image-6\.12\..*\+deb12-amd64-unsigned$`)
	if err != nil {
		return "", fmt.Errorf("list kernel packages: %w", err)
	}
	v := newestKernel(out)
	if v == "" {
		return "", ErrNoKernelPackage
	}
	return v, nil
}

// newestKernel picks the highest kernel release from `apt-cache search`
// output, comparing like dpkg; "" when there is none.
func newestKernel(aptCacheOutput string) string {
	best := ""
	for _, line := range strings.Split(aptCacheOutput, "\n") {
		name, _, _ := strings.Cut(line, " ")
		m := kernelPackageRE.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		if best == "" || compareVersions(m[1], best) > 0 {
			best = m[1]
		}
	}
	return best
}

// compareVersions compares two version strings with dpkg's algorithm
// (verrevcmp): alternating runs of non-digits, compared character by
// character with '~' before everything and letters before other symbols, and
// runs of digits, compared as numbers. It returns -1, 0 or +1.
func compareVersions(a, b string) int {
	order := func(c byte) int {
		switch {
		case c == '~':
			return -1
		case c >= '0' && c <= '9':
			return 0
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			return int(c)
		default:
			return int(c) + 256
		}
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for a != "" || b != "" {
		for (a != "" && !isDigit(a[0])) || (b != "" && !isDigit(b[0])) {
			var ac, bc int
			if a != "" {
				ac = order(a[0])
			}
			if b != "" {
				bc = order(b[0])
			}
			if ac != bc {
				return sign(ac - bc)
			}
			a, b = a[1:], b[1:]
		}
		for a != "" && a[0] == '0' {
			a = a[1:]
		}
		for b != "" && b[0] == '0' {
			b = b[1:]
		}
		diff := 0
		for a != "" && isDigit(a[0]) && b != "" && isDigit(b[0]) {
			if diff == 0 {
				diff = int(a[0]) - int(b[0])
			}
			a, b = a[1:], b[1:]
		}
		if a != "" && isDigit(a[0]) {
			return 1
		}
		if b != "" && isDigit(b[0]) {
			return -1
		}
		if diff != 0 {
			return sign(diff)
		}
	}
	return 0
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// unpackKernel downloads, unpacks and depmods version into base/version.
// The caller holds the version's lock.
func unpackKernel(ctx context.Context, base, version string) error {
	aptGet, err := lookTool("apt-get", "apt")
	if err != nil {
		return err
	}
	dpkgDeb, err := lookTool("dpkg-deb", "dpkg")
	if err != nil {
		return err
	}
	depmod, err := lookTool("depmod", "kmod")
	if err != nil {
		return err
	}
	final := filepath.Join(base, version)
	tmp := final + ".partial"
	for _, d := range []string{tmp, final} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove stale %s: %w", d, err)
		}
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	pkg := "linux-image-" + version + "-unsigned"
	if _, err := runOut(ctx, tmp, aptGet, "download", pkg); err != nil {
		return fmt.Errorf("download %s (is it known to apt? try `apt-get update`): %w", pkg, err)
	}
	debs, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(debs) != 1 {
		return fmt.Errorf("apt-get download left %d .deb files in %s, want 1", len(debs), tmp)
	}
	root := filepath.Join(tmp, "root")
	if _, err := runOut(ctx, "", dpkgDeb, "-x", debs[0], root); err != nil {
		return fmt.Errorf("unpack %s: %w", debs[0], err)
	}
	if err := os.Remove(debs[0]); err != nil {
		return fmt.Errorf("remove downloaded package: %w", err)
	}
	k := kernelAt(base, version)
	rel := func(p string) string { r, _ := filepath.Rel(final, p); return filepath.Join(tmp, r) }
	if !fileExists(rel(k.Vmlinuz)) {
		return fmt.Errorf("package %s has no boot/vmlinuz-%s", pkg, version)
	}
	if !fileExists(filepath.Join(rel(k.ModulesDir), "modules.builtin")) {
		return fmt.Errorf("package %s has no lib/modules/%s/modules.builtin", pkg, version)
	}
	if _, err := runOut(ctx, "", depmod, "-b", root, version); err != nil {
		return fmt.Errorf("depmod: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), []byte(pkg+"\n"), 0o644); err != nil {
		return fmt.Errorf("write complete marker: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("move unpacked kernel into place: %w", err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can end the
// wait, and returns the function that releases it.
// fillOnce makes sure that the cache directory dir is complete — its
// "complete" marker, which fill writes last, exists — calling fill when it
// is not, under the lock file lock, so that concurrent callers (other test
// processes) fill it once and the others use what it made.
func fillOnce(ctx context.Context, dir, lock string, fill func() error) error {
	if fileExists(filepath.Join(dir, "complete")) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
		return fmt.Errorf("create cache: %w", err)
	}
	unlock, err := lockFile(ctx, lock)
	if err != nil {
		return err
	}
	defer unlock()
	if fileExists(filepath.Join(dir, "complete")) {
		return nil // another process finished it while we waited
	}
	return fill()
}

func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := sleepCtx(ctx, pollInterval); err != nil {
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, err)
		}
	}
}

// runOut runs a command in dir and returns its standard output; the error
// carries the tail of its standard error.
func runOut(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, tail(stderr.String(), 5))
	}
	return stdout.String(), nil
}

// tail returns the last n lines of s, joined by "\n".
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
