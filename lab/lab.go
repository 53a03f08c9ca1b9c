// Package lab boots a real Linux kernel under QEMU, with swtpm as its vTPM, to
// run the project's end-to-end tests on machines whose own kernel has no
// device-mapper (see DESIGN.md §5).
//
// The pieces, each usable on its own:
//
//   - [Kernel] fetches Debian's linux-image-6.12 package once into a cache
//     outside the repository and returns its vmlinuz and module tree.
//   - [Initramfs] builds a newc cpio archive (written by [CPIOWriter]) with
//     busybox, kernel modules and their dependencies, the project's binary,
//     oracle tools with their shared libraries, and an /init that runs a
//     scenario script after a preamble of shell helpers.
//   - [Machine] owns disk images and a persistent vTPM state; [Machine.Boot]
//     starts swtpm and QEMU, streams the serial console, parses the guest's
//     RESULT lines and can cut the power at a named point.
//   - [DMCloneModule] builds dm-clone.ko, which Debian's kernel lacks, out of
//     tree for the lab kernel (cached); [Scenario.DMClone] ships and loads it.
//   - [RunScenario] does all of that for a test and fails it with the console
//     tail when a check fails.
//
// # Guest protocol
//
// The guest writes lines on its serial console (ttyS0); the harness reads:
//
//	LAB-INIT <uptime>             /init started (boot-to-init time)
//	POINT <name>                  the script passed a named point (after sync)
//	RESULT <name> ok|fail <text>  one check's outcome
//	LAB-DONE <exit status>        the script ended; the guest powers off next
//
// The /init preamble defines the shell functions point, result and check
// (see [Preamble]) so scenario scripts rarely print these lines by hand.
//
// # Environment
//
//	CONFIDISK_LAB_CACHE   cache directory (default $XDG_CACHE_HOME/confidisk-lab
//	                      or ~/.cache/confidisk-lab)
//	CONFIDISK_LAB_KERNEL  pin a kernel version, e.g. 6.12.117+deb12-amd64
//	CONFIDISK_LAB_ACCEL   force the accelerator: tcg or kvm (default: probe)
//	CONFIDISK_LAB_CONSOLE 1 streams every guest console line to standard
//	                      output in [RunScenario]
package lab

import (
	"errors"

	"github.com/confidisk/confidisk/initrd"
)

// MissingToolError reports a host tool the lab needs and the Debian package
// that provides it.
type MissingToolError = initrd.MissingToolError

// ErrNoKernelPackage is returned by [Kernel] when apt knows no
// linux-image-6.12.*+deb12-amd64-unsigned package, usually because
// `apt-get update` has not run on this machine yet.
var ErrNoKernelPackage = errors.New("no linux-image-6.12.*+deb12-amd64-unsigned package known to apt: run `apt-get update` first")

// lookTool finds tool in PATH or the sbin directories, or returns a
// *MissingToolError naming pkg.
func lookTool(tool, pkg string) (string, error) { return initrd.LookTool(tool, pkg) }
