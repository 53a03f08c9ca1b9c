package lab

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultModules returns the kernel modules the project's scenarios need:
// device-mapper targets, the file systems, the virtio disk and network
// devices and the TPM drivers. Names may use '-' or '_'; those built into
// the kernel are skipped.
func DefaultModules() []string {
	return []string{"dm-mod", "dm-verity", "dm-crypt", "dm-integrity", "overlay", "erofs", "ext4", "virtio_blk", "virtio_net", "tpm_crb", "tpm_tis", "loop"}
}

// DefaultModuleDirs returns the module subtrees shipped (but not loaded) so
// that the kernel can load crypto algorithms on demand through busybox
// modprobe, e.g. xts or authenc when dm-crypt asks for them.
func DefaultModuleDirs() []string {
	return []string{"kernel/crypto", "kernel/arch/x86/crypto", "kernel/lib/crypto"}
}

// Initramfs describes the contents of a lab initramfs.
type Initramfs struct {
	// Modules are loaded by /init, with their dependencies from modules.dep,
	// in dependency order. A name that is built into the kernel is skipped;
	// one that is neither a module nor built in is an error.
	Modules []string
	// ModuleDirs are subtrees of the module directory (relative, like
	// "kernel/crypto") shipped with their dependencies so that modprobe can
	// load them on demand. nil means [DefaultModuleDirs]; use an empty slice
	// for none.
	ModuleDirs []string
	// Files maps a guest path to a host path of a regular file to copy
	// there (with its permission bits), e.g. "/bin/confidisk".
	Files map[string]string
	// Tools are host programs (names found in PATH, or absolute paths)
	// copied to the same path in the guest together with the shared
	// libraries and dynamic loader that ldd lists for them.
	Tools []string
	// Init is the scenario script, run by /init after [Preamble] in a
	// subshell; its exit status is reported on the LAB-DONE line.
	Init string
}

// node is one entry of the archive being assembled.
type node struct {
	mode   fs.FileMode // type bits and permissions
	data   []byte
	target string // symlinks
	major  uint32 // devices
	minor  uint32
}

// tree is the archive's contents by guest path (absolute, clean).
type tree map[string]node

func (t tree) file(p string, perm fs.FileMode, data []byte) {
	t[path.Clean("/"+p)] = node{mode: perm, data: data}
}

func (t tree) symlink(p, target string) {
	t[path.Clean("/"+p)] = node{mode: fs.ModeSymlink | 0o777, target: target}
}

// hostFile copies the host file at src to guest path p.
func (t tree) hostFile(p, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("add %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("add %s: %s is not a regular file", p, src)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("add %s: %w", p, err)
	}
	t.file(p, fi.Mode().Perm(), data)
	return nil
}

// write writes the tree as a newc archive to path out, creating every
// missing parent directory first.
func (t tree) write(out string) (err error) {
	all := map[string]node{}
	for p, n := range t {
		all[p] = n
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = node{mode: fs.ModeDir | 0o755}
			}
		}
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close initramfs: %w", cerr)
		}
	}()
	w := NewCPIOWriter(f)
	for _, p := range names {
		n := all[p]
		switch {
		case n.mode.IsDir():
			err = w.Dir(p, n.mode)
		case n.mode&fs.ModeSymlink != 0:
			err = w.Symlink(p, n.target)
		case n.mode&fs.ModeCharDevice != 0:
			err = w.CharDevice(p, n.mode, n.major, n.minor)
		default:
			err = w.File(p, n.mode, n.data)
		}
		if err != nil {
			return err
		}
	}
	return w.Close()
}

// Build writes the initramfs for kernel k to the file out.
func (i *Initramfs) Build(ctx context.Context, k *KernelInfo, out string) error {
	t := tree{}
	bb, err := staticBusybox()
	if err != nil {
		return err
	}
	if err := t.hostFile("/bin/busybox", bb); err != nil {
		return err
	}
	applets, err := runOut(ctx, "", bb, "--list-full")
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	for _, a := range strings.Fields(applets) {
		if a != "bin/busybox" {
			t.symlink(a, "/bin/busybox")
		}
	}
	t[("/dev")] = node{mode: fs.ModeDir | 0o755}
	t["/dev/console"] = node{mode: fs.ModeCharDevice | 0o600, major: 5, minor: 1}
	for _, d := range []string{"/proc", "/sys", "/tmp", "/run", "/mnt", "/root", "/etc"} {
		t[d] = node{mode: fs.ModeDir | 0o755}
	}

	mods, err := loadModuleIndex(k)
	if err != nil {
		return err
	}
	dirs := i.ModuleDirs
	if dirs == nil {
		dirs = DefaultModuleDirs()
	}
	plan, err := mods.plan(i.Modules, dirs)
	if err != nil {
		return err
	}
	if err := mods.addTo(ctx, t, k, plan); err != nil {
		return err
	}

	// Debian's busybox-static runs its own applet for any name it knows,
	// whatever PATH says (FEATURE_SH_STANDALONE); a shell function wins over
	// applets, so tools that share a name with one get a function.
	isApplet := map[string]bool{}
	for _, a := range strings.Fields(applets) {
		isApplet[path.Base(a)] = true
	}
	var funcs strings.Builder
	for _, tool := range i.Tools {
		p, err := addTool(ctx, t, tool)
		if err != nil {
			return err
		}
		if name := path.Base(p); isApplet[name] {
			fmt.Fprintf(&funcs, "%s() { %s \"$@\"; }\n", name, p)
		}
	}
	t.file("/lab/tools.sh", 0o644, []byte(funcs.String()))
	for guest, host := range i.Files {
		if err := t.hostFile(guest, host); err != nil {
			return err
		}
	}
	t.file("/init", 0o755, []byte(initScript(k.Version, plan.load)))
	t.file("/lab/preamble.sh", 0o644, []byte(Preamble))
	t.file("/lab/scenario.sh", 0o755, []byte(i.Init))
	return t.write(out)
}

// moduleIndex is what modules.dep and modules.builtin say about a kernel.
type moduleIndex struct {
	dir     string
	byName  map[string]string   // normalised name -> relative path (as in modules.dep)
	deps    map[string][]string // relative path -> relative paths of its dependencies
	builtin map[string]bool     // normalised names
}

// moduleName normalises a module name or path: base name without the .ko
// suffixes, with '-' turned into '_' as the kernel does.
func moduleName(s string) string {
	s = path.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

func loadModuleIndex(k *KernelInfo) (*moduleIndex, error) {
	idx := &moduleIndex{dir: k.ModulesDir, byName: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	err := eachLine(filepath.Join(k.ModulesDir, "modules.dep"), func(line string) {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return
		}
		idx.byName[moduleName(mod)] = mod
		idx.deps[mod] = strings.Fields(deps)
	})
	if err != nil {
		return nil, err
	}
	err = eachLine(filepath.Join(k.ModulesDir, "modules.builtin"), func(line string) {
		if line = strings.TrimSpace(line); line != "" {
			idx.builtin[moduleName(line)] = true
		}
	})
	if err != nil {
		return nil, err
	}
	return idx, nil
}

func eachLine(file string, fn func(string)) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("read module index: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		fn(s.Text())
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return nil
}

// modulePlan lists module files (relative paths as in modules.dep).
type modulePlan struct {
	load []string // loaded by /init, dependencies first
	ship []string // every module file in the archive, sorted
}

// plan resolves the requested modules and module directories.
func (idx *moduleIndex) plan(names, dirs []string) (modulePlan, error) {
	var p modulePlan
	seen := map[string]bool{}
	var visit func(rel string, stack []string) error
	visit = func(rel string, stack []string) error {
		if seen[rel] {
			return nil
		}
		for _, s := range stack {
			if s == rel {
				return fmt.Errorf("module dependency cycle through %s", rel)
			}
		}
		for _, d := range idx.deps[rel] {
			if err := visit(d, append(stack, rel)); err != nil {
				return err
			}
		}
		seen[rel] = true
		p.load = append(p.load, rel)
		return nil
	}
	for _, n := range names {
		name := moduleName(n)
		rel, ok := idx.byName[name]
		switch {
		case ok:
			if err := visit(rel, nil); err != nil {
				return p, err
			}
		case idx.builtin[name]:
			// Built in: nothing to load.
		default:
			return p, fmt.Errorf("kernel module %q is neither in modules.dep nor in modules.builtin of %s", n, idx.dir)
		}
	}
	ship := map[string]bool{}
	var addShip func(rel string)
	addShip = func(rel string) {
		if ship[rel] {
			return
		}
		ship[rel] = true
		for _, d := range idx.deps[rel] {
			addShip(d)
		}
	}
	for _, rel := range p.load {
		addShip(rel)
	}
	for _, d := range dirs {
		prefix := strings.Trim(d, "/") + "/"
		for rel := range idx.deps {
			if strings.HasPrefix(rel, prefix) {
				addShip(rel)
			}
		}
	}
	for rel := range ship {
		p.ship = append(p.ship, rel)
	}
	sort.Strings(p.ship)
	return p, nil
}

// guestModulePath is where the uncompressed module rel lives in the guest.
func guestModulePath(version, rel string) string {
	return path.Join("/lib/modules", version, strings.TrimSuffix(rel, ".xz"))
}

// addTo adds the planned module files, uncompressed (busybox insmod cannot
// read .ko.xz), and a modules.dep / modules.alias / modules.builtin for
// busybox modprobe.
func (idx *moduleIndex) addTo(ctx context.Context, t tree, k *KernelInfo, p modulePlan) error {
	var dep strings.Builder
	shipped := map[string]bool{}
	for _, rel := range p.ship {
		data, err := uncompressedModule(ctx, k, rel)
		if err != nil {
			return err
		}
		t.file(guestModulePath(k.Version, rel), 0o644, data)
		shipped[moduleName(rel)] = true
		fmt.Fprintf(&dep, "%s:", strings.TrimSuffix(rel, ".xz"))
		for _, d := range idx.deps[rel] {
			fmt.Fprintf(&dep, " %s", strings.TrimSuffix(d, ".xz"))
		}
		dep.WriteString("\n")
	}
	var alias strings.Builder
	err := eachLine(filepath.Join(k.ModulesDir, "modules.alias"), func(line string) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "alias" && shipped[moduleName(f[2])] {
			alias.WriteString(line + "\n")
		}
	})
	if err != nil {
		return err
	}
	builtin, err := os.ReadFile(filepath.Join(k.ModulesDir, "modules.builtin"))
	if err != nil {
		return fmt.Errorf("read modules.builtin: %w", err)
	}
	base := path.Join("/lib/modules", k.Version)
	t.file(base+"/modules.dep", 0o644, []byte(dep.String()))
	t.file(base+"/modules.alias", 0o644, []byte(alias.String()))
	t.file(base+"/modules.builtin", 0o644, builtin)
	return nil
}

// uncompressedModule returns the module file rel, decompressing .ko.xz with
// xz once and keeping the result under k.Dir/ko.
func uncompressedModule(ctx context.Context, k *KernelInfo, rel string) ([]byte, error) {
	src := filepath.Join(k.ModulesDir, filepath.FromSlash(rel))
	if !strings.HasSuffix(rel, ".xz") {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		return data, nil
	}
	cached := filepath.Join(k.Dir, "ko", filepath.FromSlash(strings.TrimSuffix(rel, ".xz")))
	if data, err := os.ReadFile(cached); err == nil {
		return data, nil
	}
	xz, err := lookTool("xz", "xz-utils")
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, xz, "-dc", src).Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", rel, err)
	}
	if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
		return nil, fmt.Errorf("cache module: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(cached), ".ko-*")
	if err != nil {
		return nil, fmt.Errorf("cache module: %w", err)
	}
	_, werr := tmp.Write(out)
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("cache module %s: write failed", rel)
	}
	if err := os.Rename(tmp.Name(), cached); err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("cache module: %w", err)
	}
	return out, nil
}

// addTool copies a host program and what ldd lists for it, and returns the
// program's path.
func addTool(ctx context.Context, t tree, tool string) (string, error) {
	p := tool
	if !filepath.IsAbs(p) {
		lp, err := exec.LookPath(tool)
		if err != nil {
			if lp, err = lookTool(tool, tool); err != nil {
				return "", fmt.Errorf("add tool %s: not found in PATH", tool)
			}
		}
		p = lp
	}
	if err := t.hostFile(p, p); err != nil {
		return "", fmt.Errorf("add tool: %w", err)
	}
	static, err := isStatic(p)
	if err != nil {
		return p, nil // not ELF (a script): its interpreter must be added separately
	}
	if static {
		return p, nil
	}
	ldd, err := lookTool("ldd", "libc-bin")
	if err != nil {
		return "", err
	}
	out, err := runOut(ctx, "", ldd, p)
	if err != nil {
		return "", fmt.Errorf("add tool %s: %w", tool, err)
	}
	for _, lib := range lddPaths(out) {
		if err := t.hostFile(lib, lib); err != nil {
			return "", fmt.Errorf("add tool %s: %w", tool, err)
		}
	}
	return p, nil
}

// lddPaths returns the absolute library paths in ldd output, including the
// dynamic loader, skipping the vDSO and libraries ldd could not find.
func lddPaths(out string) []string {
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			paths = append(paths, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			paths = append(paths, f[0])
		}
	}
	return paths
}
