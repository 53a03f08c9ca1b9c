package initrd

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// MissingToolError reports a host tool a build needs and the Debian package
// that provides it.
type MissingToolError struct {
	// Tool is the command that was not found, e.g. "busybox".
	Tool string
	// Package is the Debian package to install, e.g. "busybox-static".
	Package string
	// Reason says why a tool that exists is not usable; empty when absent.
	Reason string
}

// Error implements error.
func (e *MissingToolError) Error() string {
	what := "not found in PATH"
	if e.Reason != "" {
		what = e.Reason
	}
	return fmt.Sprintf("%s %s: install it with `apt-get install -y %s`", e.Tool, what, e.Package)
}

// LookTool finds tool in PATH or in the sbin directories (which a non-root
// PATH often lacks), or returns a *MissingToolError naming pkg.
func LookTool(tool, pkg string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, tool)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &MissingToolError{Tool: tool, Package: pkg}
}

// StaticBusybox returns the path of a statically linked busybox (Debian's
// busybox-static), which an initramfs needs because it carries no C library
// for it.
func StaticBusybox() (string, error) {
	p, err := LookTool("busybox", "busybox-static")
	if err != nil {
		return "", err
	}
	static, err := IsStatic(p)
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", p, err)
	}
	if !static {
		return "", &MissingToolError{Tool: "busybox", Package: "busybox-static", Reason: "at " + p + " is dynamically linked"}
	}
	return p, nil
}

// IsStatic reports whether the ELF file at path has no program interpreter.
func IsStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// AddBusybox adds the static busybox at bb as /bin/busybox with a symlink
// for every applet it lists, and returns the applet names.
func AddBusybox(ctx context.Context, a *Archive, bb string) (map[string]bool, error) {
	if err := a.HostFile("/bin/busybox", bb); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	applets := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		if p != "bin/busybox" {
			a.Symlink(p, "/bin/busybox")
		}
		applets[filepath.Base(p)] = true
	}
	return applets, nil
}

// AddTool copies a host program (a name in PATH or an absolute path) to the
// same path, with the shared libraries and dynamic loader that ldd lists for
// it, and returns the program's path.
func AddTool(ctx context.Context, a *Archive, tool string) (string, error) {
	p := tool
	if !filepath.IsAbs(p) {
		lp, err := LookTool(tool, tool)
		if err != nil {
			return "", fmt.Errorf("add tool %s: %w", tool, err)
		}
		p = lp
	}
	if err := a.HostFile(p, p); err != nil {
		return "", fmt.Errorf("add tool: %w", err)
	}
	static, err := IsStatic(p)
	if err != nil || static {
		return p, nil // static, or not ELF (a script: its interpreter must be added separately)
	}
	ldd, err := LookTool("ldd", "libc-bin")
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, ldd, p).Output()
	if err != nil {
		return "", fmt.Errorf("add tool %s: ldd: %w", tool, err)
	}
	for _, lib := range LddPaths(string(out)) {
		if err := a.HostFile(lib, lib); err != nil {
			return "", fmt.Errorf("add tool %s: %w", tool, err)
		}
	}
	return p, nil
}

// LddPaths returns the absolute library paths in ldd output, including the
// dynamic loader, skipping the vDSO and libraries ldd could not find.
func LddPaths(out string) []string {
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
