package initrd

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"path"
	"strings"
)

// DefaultModules returns the kernel modules a confidisk initrd loads: the
// device-mapper targets (verity, crypt, integrity), the file systems, the
// virtio and NVMe disks, the virtio network card (to reach a broker) and the
// TPM drivers. Names may use '-' or '_'; those
// built into the kernel are skipped.
func DefaultModules() []string {
	return []string{"dm-mod", "dm-verity", "dm-crypt", "dm-integrity", "overlay", "erofs", "ext4",
		"virtio_blk", "virtio_pci", "virtio_net", "nvme", "tpm_crb", "tpm_tis", "efivarfs"}
}

// DefaultModuleDirs returns the module subtrees shipped (but not loaded) so
// that the kernel can load crypto algorithms on demand through busybox
// modprobe, e.g. xts or authenc when dm-crypt asks for them.
func DefaultModuleDirs() []string {
	return []string{"kernel/crypto", "kernel/arch/x86/crypto", "kernel/lib/crypto"}
}

// DefaultTools are the host programs a confidisk initrd carries besides
// busybox: mkfs.ext4, which the first boot runs on the new state volume.
func DefaultTools() []string { return []string{"mkfs.ext4"} }

// Spec describes a confidisk initrd: busybox, the kernel modules, confidisk
// and an /init that loads the modules and hands over to `confidisk boot`.
type Spec struct {
	// Modules is the kernel's module tree; nil builds an initrd without
	// modules (for a kernel with everything built in).
	Modules *Modules
	// Load are the modules /init loads, with their dependencies
	// (nil means [DefaultModules]); ShipDirs the module subtrees shipped
	// for on-demand loading (nil means [DefaultModuleDirs]).
	Load, ShipDirs []string
	// Busybox is a static busybox ("" finds Debian's busybox-static).
	Busybox string
	// Confidisk is the confidisk binary (the confidisk_guest build is
	// enough), installed as /bin/confidisk.
	Confidisk string
	// Tools are more host programs, copied with their libraries (nil
	// means [DefaultTools]).
	Tools []string
	// Files maps a guest path to a host file copied there (the config
	// file /etc/confidisk/boot.conf, a broker CA, a recovery public key).
	Files map[string]string
	// BootArgs are extra arguments of `confidisk boot`.
	BootArgs []string
	// Gzip compresses the archive (the kernel unpacks gzip initramfs
	// archives; the header carries no name and no time, so the bytes stay
	// reproducible). A smaller initrd is faster to load and to measure.
	Gzip bool
}

// Build writes the initrd described by s to w as a newc cpio archive,
// gzip-compressed when s.Gzip is set. The same spec and inputs give the
// same bytes.
func Build(ctx context.Context, s Spec, w io.Writer) error {
	if s.Confidisk == "" {
		return fmt.Errorf("initrd: no confidisk binary given")
	}
	b, err := NewBase(ctx, s.Busybox, s.Modules, orDefault(s.Load, DefaultModules()), orDefault(s.ShipDirs, DefaultModuleDirs()))
	if err != nil {
		return err
	}
	a := b.Archive
	if err := a.HostFile("/bin/confidisk", s.Confidisk); err != nil {
		return err
	}
	for _, tool := range orDefault(s.Tools, DefaultTools()) {
		if _, err := AddTool(ctx, a, tool); err != nil {
			return err
		}
	}
	if err := addFiles(a, s.Files); err != nil {
		return err
	}
	a.File("/init", 0o755, []byte(InitScript(b.Load, s.BootArgs)))
	if !s.Gzip {
		return a.Write(w)
	}
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err := a.Write(zw); err != nil {
		return err
	}
	return zw.Close()
}

// orDefault returns s, or def when s is nil (an empty slice stays empty).
func orDefault(s, def []string) []string {
	if s == nil {
		return def
	}
	return s
}

func addFiles(a *Archive, files map[string]string) error {
	for guest, host := range files {
		if !path.IsAbs(guest) {
			return fmt.Errorf("initrd: guest path %q is not absolute", guest)
		}
		if err := a.HostFile(guest, host); err != nil {
			return err
		}
	}
	return nil
}

// Base is what every initrd this package builds starts from: busybox
// and its applets, the standard directories, /dev/console and the kernel
// modules. [Build] adds confidisk and its /init.
type Base struct {
	*Archive
	// Applets are the names busybox provides.
	Applets map[string]bool
	// Load are the guest paths of the modules /init loads, dependencies
	// first.
	Load []string
}

// NewBase returns a [Base] with busybox bb (or Debian's busybox-static when
// empty) and the modules load (with their dependencies) and the subtrees
// dirs of mods (nil for none).
func NewBase(ctx context.Context, bb string, mods *Modules, load, dirs []string) (*Base, error) {
	if bb == "" {
		p, err := StaticBusybox()
		if err != nil {
			return nil, err
		}
		bb = p
	}
	b := &Base{Archive: NewArchive()}
	applets, err := AddBusybox(ctx, b.Archive, bb)
	if err != nil {
		return nil, err
	}
	b.Applets = applets
	b.Dir("/dev", 0o755)
	b.CharDevice("/dev/console", 0o600, 5, 1)
	for _, d := range []string{"/proc", "/sys", "/tmp", "/run", "/mnt", "/root", "/etc", "/sysroot"} {
		b.Dir(d, 0o755)
	}
	if mods == nil {
		return b, nil
	}
	plan, err := mods.Plan(load, dirs)
	if err != nil {
		return nil, err
	}
	if err := mods.AddTo(ctx, b.Archive, plan); err != nil {
		return nil, err
	}
	for _, rel := range plan.Load {
		b.Load = append(b.Load, GuestModulePath(mods.Version, rel))
	}
	return b, nil
}

// InitScript is the /init of a confidisk initrd: mount the kernel's file
// systems, load the modules (guest paths, dependencies first), then exec
// `confidisk boot --on-failure poweroff` as PID 1, which switches to the
// read-write root or, when the boot refuses, prints why and powers the
// machine off (a shell on the console would hand the guest to whoever owns
// the console: the host).
func InitScript(load []string, bootArgs []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
# confidisk initrd /init (generated by confidisk initrd build)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
`)
	b.WriteString(ModuleLoader)
	for _, p := range load {
		fmt.Fprintf(&b, "load_module %s %s\n", ModuleName(p), p)
	}
	b.WriteString(StaticIP)
	args := append([]string{"exec", "/bin/confidisk", "boot", "--on-failure", "poweroff"}, bootArgs...)
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	b.WriteString(strings.Join(args, " ") + "\n")
	return b.String()
}

// StaticIP configures a network interface from a static ip= kernel
// parameter in dracut's form (dracut.cmdline(7)):
// ip=<client>:[<peer>]:<gateway>:<netmask>:[<hostname>]:<interface>:{none|off},
// which `confidisk boot` needs to reach a broker (confidisk.broker=). The
// kernel's own ip= handling cannot do it: the network driver is a module.
// Other forms (dhcp) are left alone.
const StaticIP = `for _a in $(cat /proc/cmdline); do
	case "$_a" in
	ip=*:*:*:*:*:*:none | ip=*:*:*:*:*:*:off)
		IFS=: read -r _ip _peer _gw _mask _host _dev _auto <<EOF
${_a#ip=}
EOF
		ifconfig lo 127.0.0.1 up
		if ifconfig "$_dev" "$_ip" netmask "$_mask" up; then
			[ -z "$_gw" ] || route add default gw "$_gw" || echo "ip=: no route via $_gw" >&2
		else
			echo "ip=: could not configure $_dev" >&2
		fi
		;;
	esac
done
`

// ModuleLoader is the shell function load_module NAME PATH: insmod PATH
// unless the module is already there (built in, or loaded as a
// dependency), reporting a failure on the console without stopping.
const ModuleLoader = `load_module() {
	[ -d "/sys/module/$1" ] && return 0
	insmod "$2" 2>/dev/null || echo "load_module: insmod $2 failed" >&2
}
`

// shellQuote quotes s for sh when it holds anything but safe characters.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@", r)) {
			safe = false
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
