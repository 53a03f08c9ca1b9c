package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/initrd"
)

// DracutBaseDir is where Debian's dracut-core keeps dracut's modules and
// helpers (dracutbasedir).
const DracutBaseDir = "/usr/lib/dracut"

// Dracut describes a systemd initrd built by the distribution's dracut for
// the lab kernel, the way a dracut-based distribution builds its own: only
// the kernel (its module tree) and the extra dracut module come from the
// lab.
type Dracut struct {
	// ModuleDir is a dracut module directory added to dracut's own
	// (dist/dracut/90confidisk); its base name is its place in
	// modules.d.
	ModuleDir string
	// Confidisk is the binary the module installs: dracut finds it as
	// "confidisk-guest" first in its search path (DRACUT_PATH).
	Confidisk string
	// Modules are the dracut modules to include (dracut -m); nil means
	// [DracutModules].
	Modules []string
	// Drivers are kernel modules added to the initrd (--add-drivers); nil
	// means the lab machine's virtio disk and network drivers.
	Drivers []string
}

// DracutModules returns the dracut modules of a minimal systemd initrd with
// device-mapper and confidisk.
func DracutModules() []string {
	return []string{"systemd", "systemd-initrd", "base", "dm", "confidisk"}
}

// Build writes the initrd for kernel k to out. dracut runs on a copy of
// its base directory with ModuleDir added, so nothing on the host changes,
// and with an empty configuration, so the host's dracut.conf.d does not
// change what the lab boots.
func (d Dracut) Build(ctx context.Context, k *KernelInfo, out string) error {
	dracut, err := exec.LookPath("dracut")
	if err != nil {
		return &MissingToolError{Tool: "dracut", Package: "dracut-core"}
	}
	work, err := os.MkdirTemp(filepath.Dir(out), "dracut-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := d.stage(ctx, work); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, dracut, d.args(work, k, out)...)
	cmd.Env = append(os.Environ(), "dracutbasedir="+filepath.Join(work, "base"),
		"DRACUT_PATH="+filepath.Join(work, "bin")+" /usr/sbin /usr/bin /sbin /bin")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dracut: %w: %s", err, tail(string(b), 20))
	}
	return nil
}

// stage fills the work directory: base/ (dracut's base directory with
// ModuleDir in modules.d), bin/confidisk-guest, an empty dracut.conf and
// conf.d.
func (d Dracut) stage(ctx context.Context, work string) error {
	base := filepath.Join(work, "base")
	if err := copyTree(ctx, DracutBaseDir, base); err != nil {
		return err
	}
	if err := copyTree(ctx, d.ModuleDir, filepath.Join(base, "modules.d", filepath.Base(d.ModuleDir))); err != nil {
		return err
	}
	for _, dir := range []string{"bin", "conf.d"} {
		if err := os.MkdirAll(filepath.Join(work, dir), 0o755); err != nil {
			return err
		}
	}
	if err := copyExecutable(d.Confidisk, filepath.Join(work, "bin", "confidisk-guest")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(work, "dracut.conf"), nil, 0o644)
}

// args is dracut's command line for d in the work directory.
func (d Dracut) args(work string, k *KernelInfo, out string) []string {
	mods, drivers := d.Modules, d.Drivers
	if mods == nil {
		mods = DracutModules()
	}
	if drivers == nil {
		drivers = []string{"virtio_blk", "virtio_pci", "virtio_net"}
	}
	return []string{"--force", "--no-hostonly", "--no-hostonly-cmdline", "--no-early-microcode",
		"--conf", filepath.Join(work, "dracut.conf"), "--confdir", filepath.Join(work, "conf.d"),
		"--tmpdir", work, "--kmoddir", k.ModulesDir, "--compress", "gzip",
		"-m", strings.Join(mods, " "), "--add-drivers", strings.Join(drivers, " "),
		out, k.Version}
}

// copyTree copies the directory src to dst with cp -a (symbolic links,
// modes and executables as they are).
func copyTree(ctx context.Context, src, dst string) error {
	if b, err := exec.CommandContext(ctx, "cp", "-a", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %w: %s", src, err, b)
	}
	return nil
}

// TestDracut builds d for the lab kernel into a temporary directory of t,
// reporting a missing dracut through [missingOrFatal].
func TestDracut(t testing.TB, d Dracut) string {
	t.Helper()
	k := TestKernel(t)
	out := filepath.Join(t.TempDir(), "initrd.img")
	if err := d.Build(context.Background(), k, out); err != nil {
		missingOrFatal(t, err)
	}
	return out
}

// AppendArchive writes to out the initrd base followed by the archive a as
// a second, uncompressed cpio archive: the kernel unpacks both in order, so
// a's files are added to (or replace) base's. The lab adds a scenario's
// files to one dracut build this way.
func AppendArchive(base, out string, a *initrd.Archive) error {
	src, err := os.Open(base)
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, src)
	if err == nil && n%4 != 0 { // each archive starts 4-byte aligned
		_, err = f.Write(make([]byte, 4-n%4))
	}
	if err == nil {
		err = a.Write(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
