package initrd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Modules is a kernel's module tree: lib/modules/<Version> as depmod left
// it (modules.dep, modules.builtin, modules.alias).
type Modules struct {
	// Version is the kernel release (uname -r).
	Version string
	// Dir is the lib/modules/<Version> directory.
	Dir string
	// CacheDir, when set, keeps decompressed modules between builds
	// (xz -d of a hundred modules takes a second or two).
	CacheDir string

	byName  map[string]string   // normalised name -> relative path (as in modules.dep)
	deps    map[string][]string // relative path -> relative paths of its dependencies
	builtin map[string]bool     // normalised names
}

// ModulePlan lists module files (relative paths as in modules.dep).
type ModulePlan struct {
	// Load are loaded by /init, dependencies first.
	Load []string
	// Ship are every module file in the archive, sorted.
	Ship []string
}

// ModuleName normalises a module name or path: base name without the .ko
// suffixes, with '-' turned into '_' as the kernel does.
func ModuleName(s string) string {
	s = path.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// GuestModulePath is where the uncompressed module rel of kernel version
// lives in the initramfs.
func GuestModulePath(version, rel string) string {
	return path.Join("/lib/modules", version, strings.TrimSuffix(rel, ".xz"))
}

// LoadModules reads the module index of the kernel version whose module
// tree is dir.
func LoadModules(version, dir string) (*Modules, error) {
	m := &Modules{Version: version, Dir: dir, byName: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	err := eachLine(filepath.Join(dir, "modules.dep"), func(line string) {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return
		}
		m.byName[ModuleName(mod)] = mod
		m.deps[mod] = strings.Fields(deps)
	})
	if err != nil {
		return nil, err
	}
	err = eachLine(filepath.Join(dir, "modules.builtin"), func(line string) {
		if line = strings.TrimSpace(line); line != "" {
			m.builtin[ModuleName(line)] = true
		}
	})
	if err != nil {
		return nil, err
	}
	return m, nil
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

// Plan resolves the modules to load (names may use '-' or '_'; built-in
// ones are skipped, unknown ones are an error) and the module directories
// (relative, like "kernel/crypto") shipped so that modprobe can load them on
// demand.
func (m *Modules) Plan(names, dirs []string) (ModulePlan, error) {
	var p ModulePlan
	seen := map[string]bool{}
	var visit func(rel string, stack []string) error
	visit = func(rel string, stack []string) error {
		if seen[rel] {
			return nil
		}
		if slices.Contains(stack, rel) {
			return fmt.Errorf("module dependency cycle through %s", rel)
		}
		for _, d := range m.deps[rel] {
			if err := visit(d, append(stack, rel)); err != nil {
				return err
			}
		}
		seen[rel] = true
		p.Load = append(p.Load, rel)
		return nil
	}
	for _, n := range names {
		name := ModuleName(n)
		rel, ok := m.byName[name]
		switch {
		case ok:
			if err := visit(rel, nil); err != nil {
				return p, err
			}
		case m.builtin[name]:
			// Built in: nothing to load.
		default:
			return p, fmt.Errorf("kernel module %q is neither in modules.dep nor in modules.builtin of %s", n, m.Dir)
		}
	}
	p.Ship = m.shipList(p.Load, dirs)
	return p, nil
}

// shipList is load plus every module under dirs, with their dependencies,
// sorted.
func (m *Modules) shipList(load, dirs []string) []string {
	ship := map[string]bool{}
	var add func(rel string)
	add = func(rel string) {
		if ship[rel] {
			return
		}
		ship[rel] = true
		for _, d := range m.deps[rel] {
			add(d)
		}
	}
	for _, rel := range load {
		add(rel)
	}
	for _, d := range dirs {
		prefix := strings.Trim(d, "/") + "/"
		for rel := range m.deps {
			if strings.HasPrefix(rel, prefix) {
				add(rel)
			}
		}
	}
	out := make([]string, 0, len(ship))
	for rel := range ship {
		out = append(out, rel)
	}
	sort.Strings(out)
	return out
}

// AddTo adds the planned module files to a, uncompressed (busybox insmod
// cannot read .ko.xz), and a modules.dep / modules.alias / modules.builtin
// for busybox modprobe.
func (m *Modules) AddTo(ctx context.Context, a *Archive, p ModulePlan) error {
	var dep strings.Builder
	shipped := map[string]bool{}
	for _, rel := range p.Ship {
		if err := m.add(ctx, a, rel); err != nil {
			return err
		}
		shipped[ModuleName(rel)] = true
		fmt.Fprintf(&dep, "%s:", strings.TrimSuffix(rel, ".xz"))
		for _, d := range m.deps[rel] {
			fmt.Fprintf(&dep, " %s", strings.TrimSuffix(d, ".xz"))
		}
		dep.WriteString("\n")
	}
	var alias strings.Builder
	err := eachLine(filepath.Join(m.Dir, "modules.alias"), func(line string) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "alias" && shipped[ModuleName(f[2])] {
			alias.WriteString(line + "\n")
		}
	})
	if err != nil {
		return err
	}
	builtin, err := os.ReadFile(filepath.Join(m.Dir, "modules.builtin"))
	if err != nil {
		return fmt.Errorf("read modules.builtin: %w", err)
	}
	base := path.Join("/lib/modules", m.Version)
	a.File(base+"/modules.dep", 0o644, []byte(dep.String()))
	a.File(base+"/modules.alias", 0o644, []byte(alias.String()))
	a.File(base+"/modules.builtin", 0o644, builtin)
	return nil
}

// add adds the module file rel to a, uncompressed: as a host file (read
// when a is written) when it is not compressed or is in CacheDir, else
// decompressed in memory.
func (m *Modules) add(ctx context.Context, a *Archive, rel string) error {
	guest := GuestModulePath(m.Version, rel)
	if !strings.HasSuffix(rel, ".xz") {
		return a.hostFile(guest, filepath.Join(m.Dir, filepath.FromSlash(rel)), 0o644)
	}
	data, err := m.uncompressed(ctx, rel)
	if err != nil {
		return err
	}
	if m.CacheDir != "" {
		return a.hostFile(guest, filepath.Join(m.CacheDir, filepath.FromSlash(strings.TrimSuffix(rel, ".xz"))), 0o644)
	}
	a.File(guest, 0o644, data)
	return nil
}

// uncompressed returns the module file rel, decompressing .ko.xz with xz
// (kept under CacheDir when it is set).
func (m *Modules) uncompressed(ctx context.Context, rel string) ([]byte, error) {
	src := filepath.Join(m.Dir, filepath.FromSlash(rel))
	if !strings.HasSuffix(rel, ".xz") {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		return data, nil
	}
	var cached string
	if m.CacheDir != "" {
		cached = filepath.Join(m.CacheDir, filepath.FromSlash(strings.TrimSuffix(rel, ".xz")))
		if data, err := os.ReadFile(cached); err == nil {
			return data, nil
		}
	}
	xz, err := LookTool("xz", "xz-utils")
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, xz, "-dc", src).Output()
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", rel, err)
	}
	if cached != "" {
		if err := writeCache(cached, out); err != nil {
			return nil, fmt.Errorf("cache module %s: %w", rel, err)
		}
	}
	return out, nil
}

// writeCache writes data to file through a temporary file and a rename, so
// that concurrent builds never read a partial module.
func writeCache(file string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".ko-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if err := errors.Join(werr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
