//go:build !confidisk_guest

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/initrd"
)

func newInitrdCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "initrd",
		Short: "Build the initrd that runs confidisk boot",
	}
	cmd.AddCommand(newInitrdBuildCmd())
	return cmd
}

// initrdFlags are the inputs of `confidisk initrd build` (and of the
// initrd that `confidisk image build` makes).
type initrdFlags struct {
	modulesDir, kernelVersion, confidisk, busybox string
	modules, moduleDirs, tools, files, bootArgs   []string
	compress                                      string
}

func (o *initrdFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.modulesDir, "modules-dir", "", "the kernel's module tree, lib/modules/VERSION as depmod left it (required)")
	f.StringVar(&o.kernelVersion, "kernel-version", "", "kernel release (default: the base name of --modules-dir)")
	f.StringVar(&o.confidisk, "confidisk", "", "confidisk binary to install as /bin/confidisk (default: confidisk-guest beside this binary, else this binary)")
	f.StringVar(&o.busybox, "busybox", "", "static busybox (default: Debian's busybox-static from PATH)")
	f.StringSliceVar(&o.modules, "module", nil, "kernel module /init loads, with its dependencies (repeatable; default: "+strings.Join(initrd.DefaultModules(), ",")+")")
	f.StringSliceVar(&o.moduleDirs, "module-dir", nil, "module subtree shipped for on-demand loading (repeatable; default: "+strings.Join(initrd.DefaultModuleDirs(), ",")+")")
	f.StringSliceVar(&o.tools, "tool", nil, "host program copied with its libraries (repeatable; default: "+strings.Join(initrd.DefaultTools(), ",")+")")
	f.StringArrayVar(&o.files, "file", nil, "GUEST=HOST: copy a host file into the initrd, e.g. /etc/confidisk/boot.conf=boot.conf (repeatable)")
	f.StringArrayVar(&o.bootArgs, "boot-arg", nil, "extra argument of `confidisk boot` in /init (repeatable)")
	f.StringVar(&o.compress, "compress", "gzip", "gzip or none")
}

// spec checks the flags and returns the initrd they describe.
func (o *initrdFlags) spec() (initrd.Spec, error) {
	if o.compress != "gzip" && o.compress != "none" {
		return initrd.Spec{}, usageError{fmt.Errorf("--compress %q: want gzip or none", o.compress)}
	}
	if o.modulesDir == "" {
		return initrd.Spec{}, usageError{errors.New("--modules-dir is required (the kernel's lib/modules/VERSION)")}
	}
	version := o.kernelVersion
	if version == "" {
		version = filepath.Base(filepath.Clean(o.modulesDir))
	}
	mods, err := initrd.LoadModules(version, o.modulesDir)
	if err != nil {
		return initrd.Spec{}, err
	}
	files := map[string]string{}
	for _, kv := range o.files {
		guest, host, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(guest, "/") || host == "" {
			return initrd.Spec{}, usageError{fmt.Errorf("--file %q: want /GUEST/PATH=HOST_PATH", kv)}
		}
		files[guest] = host
	}
	bin := o.confidisk
	if bin == "" {
		if bin, err = defaultGuestBinary(); err != nil {
			return initrd.Spec{}, err
		}
	}
	return initrd.Spec{Modules: mods, Load: o.modules, ShipDirs: o.moduleDirs, Busybox: o.busybox,
		Confidisk: bin, Tools: o.tools, Files: files, BootArgs: o.bootArgs, Gzip: o.compress == "gzip"}, nil
}

// decompressInto gives spec's modules a temporary directory for the
// decompressed .ko.xz files, so that the initrd is written from files
// rather than held in memory; the returned function removes it.
func decompressInto(spec *initrd.Spec) (func(), error) {
	if spec.Modules == nil {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "confidisk-modules-")
	if err != nil {
		return nil, err
	}
	spec.Modules.CacheDir = dir
	return func() { os.RemoveAll(dir) }, nil
}

// defaultGuestBinary is confidisk-guest beside the running binary (the
// guest-only build), or the running binary itself.
func defaultGuestBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find this binary: %w", err)
	}
	if g := filepath.Join(filepath.Dir(self), "confidisk-guest"); fileExists(g) {
		return g, nil
	}
	return self, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func newInitrdBuildCmd() *cobra.Command {
	var (
		o     initrdFlags
		force bool
	)
	cmd := &cobra.Command{
		Use:   "build --modules-dir DIR [flags] OUT",
		Short: "Write a reproducible initrd whose /init runs confidisk boot",
		Long: `Write a newc cpio initrd (gzip-compressed unless --compress none) for a confidential guest: a static
busybox, the kernel modules that dm-verity, dm-crypt, dm-integrity, the TPM,
virtio and NVMe need (with their dependencies from modules.dep; .ko.xz are
decompressed, as busybox insmod needs), confidisk, mkfs.ext4 with its
libraries, and an /init that mounts /proc, /sys, /dev, /run and efivarfs,
loads the modules and runs 'exec confidisk boot --on-failure poweroff': the
boot maps the verified root and the state volume, switches to the read-write
root, or prints why it refuses and powers the machine off.

The same inputs give the same bytes (sorted entries, owner root, mtime 0), so
the initrd's digest (measured into PCR 11 inside a UKI, and PCR 9 by the
kernel) can be predicted from a build.

Files the boot reads from the initrd (they are measured with it): the config
file /etc/confidisk/boot.conf, the broker's CA /etc/confidisk/broker.pem and
the operator's recovery key /etc/confidisk/recovery.pub; add them with --file.`,
		Example: `  confidisk initrd build --modules-dir /lib/modules/$(uname -r) initrd.img
  confidisk initrd build --modules-dir mods/lib/modules/6.12.57+deb13-amd64 \
      --file /etc/confidisk/recovery.pub=recovery.pub --file /etc/confidisk/broker.pem=ca.pem initrd.img`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := o.spec()
			if err != nil {
				return err
			}
			out := args[0]
			if !force && fileExists(out) {
				return fmt.Errorf("%s exists (use --force to replace it)", out)
			}
			cleanup, err := decompressInto(&spec)
			if err != nil {
				return err
			}
			defer cleanup()
			return writeAtomic(out, 0o644, func(f *os.File) error { return initrd.Build(cmd.Context(), spec, f) })
		},
	}
	o.register(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "replace OUT if it exists")
	return cmd
}

// writeAtomic writes path through a temporary file in its directory that
// is synced and renamed over path only when write succeeds: a failed or
// interrupted build never leaves a partial file under the final name.
func writeAtomic(path string, perm os.FileMode, write func(*os.File) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Chmod(perm), tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
