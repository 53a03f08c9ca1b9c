package lab

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Debian builds its 6.12 kernel with `# CONFIG_DM_CLONE is not set`
// (drivers/md/Kconfig marks the target EXPERIMENTAL), so the lab builds
// dm-clone.ko itself, out of tree, against Debian's own headers for the
// exact kernel it boots. The module is unsigned: the kernel loads it
// (tainted) only without lockdown, i.e. in the lab's direct kernel boots,
// never under UEFI Secure Boot (CONFIG_LOCK_DOWN_IN_EFI_SECURE_BOOT=y).

// DMCloneModule returns the path of dm-clone.ko built for kernel k, building
// it on first use into cacheDir/dm-clone/<k.Version>/dm-clone.ko (an empty
// cacheDir means [DefaultCacheDir]).
//
// The build downloads (apt-get download, nothing is installed) the
// kernel's linux-source, linux-headers (flavour and common) and linux-kbuild
// packages at the Debian version of the unpacked kernel, unpacks the
// headers with dpkg-deb, takes only the dm-clone sources and the
// device-mapper headers they include from the source tarball, runs
// `make M=` with the kernel's compiler (gcc-12, checked against
// CONFIG_CC_VERSION_TEXT), strips the debug information and checks that
// the module's vermagic equals that of the kernel's own modules. The
// downloaded packages (about 170 MB) are deleted afterwards. As for
// [Kernel], the result counts only once its "complete" marker is written
// (after the build directory got its final name by rename), and a lock
// file serialises concurrent callers. A missing host tool is a
// *[MissingToolError].
func DMCloneModule(ctx context.Context, cacheDir string, k *KernelInfo) (string, error) {
	if cacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return "", err
		}
		cacheDir = d
	}
	base := filepath.Join(cacheDir, "dm-clone")
	dir := filepath.Join(base, k.Version)
	ko := filepath.Join(dir, "dm-clone.ko")
	err := fillOnce(ctx, dir, filepath.Join(base, k.Version+".lock"), func() error {
		return buildDMClone(ctx, base, k)
	})
	if err != nil {
		return "", fmt.Errorf("build dm-clone.ko for kernel %s: %w", k.Version, err)
	}
	return ko, nil
}

// TestDMCloneModule returns dm-clone.ko for kernel k from the default
// cache, building it on first use (about half a minute), and reports
// missing host tools through [testutil.Missing] (a skip locally, a failure
// under CI=true).
func TestDMCloneModule(t testing.TB, k *KernelInfo) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	cached := dmCloneCached("", k)
	ko, err := DMCloneModule(ctx, "", k)
	if err != nil {
		missingOrFatal(t, err)
	}
	if !cached {
		t.Logf("lab: built %s in %.1fs", ko, time.Since(start).Seconds())
	}
	return ko
}

// dmCloneCached reports whether dm-clone.ko for k is in the cache already.
func dmCloneCached(cacheDir string, k *KernelInfo) bool {
	if cacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return false
		}
		cacheDir = d
	}
	return fileExists(filepath.Join(cacheDir, "dm-clone", k.Version, "complete"))
}

// dmCloneTools are the host programs the build runs, with their packages.
type dmCloneTools struct {
	aptGet, dpkgDeb, xz, make, strip, cc string
}

func lookDMCloneTools(ccName string) (*dmCloneTools, error) {
	var t dmCloneTools
	for _, x := range []struct {
		dst       *string
		tool, pkg string
	}{
		{&t.aptGet, "apt-get", "apt"}, {&t.dpkgDeb, "dpkg-deb", "dpkg"}, {&t.xz, "xz", "xz-utils"},
		{&t.make, "make", "make"}, {&t.strip, "strip", "binutils"}, {&t.cc, ccName, compilerPackage(ccName)},
		// The headers' kbuild runs pahole for the module's BTF
		// (CONFIG_DEBUG_INFO_BTF_MODULES).
		{new(string), "pahole", "pahole"},
	} {
		p, err := lookTool(x.tool, x.pkg)
		if err != nil {
			return nil, err
		}
		*x.dst = p
	}
	return &t, nil
}

// compilerPackage is the Debian package of a compiler command, e.g.
// x86_64-linux-gnu-gcc-12 → gcc-12.
func compilerPackage(cc string) string {
	if i := strings.Index(cc, "-linux-gnu-"); i >= 0 {
		return cc[i+len("-linux-gnu-"):]
	}
	return cc
}

// buildDMClone builds dm-clone.ko for k into base/<k.Version>. The caller
// holds the version's lock.
func buildDMClone(ctx context.Context, base string, k *KernelInfo) (err error) {
	start := time.Now()
	ccText, err := kernelConfigString(filepath.Join(filepath.Dir(k.Vmlinuz), "config-"+k.Version), "CONFIG_CC_VERSION_TEXT")
	if err != nil {
		return err
	}
	ccName, _, _ := strings.Cut(ccText, " ")
	tools, err := lookDMCloneTools(ccName)
	if err != nil {
		return err
	}
	ccVersion, err := runOut(ctx, "", tools.cc, "--version")
	if err != nil {
		return err
	}
	if err := checkCompiler(ccText, ccVersion); err != nil {
		return err
	}
	debVersion, err := kernelDebianVersion(ctx, k)
	if err != nil {
		return err
	}
	pkgs, err := kernelBuildPackages(k.Version, debVersion)
	if err != nil {
		return err
	}
	wantMagic, err := kernelVermagic(ctx, tools.xz, k)
	if err != nil {
		return err
	}

	final := filepath.Join(base, k.Version)
	tmp := final + ".partial"
	for _, d := range []string{tmp, final} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove stale %s: %w", d, err)
		}
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp) // the downloads are 170 MB; the error says what failed
		}
	}()
	debs, root, src := filepath.Join(tmp, "debs"), filepath.Join(tmp, "root"), filepath.Join(tmp, "src")
	for _, d := range []string{debs, root, src} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	args := []string{"download"}
	for _, p := range pkgs {
		args = append(args, p.Name+"="+p.Version)
	}
	if _, err := runOut(ctx, debs, tools.aptGet, args...); err != nil {
		return fmt.Errorf("download the kernel's source, headers and kbuild (known to apt? try `apt-get update`): %w", err)
	}
	t0 := time.Now()
	var sourceDeb string
	for _, p := range pkgs {
		deb, err := downloadedDeb(debs, p.Name)
		if err != nil {
			return err
		}
		if p.Source {
			sourceDeb = deb
			continue
		}
		if _, err := runOut(ctx, "", tools.dpkgDeb, "-x", deb, root); err != nil {
			return fmt.Errorf("unpack %s: %w", filepath.Base(deb), err)
		}
	}
	headers := filepath.Join(root, "usr", "src", "linux-headers-"+k.Version)
	if err := rewriteHeadersMakefile(filepath.Join(headers, "Makefile"), root); err != nil {
		return err
	}
	series := kernelSeries(k.Version)
	if err := extractDMCloneSources(ctx, tools, sourceDeb, series, src); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "Kbuild"), []byte(dmCloneKbuild), 0o644); err != nil {
		return err
	}
	t1 := time.Now()
	if _, err := runOut(ctx, "", tools.make, "-C", headers, "M="+src, "-j"+strconv.Itoa(runtime.NumCPU())); err != nil {
		return fmt.Errorf("make dm-clone.ko: %w", err)
	}
	t2 := time.Now()
	ko := filepath.Join(tmp, "dm-clone.ko")
	if _, err := runOut(ctx, "", tools.strip, "--strip-debug", "-o", ko, filepath.Join(src, "dm-clone.ko")); err != nil {
		return err
	}
	info, err := moduleInfo(ko)
	if err != nil {
		return err
	}
	if err := checkVermagic(info["vermagic"], wantMagic); err != nil {
		return err
	}
	for _, d := range []string{debs, root, src} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	var marker strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&marker, "%s=%s\n", p.Name, p.Version)
	}
	fmt.Fprintf(&marker, "vermagic=%s\ncompiler=%s\ndownload=%.1fs unpack=%.1fs make=%.1fs total=%.1fs\n",
		info["vermagic"], ccText, t0.Sub(start).Seconds(), t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), time.Since(start).Seconds())
	if err := os.WriteFile(filepath.Join(tmp, "complete"), []byte(marker.String()), 0o644); err != nil {
		return fmt.Errorf("write complete marker: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("move dm-clone.ko into place: %w", err)
	}
	return nil
}

// dmCloneKbuild is drivers/md/Makefile's dm-clone part.
const dmCloneKbuild = "obj-m := dm-clone.o\ndm-clone-y := dm-clone-target.o dm-clone-metadata.o\n"

// A buildPackage is one Debian package of a kernel's module build.
type buildPackage struct {
	Name, Version string
	// Source is the linux-source package (the others are unpacked whole).
	Source bool
}

// kernelReleaseRE splits a Debian kernel release: ABI (6.12.118+deb12),
// series (6.12) and flavour (amd64).
var kernelReleaseRE = regexp.MustCompile(`^(([0-9]+\.[0-9]+)\.[0-9]+\+deb[0-9]+)-([a-z0-9]+(?:-[a-z0-9]+)*)$`)

// kernelBuildPackages lists the packages an out-of-tree module build for the
// kernel release (uname -r, e.g. 6.12.118+deb12-amd64) needs, all at the
// kernel's Debian version (e.g. 6.12.118-1~deb12u1): linux-source-6.12,
// linux-headers-6.12.118+deb12-amd64, linux-headers-6.12.118+deb12-common
// and linux-kbuild-6.12.118+deb12.
func kernelBuildPackages(release, debVersion string) ([]buildPackage, error) {
	m := kernelReleaseRE.FindStringSubmatch(release)
	if m == nil {
		return nil, fmt.Errorf("kernel release %q is not a Debian one like 6.12.118+deb12-amd64", release)
	}
	if debVersion == "" || strings.ContainsAny(debVersion, " =/") {
		return nil, fmt.Errorf("bad Debian version %q for kernel %s", debVersion, release)
	}
	abi, series := m[1], m[2]
	return []buildPackage{
		{Name: "linux-source-" + series, Version: debVersion, Source: true},
		{Name: "linux-headers-" + release, Version: debVersion},
		{Name: "linux-headers-" + abi + "-common", Version: debVersion},
		{Name: "linux-kbuild-" + abi, Version: debVersion},
	}, nil
}

// kernelSeries is the major.minor of a kernel release ("6.12").
func kernelSeries(release string) string {
	if m := kernelReleaseRE.FindStringSubmatch(release); m != nil {
		return m[2]
	}
	return ""
}

// kernelDebianVersion is the Debian version of k's package: the first
// entry of the changelog the package ships (exact even when apt lists
// newer uploads of the same ABI), else the highest version apt shows for
// linux-headers-<release>.
func kernelDebianVersion(ctx context.Context, k *KernelInfo) (string, error) {
	changelog := filepath.Join(k.Dir, "root", "usr", "share", "doc", "linux-image-"+k.Version+"-unsigned", "changelog.Debian.gz")
	if f, err := os.Open(changelog); err == nil {
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", changelog, err)
		}
		line, err := bufio.NewReader(zr).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("read %s: %w", changelog, err)
		}
		return changelogVersion(line)
	}
	aptCache, err := lookTool("apt-cache", "apt")
	if err != nil {
		return "", err
	}
	out, err := runOut(ctx, "", aptCache, "show", "linux-headers-"+k.Version)
	if err != nil {
		return "", fmt.Errorf("find the Debian version of kernel %s (try `apt-get update`): %w", k.Version, err)
	}
	v := highestVersion(out)
	if v == "" {
		return "", fmt.Errorf("apt-cache show linux-headers-%s lists no version", k.Version)
	}
	return v, nil
}

// changelogVersion parses a changelog's first line, e.g.
// "linux-6.12 (6.12.118-1~deb12u1) bookworm-security; urgency=high".
func changelogVersion(line string) (string, error) {
	_, rest, ok := strings.Cut(line, " (")
	v, _, ok2 := strings.Cut(rest, ")")
	if !ok || !ok2 || v == "" || strings.ContainsAny(v, " ()") {
		return "", fmt.Errorf("changelog line %q names no version", strings.TrimSpace(line))
	}
	return v, nil
}

// highestVersion picks the highest "Version:" of `apt-cache show` output.
func highestVersion(aptShow string) string {
	best := ""
	for _, line := range strings.Split(aptShow, "\n") {
		v, ok := strings.CutPrefix(line, "Version: ")
		if v = strings.TrimSpace(v); !ok || v == "" {
			continue
		}
		if best == "" || compareVersions(v, best) > 0 {
			best = v
		}
	}
	return best
}

// kernelConfigString returns the value of a string option of a kernel
// .config (the quotes removed).
func kernelConfigString(config, key string) (string, error) {
	data, err := os.ReadFile(config)
	if err != nil {
		return "", fmt.Errorf("read kernel config: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			if s, err := strconv.Unquote(v); err == nil {
				return s, nil
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("%s has no %s", config, key)
}

// checkCompiler compares the kernel's CONFIG_CC_VERSION_TEXT, e.g.
// "x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", with the
// first line of the host compiler's --version. The compiler and its
// upstream version (the last word) must be the same; a different Debian
// revision of the same gcc release is accepted (the module's vermagic and
// symbol CRCs are what the kernel checks).
func checkCompiler(configText, hostVersion string) error {
	host, _, _ := strings.Cut(strings.TrimSpace(hostVersion), "\n")
	cf, hf := strings.Fields(configText), strings.Fields(host)
	if len(cf) < 2 || len(hf) < 2 || cf[0] != hf[0] || cf[len(cf)-1] != hf[len(hf)-1] {
		return fmt.Errorf("the kernel was built with %q but the host's compiler is %q: a module built with another compiler may not load (install the kernel's gcc, or pin CONFIDISK_LAB_KERNEL to a kernel built with the host's)", configText, host)
	}
	return nil
}

// kernelVermagic is the vermagic of k's own dm-mod module, which an
// out-of-tree module must match.
func kernelVermagic(ctx context.Context, xz string, k *KernelInfo) (string, error) {
	rel := filepath.Join(k.ModulesDir, "kernel", "drivers", "md", "dm-mod.ko")
	var data []byte
	var err error
	if fileExists(rel) {
		data, err = os.ReadFile(rel)
	} else {
		data, err = exec.CommandContext(ctx, xz, "-dc", rel+".xz").Output()
	}
	if err != nil {
		return "", fmt.Errorf("read the kernel's dm-mod module: %w", err)
	}
	info, err := modinfoOf(bytes.NewReader(data))
	if err != nil {
		return "", fmt.Errorf("dm-mod.ko: %w", err)
	}
	if info["vermagic"] == "" {
		return "", errors.New("the kernel's dm-mod.ko has no vermagic")
	}
	return info["vermagic"], nil
}

// checkVermagic compares a built module's vermagic with the kernel's.
func checkVermagic(got, want string) error {
	if got != want {
		return fmt.Errorf("dm-clone.ko has vermagic %q, the kernel's modules %q: the kernel would refuse it", got, want)
	}
	return nil
}

// vermagicRelease is the kernel release a vermagic names (its first word).
func vermagicRelease(vermagic string) string {
	f := strings.Fields(vermagic)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// moduleInfo reads the .modinfo section of the uncompressed module file ko.
func moduleInfo(ko string) (map[string]string, error) {
	f, err := os.Open(ko)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := modinfoOf(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ko, err)
	}
	return info, nil
}

func modinfoOf(r io.ReaderAt) (map[string]string, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("not a kernel module: %w", err)
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, errors.New("no .modinfo section")
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	return parseModinfo(data), nil
}

// parseModinfo parses a .modinfo section: NUL-separated key=value strings
// (the first value wins for keys that repeat, like alias and parm).
func parseModinfo(data []byte) map[string]string {
	info := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok || k == "" {
			continue
		}
		if _, seen := info[k]; !seen {
			info[k] = v
		}
	}
	return info
}

// moduleDepends is the module names of a .modinfo "depends" value.
func moduleDepends(depends string) []string {
	var out []string
	for _, d := range strings.Split(depends, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// downloadedDeb finds the .deb of package name that apt-get download left
// in dir.
func downloadedDeb(dir, name string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download left %d .deb files of %s in %s, want 1", len(m), name, dir)
	}
	return m[0], nil
}

// rewriteHeadersMakefile points the flavour headers' Makefile, one line
// "include /usr/src/linux-headers-…-common/Makefile", at the common
// headers unpacked under root.
func rewriteHeadersMakefile(makefile, root string) error {
	data, err := os.ReadFile(makefile)
	if err != nil {
		return fmt.Errorf("read the headers' Makefile: %w", err)
	}
	out, n := rewriteIncludes(string(data), root)
	if n == 0 {
		return fmt.Errorf("%s has no `include /usr/src/…` line to point at the unpacked headers", makefile)
	}
	return os.WriteFile(makefile, []byte(out), 0o644)
}

// rewriteIncludes prefixes root to the absolute /usr/src/ path of every
// include line of a Makefile, returning the result and how many it changed.
func rewriteIncludes(makefile, root string) (string, int) {
	lines := strings.Split(makefile, "\n")
	n := 0
	for i, l := range lines {
		if p, ok := strings.CutPrefix(l, "include /usr/src/"); ok {
			lines[i] = "include " + filepath.Join(root, "usr", "src") + "/" + p
			n++
		}
	}
	return strings.Join(lines, "\n"), n
}

// dmCloneSources are the files of drivers/md the module build needs: the
// target itself and the headers it includes (dm.h includes dm-stats.h; the
// metadata code includes the persistent-data headers, all taken).
var dmCloneSources = []string{"dm-clone-target.c", "dm-clone-metadata.c", "dm-clone-metadata.h", "dm.h", "dm-stats.h",
	"persistent-data/dm-bitset.h", "persistent-data/dm-array.h", "persistent-data/dm-btree.h", "persistent-data/dm-block-manager.h",
	"persistent-data/dm-space-map.h", "persistent-data/dm-transaction-manager.h", "persistent-data/dm-space-map-metadata.h"}

// dmCloneSource reports whether rel, a path under drivers/md/, is extracted.
func dmCloneSource(rel string) bool {
	dir, name := path.Split(rel)
	switch dir {
	case "":
		return strings.HasPrefix(name, "dm-clone") || name == "dm.h" || name == "dm-stats.h"
	case "persistent-data/":
		return strings.HasSuffix(name, ".h")
	}
	return false
}

// extractDMCloneSources writes the dm-clone sources of the linux-source
// package deb (series e.g. "6.12") into dir, keeping their paths under
// drivers/md. The source tarball (150 MB of xz) is streamed, not stored:
// dpkg-deb gives the package's data, the tarball is decompressed by xz on
// every core, and reading stops once drivers/md is behind (the tarball is
// sorted by name) and every file needed was seen.
func extractDMCloneSources(ctx context.Context, tools *dmCloneTools, deb, series, dir string) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	outer := killGroupOnCancel(exec.CommandContext(ctx, tools.dpkgDeb, "--fsys-tarfile", deb))
	outerOut, err := outer.StdoutPipe()
	if err != nil {
		return err
	}
	var outerErr bytes.Buffer
	outer.Stderr = &outerErr
	if err := outer.Start(); err != nil {
		return err
	}
	// stopped: the rest of the stream is not needed. On that or an
	// error the commands are killed (cancel) rather than drained.
	stopped := false
	defer func() {
		if stopped || err != nil {
			cancel()
		} else {
			io.Copy(io.Discard, outerOut) // the tar's end padding
		}
		werr := outer.Wait()
		if err == nil && !stopped && werr != nil {
			err = fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", filepath.Base(deb), werr, tail(outerErr.String(), 3))
		}
	}()
	member := "./usr/src/linux-source-" + series + ".tar.xz"
	tr := tar.NewReader(outerOut)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("%s holds no %s", filepath.Base(deb), member)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", filepath.Base(deb), err)
		}
		if h.Name == member {
			break
		}
	}
	xz := killGroupOnCancel(exec.CommandContext(ctx, tools.xz, "-dc", "-T0"))
	xz.Stdin = tr
	var xzErr bytes.Buffer
	xz.Stderr = &xzErr
	xzOut, err := xz.StdoutPipe()
	if err != nil {
		return err
	}
	if err := xz.Start(); err != nil {
		return err
	}
	defer func() {
		if stopped || err != nil {
			cancel()
		}
		werr := xz.Wait()
		if err == nil && !stopped && werr != nil {
			err = fmt.Errorf("xz -d %s: %w: %s", member, werr, tail(xzErr.String(), 3))
		}
	}()
	prefix := "linux-source-" + series + "/drivers/md/"
	seen := map[string]bool{}
	inMD := false
	complete := func() bool {
		for _, f := range dmCloneSources {
			if !seen[f] {
				return false
			}
		}
		return true
	}
	src := tar.NewReader(xzOut)
	for {
		h, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", member, err)
		}
		rel, ok := strings.CutPrefix(h.Name, prefix)
		if !ok {
			if inMD && complete() {
				stopped = true
				break
			}
			continue
		}
		inMD = true
		if h.Typeflag != tar.TypeReg || !dmCloneSource(rel) {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, cerr := io.Copy(f, src)
		if err := errors.Join(cerr, f.Close()); err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
		seen[rel] = true
	}
	if !complete() {
		var missing []string
		for _, f := range dmCloneSources {
			if !seen[f] {
				missing = append(missing, f)
			}
		}
		return fmt.Errorf("%s lacks drivers/md/%s", member, strings.Join(missing, ", drivers/md/"))
	}
	return nil
}

// killGroupOnCancel makes cmd a process group leader that the end of its
// context kills whole: dpkg-deb decompresses in a child process, which
// would otherwise keep the pipes open (and Wait waiting) after dpkg-deb
// itself is killed. WaitDelay bounds the wait for the pipes anyway.
func killGroupOnCancel(cmd *exec.Cmd) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}
