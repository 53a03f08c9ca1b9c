package lab

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/confidisk/confidisk/initrd"
)

// DefaultModules returns the kernel modules the project's scenarios need:
// device-mapper targets, the file systems, the virtio disk and network
// devices and the TPM drivers. Names may use '-' or '_'; those built into
// the kernel are skipped.
func DefaultModules() []string {
	return []string{"dm-mod", "dm-verity", "dm-crypt", "dm-integrity", "overlay", "erofs", "ext4", "virtio_blk", "virtio_net", "tpm_crb", "tpm_tis", "loop"}
}

// Initramfs describes the contents of a lab initramfs.
type Initramfs struct {
	// Modules are loaded by /init, with their dependencies from modules.dep,
	// in dependency order. A name that is built into the kernel is skipped;
	// one that is neither a module nor built in is an error.
	Modules []string
	// ModuleDirs are subtrees of the module directory (relative, like
	// "kernel/crypto") shipped with their dependencies so that modprobe can
	// load them on demand. nil means [initrd.DefaultModuleDirs]; use an
	// empty slice for none.
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
	// DMClone, when set, is the host path of a dm-clone.ko built for the
	// kernel ([DMCloneModule]; Debian's kernel has no dm-clone). The
	// initramfs then carries it as /lib/modules/<version>/extra/dm-clone.ko
	// with the modules its .modinfo depends on (dm-mod, dm-persistent-data)
	// and theirs from modules.dep (dm-bufio, libcrc32c), and /init loads
	// crc32c_generic first (busybox insmod ignores libcrc32c's softdep on a
	// crc32c driver, without which libcrc32c fails with "unknown symbol"),
	// then Modules and those dependencies, then dm-clone last. The module is
	// unsigned: loading it taints the kernel, and a kernel locked down by
	// UEFI Secure Boot refuses it.
	DMClone string
}

// Build writes the initramfs for kernel k to the file out.
func (i *Initramfs) Build(ctx context.Context, k *KernelInfo, out string) error {
	mods, err := k.modules()
	if err != nil {
		return err
	}
	dirs := i.ModuleDirs
	if dirs == nil {
		dirs = initrd.DefaultModuleDirs()
	}
	load := i.Modules
	var dmClone string // its guest path
	if i.DMClone != "" {
		deps, err := outOfTreeDepends(i.DMClone, k)
		if err != nil {
			return err
		}
		load = slices.Concat([]string{"crc32c_generic"}, i.Modules, deps)
		dmClone = path.Join("/lib/modules", k.Version, "extra", "dm-clone.ko")
	}
	b, err := initrd.NewBase(ctx, "", mods, load, dirs)
	if err != nil {
		return err
	}
	if dmClone != "" {
		if err := b.HostFile(dmClone, i.DMClone); err != nil {
			return err
		}
		b.Load = append(b.Load, dmClone) // last: after its dependencies
	}
	// Debian's busybox-static runs its own applet for any name it knows,
	// whatever PATH says (FEATURE_SH_STANDALONE); a shell function wins over
	// applets, so tools that share a name with one get a function.
	var funcs strings.Builder
	for _, tool := range i.Tools {
		p, err := initrd.AddTool(ctx, b.Archive, tool)
		if err != nil {
			return err
		}
		if name := path.Base(p); b.Applets[name] {
			fmt.Fprintf(&funcs, "%s() { %s \"$@\"; }\n", name, p)
		}
	}
	b.File("/lab/tools.sh", 0o644, []byte(funcs.String()))
	for guest, host := range i.Files {
		if err := b.HostFile(guest, host); err != nil {
			return err
		}
	}
	b.File("/init", 0o755, []byte(initScript(b.Load)))
	b.File("/lab/preamble.sh", 0o644, []byte(Preamble))
	b.File("/lab/scenario.sh", 0o755, []byte(i.Init))
	return writeFile(out, b.Archive)
}

// outOfTreeDepends checks that the module file ko was built for k (its
// vermagic names k.Version) and returns the modules it depends on.
func outOfTreeDepends(ko string, k *KernelInfo) ([]string, error) {
	info, err := moduleInfo(ko)
	if err != nil {
		return nil, err
	}
	if r := vermagicRelease(info["vermagic"]); r != k.Version {
		return nil, fmt.Errorf("%s is built for kernel %q, the machine boots %s", ko, r, k.Version)
	}
	return moduleDepends(info["depends"]), nil
}

// modules is k's module tree, with decompressed modules cached under k.Dir.
func (k *KernelInfo) modules() (*initrd.Modules, error) {
	mods, err := initrd.LoadModules(k.Version, k.ModulesDir)
	if err != nil {
		return nil, err
	}
	mods.CacheDir = filepath.Join(k.Dir, "ko")
	return mods, nil
}

// writeFile writes the archive a to the file out.
func writeFile(out string, a *initrd.Archive) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create initramfs: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close initramfs: %w", cerr)
		}
	}()
	return a.Write(f)
}
