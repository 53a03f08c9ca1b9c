package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	pollInterval = 50 * time.Millisecond
	// consoleTail is how many console lines an error carries.
	consoleTail = 40
	// doneGrace is how long QEMU may take to exit after LAB-DONE.
	doneGrace = 15 * time.Second
)

// Disk is a raw disk image attached to a [Machine]. Disks appear in the
// guest in their order: /dev/vda, /dev/vdb, ...
type Disk struct {
	// Path is the image file. Empty means disk<N>.img in the machine's
	// directory.
	Path string
	// Size is the size in bytes of a sparse image created when Path does
	// not exist yet; an existing image is used as it is.
	Size int64
	// ReadOnly attaches the image read-only (QEMU readonly=on): the guest
	// sees a read-only disk and cannot change the file.
	ReadOnly bool
}

// Machine is a virtual machine that can boot several times with the same
// disks and the same vTPM: its swtpm state directory lives as long as the
// Machine's directory, so a second [Machine.Boot] is a reboot. A Machine
// boots one at a time (Boot is not safe for concurrent use); different
// Machines may boot in parallel.
//
// swtpm runs with --flags startup-clear, as firmware would send
// TPM2_Startup; without firmware PCRs 0-7 stay zero (see DESIGN.md §5).
//
// The disks use QEMU's default cache=writeback, set explicitly. A power cut
// ([BootOptions.CutAt]) kills QEMU with SIGKILL: whatever QEMU had written to
// an image file is then in the host page cache and stays (the host does not
// crash), while everything still in the guest's page cache is lost. That is
// the failure guest-side crash consistency must survive, and it is
// deterministic because [Preamble]'s point syncs before the cut. cache=none
// would need O_DIRECT (not on tmpfs) and cache=writethrough makes every
// write synchronous on the host, both for no gain here: neither changes what
// survives a killed QEMU. cache=unsafe would not either, but it also drops the
// guest's flushes, so a future host-crash test would be meaningless with it.
// What this does not model is a disk that loses writes it acknowledged but
// had not flushed; that needs a block layer that drops unflushed writes.
type Machine struct {
	// Kernel is the kernel to boot.
	Kernel *KernelInfo
	// Dir holds the vTPM state (tpm/), default disk images and one console
	// log per boot.
	Dir string
	// Disks are attached in order as virtio disks.
	Disks []Disk
	// MemoryMiB is the guest's memory; 0 means 1024.
	MemoryMiB int
	// CPUs is the number of virtual CPUs; 0 means 2.
	CPUs int
	// InitDeadline bounds the time to LAB-INIT ([ErrStalledBeforeInit]);
	// 0 means DefaultInitDeadline.
	InitDeadline time.Duration
	// Accel is "tcg" or "kvm"; empty means [Accelerator].
	Accel string
	// UserNet gives the guest a virtio network card on QEMU's user
	// network (slirp): the guest is [GuestIP] and reaches the host's
	// loopback at [HostIP] (a server the test listens with on 127.0.0.1,
	// e.g. a broker); nothing else of the host or outside is reachable.
	UserNet bool
	// Firmware, when set, boots through UEFI firmware from the first disk
	// (see [Firmware]); BootOptions.Initrd and Append are then unused.
	Firmware *Firmware

	boots int
}

// NewMachine creates a machine in dir (created if missing) with a fresh vTPM
// state directory and the given disks; missing images are created sparse.
func NewMachine(dir string, k *KernelInfo, disks ...Disk) (*Machine, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("machine directory: %w", err)
	}
	m := &Machine{Kernel: k, Dir: dir}
	if err := os.MkdirAll(m.TPMStateDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create vtpm state directory: %w", err)
	}
	for i, d := range disks {
		if d.Path == "" {
			d.Path = filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		}
		if d.Path, err = filepath.Abs(d.Path); err != nil {
			return nil, fmt.Errorf("disk %d: %w", i, err)
		}
		if !fileExists(d.Path) {
			if d.Size <= 0 {
				return nil, fmt.Errorf("disk %d: %s does not exist and has no size to create it with", i, d.Path)
			}
			f, err := os.OpenFile(d.Path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return nil, fmt.Errorf("create disk %d: %w", i, err)
			}
			err = f.Truncate(d.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("create disk %d: %w", i, err)
			}
		}
		m.Disks = append(m.Disks, d)
	}
	return m, nil
}

// Addresses on the lab's user network (see [Machine.UserNet]).
const (
	GuestIP = "10.0.2.15"
	HostIP  = "10.0.2.2"
)

// TPMStateDir is the swtpm state directory kept across boots.
func (m *Machine) TPMStateDir() string { return filepath.Join(m.Dir, "tpm") }

// BootOptions configures one [Machine.Boot].
type BootOptions struct {
	// Initrd is the initramfs file to boot (see [Initramfs.Build]).
	Initrd string
	// Append holds extra kernel parameters.
	Append []string
	// CutAt names a point (see [Preamble]) at which the power is cut: the
	// guest stops there after syncing and QEMU is killed with SIGKILL.
	CutAt string
	// Console, if set, receives every console line as it arrives.
	Console io.Writer
	// NoTPM boots without the vTPM: no swtpm runs and the guest has no
	// TPM device (a host that withholds it). The machine's vTPM state is
	// untouched, so the next boot has it again.
	NoTPM bool
}

// Result is one "RESULT <name> ok|fail <detail>" line of the guest.
type Result struct {
	// Name identifies the check.
	Name string
	// OK is true for "ok", false for "fail" (or anything else).
	OK bool
	// Detail is the rest of the line.
	Detail string
}

// BootResult is what one boot did.
type BootResult struct {
	// Results are the guest's RESULT lines, in order.
	Results []Result
	// Points are the names of the POINT lines, in order.
	Points []string
	// Done is true when the guest printed LAB-DONE.
	Done bool
	// ExitStatus is the scenario script's exit status from LAB-DONE.
	ExitStatus int
	// Cut is true when the power was cut at [BootOptions.CutAt].
	Cut bool
	// Accel is the accelerator used, "tcg" or "kvm".
	Accel string
	// InitTime is the wall time from starting QEMU to LAB-INIT; zero when
	// the guest never got there.
	InitTime time.Duration
	// Duration is the wall time of the whole boot.
	Duration time.Duration
	// ConsoleLog is the file with this boot's complete console output.
	ConsoleLog string
	// Retried is the error of a first attempt that panicked before /init,
	// when Boot booted again.
	Retried error
	// FirmwareRefused is set when the firmware refused to start the boot
	// image (Secure Boot: "Access Denied"); Boot then returns
	// [ErrFirmwareRefused].
	FirmwareRefused bool

	tail []string
}

// Tail returns the last console lines (at most 40), for error messages.
func (r *BootResult) Tail() string { return strings.Join(r.tail, "\n") }

// Failed returns the results that are not ok.
func (r *BootResult) Failed() []Result {
	var f []Result
	for _, res := range r.Results {
		if !res.OK {
			f = append(f, res)
		}
	}
	return f
}

// ErrPanicBeforeInit is a guest kernel that panicked before it ran /init.
// Under TCG the 6.12 kernel very rarely does (an int3 oops while it patches
// its own code on SMP); [Machine.Boot] then boots once more.
var ErrPanicBeforeInit = errors.New("guest kernel panicked before /init")

// ErrStalledBeforeInit is a guest kernel that did not reach /init within
// [Machine.InitDeadline]. Under TCG on a starved host the 6.12 kernel has been seen
// to stall in its own start-up (RCU stalls, "swapper/0:1 blocked"), before
// anything of the scenario ran; it is treated like [ErrPanicBeforeInit].
var ErrStalledBeforeInit = errors.New("guest kernel stalled before /init")

// ErrFirmwareRefused is a UEFI boot the firmware refused to start: the
// image is unsigned, tampered with or signed by a key not in db.
var ErrFirmwareRefused = errors.New("the firmware refused to start the boot image (Access Denied)")

// firmwareRefusal recognises OVMF's line for a boot option whose image
// Secure Boot rejected ("BdsDxe: failed to load Boot0001 ... Access
// Denied").
func firmwareRefusal(line string) bool {
	return strings.Contains(line, "BdsDxe: failed to load") && strings.Contains(line, "Access Denied")
}

// DefaultInitDeadline bounds the time to LAB-INIT: 5–15 s normally, under
// TCG.
const DefaultInitDeadline = 3 * time.Minute

// Boot starts swtpm and QEMU, runs the guest until it powers off (or prints
// LAB-DONE), the power is cut at opts.CutAt, or ctx ends, and returns what
// the guest reported. The error is non-nil when the guest did not finish
// normally (no LAB-DONE and no cut: panic, timeout, QEMU failure); it then
// carries the last console lines, and the BootResult is still returned.
//
// A kernel that panics or stalls before /init ([ErrPanicBeforeInit],
// [ErrStalledBeforeInit]) has run nothing of the scenario and written
// nothing to the disks: Boot then boots again, once, and sets
// [BootResult.Retried].
func (m *Machine) Boot(ctx context.Context, opts BootOptions) (*BootResult, error) {
	res, err := m.boot(ctx, opts)
	if (errors.Is(err, ErrPanicBeforeInit) || errors.Is(err, ErrStalledBeforeInit)) && ctx.Err() == nil {
		first := err
		if res, err = m.boot(ctx, opts); res != nil {
			res.Retried = first
		}
	}
	return res, err
}

func (m *Machine) boot(ctx context.Context, opts BootOptions) (*BootResult, error) {
	start := time.Now()
	accel := m.Accel
	if accel == "" {
		a, err := Accelerator(ctx, m.Kernel)
		if err != nil {
			return nil, err
		}
		accel = a
	}
	qemu, err := lookTool("qemu-system-x86_64", "qemu-system-x86")
	if err != nil {
		return nil, err
	}
	swtpm, err := lookTool("swtpm", "swtpm")
	if err != nil {
		return nil, err
	}
	if opts.Initrd == "" && m.Firmware == nil {
		return nil, errors.New("boot: no initrd given")
	}
	if strings.ContainsAny(opts.CutAt, " \t\n") {
		return nil, fmt.Errorf("boot: cut point %q contains white space", opts.CutAt)
	}
	m.boots++
	res := &BootResult{Accel: accel, ConsoleLog: filepath.Join(m.Dir, fmt.Sprintf("console-%d.log", m.boots))}
	defer func() { res.Duration = time.Since(start) }()

	var sock string // swtpm's socket; none without the vTPM
	if !opts.NoTPM {
		// Unix socket paths are limited to 108 bytes: keep them short.
		sockDir, err := os.MkdirTemp("", "lab-tpm-")
		if err != nil {
			return nil, fmt.Errorf("create socket directory: %w", err)
		}
		defer os.RemoveAll(sockDir)
		sock = filepath.Join(sockDir, "swtpm.sock")
		// Firmware sends TPM2_Startup itself; without firmware swtpm must.
		stopTPM, err := startSWTPM(ctx, swtpm, m.TPMStateDir(), sock, filepath.Join(m.Dir, "swtpm.log"), m.Firmware == nil)
		if err != nil {
			return nil, err
		}
		defer stopTPM()
	}

	logf, err := os.Create(res.ConsoleLog)
	if err != nil {
		return nil, fmt.Errorf("create console log: %w", err)
	}
	defer logf.Close()

	args := m.qemuArgs(accel, sock, opts)
	fmt.Fprintf(logf, "# %s %s\n", qemu, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("qemu stdout: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("qemu stderr: %w", err)
	}
	qemuStart := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}

	lines := make(chan string)
	var readers sync.WaitGroup
	readers.Add(2)
	go readLines(stdout, "", lines, &readers)
	go readLines(stderr, "qemu: ", lines, &readers)
	go func() { readers.Wait(); close(lines) }()

	var (
		kvmFailed bool
		panicLine string // the kernel's "Kernel panic" line, kept for the error
		grace     <-chan time.Time
		stalled   bool
	)
	deadline := m.InitDeadline
	if deadline == 0 {
		deadline = DefaultInitDeadline
	}
	initTimer := time.NewTimer(deadline)
	defer initTimer.Stop()
	kill := func() { _ = cmd.Process.Kill() }
loop:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				break loop
			}
			fmt.Fprintln(logf, line)
			if opts.Console != nil {
				fmt.Fprintln(opts.Console, line)
			}
			if panicLine == "" && strings.Contains(line, "Kernel panic") {
				panicLine = line
			}
			if m.Firmware != nil && !res.FirmwareRefused && firmwareRefusal(line) {
				// OVMF then tries its shell, is refused again, and waits
				// in its boot menu for ever.
				res.FirmwareRefused = true
				grace = time.After(2 * time.Second)
			}
			res.tail = append(res.tail, line)
			if len(res.tail) > consoleTail {
				res.tail = res.tail[len(res.tail)-consoleTail:]
			}
			switch ev, arg := parseLine(line); ev {
			case "init":
				if res.InitTime == 0 {
					res.InitTime = time.Since(qemuStart)
				}
			case "point":
				res.Points = append(res.Points, arg)
				if opts.CutAt != "" && arg == opts.CutAt && !res.Cut {
					res.Cut = true
					kill()
				}
			case "result":
				res.Results = append(res.Results, parseResult(arg))
			case "done":
				res.Done = true
				res.ExitStatus, _ = strconv.Atoi(arg)
				grace = time.After(doneGrace)
			case "kvm-error":
				kvmFailed = true
				kill()
			}
		case <-grace:
			kill()
			grace = nil
		case <-initTimer.C:
			if res.InitTime == 0 {
				stalled = true
				kill()
			}
		}
	}
	werr := cmd.Wait()

	switch {
	case res.Cut:
		return res, nil
	case res.Done:
		return res, nil
	case res.FirmwareRefused:
		return res, fmt.Errorf("%w; last console lines:\n%s", ErrFirmwareRefused, res.Tail())
	case ctx.Err() != nil:
		return res, fmt.Errorf("boot timed out or was cancelled (%w); last console lines:\n%s", ctx.Err(), res.Tail())
	case kvmFailed:
		return res, fmt.Errorf("kvm failed to run the guest; last console lines:\n%s", res.Tail())
	case stalled:
		return res, fmt.Errorf("%w (no LAB-INIT after %s); last console lines:\n%s", ErrStalledBeforeInit, deadline, res.Tail())
	case panicLine != "" && res.InitTime == 0:
		return res, fmt.Errorf("%w: %s; last console lines:\n%s", ErrPanicBeforeInit, strings.TrimSpace(panicLine), res.Tail())
	case opts.CutAt != "":
		return res, fmt.Errorf("guest stopped before reaching cut point %q (qemu: %v); last console lines:\n%s", opts.CutAt, werr, res.Tail())
	case panicLine != "":
		return res, fmt.Errorf("guest kernel panicked: %s; last console lines:\n%s", strings.TrimSpace(panicLine), res.Tail())
	default:
		return res, fmt.Errorf("guest stopped before LAB-DONE (qemu: %v); last console lines:\n%s", werr, res.Tail())
	}
}

// qemuArgs builds QEMU's command line. The console is ttyS0 on QEMU's
// standard output (-display none -serial stdio, the non-interactive form of
// -nographic).
func (m *Machine) qemuArgs(accel, sock string, opts BootOptions) []string {
	mem := m.MemoryMiB
	if mem == 0 {
		mem = 1024
	}
	cpus := m.CPUs
	if cpus == 0 {
		cpus = 2
	}
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	if m.Firmware != nil {
		return m.firmwareArgs(accel, cpu, mem, cpus, sock)
	}
	cmdline := []string{"console=ttyS0", "panic=-1", "loglevel=4", "rdinit=/init"}
	// Under TCG the kernel's boot-time crypto self-tests and speculation
	// mitigations cost seconds per boot and test nothing of ours.
	cmdline = append(cmdline, "cryptomgr.notests", "mitigations=off")
	if opts.CutAt != "" {
		cmdline = append(cmdline, "lab.cut="+opts.CutAt)
	}
	cmdline = append(cmdline, opts.Append...)
	args := []string{
		"-nodefaults", "-no-user-config",
		"-machine", "q35", "-accel", accel, "-cpu", cpu,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-no-reboot",
		"-kernel", m.Kernel.Vmlinuz, "-initrd", opts.Initrd,
		"-append", strings.Join(cmdline, " "),
	}
	return append(args, m.deviceArgs(sock)...)
}

// firmwareArgs is QEMU's command line for a UEFI boot: the firmware as
// pflash (code read-only, the variable store writable) and, for an SMM
// build, SMM with the pflash reserved to it (what makes the variables
// tamper-proof for the guest), S3 off as OVMF's secboot build wants.
func (m *Machine) firmwareArgs(accel, cpu string, mem, cpus int, sock string) []string {
	machine := "q35"
	if m.Firmware.SMM {
		machine += ",smm=on"
	}
	args := []string{
		"-nodefaults", "-no-user-config",
		"-machine", machine, "-accel", accel, "-cpu", cpu,
		"-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-no-reboot",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + m.Firmware.Code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + m.Firmware.Vars,
	}
	if m.Firmware.SMM {
		args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on", "-global", "ICH9-LPC.disable_s3=1")
	}
	return append(args, m.deviceArgs(sock)...)
}

// deviceArgs are the disks, the network card and the vTPM (none when sock
// is empty).
func (m *Machine) deviceArgs(sock string) []string {
	var args []string
	for i, d := range m.Disks {
		drive := fmt.Sprintf("file=%s,format=raw,if=virtio,cache=writeback,index=%d", d.Path, i)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		args = append(args, "-drive", drive)
	}
	if m.UserNet {
		// Slirp maps HostIP to the host's 127.0.0.1 (restrict=on would
		// cut that too). romfile= skips the iPXE option ROM (direct kernel
		// boot needs none, and it may not be installed).
		args = append(args, "-netdev", "user,id=net0,net=10.0.2.0/24,host="+HostIP+",restrict=off",
			"-device", "virtio-net-pci,netdev=net0,romfile=")
	}
	if sock == "" { // BootOptions.NoTPM
		return args
	}
	return append(args,
		"-chardev", "socket,id=chrtpm,path="+sock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-crb,tpmdev=tpm0",
	)
}

// startSWTPM starts swtpm on the control socket sock with its state in
// stateDir and waits for the socket; the returned function stops it.
func startSWTPM(ctx context.Context, swtpm, stateDir, sock, logFile string, startup bool) (func(), error) {
	args := []string{"socket", "--tpm2",
		"--tpmstate", "dir=" + stateDir,
		"--ctrl", "type=unixio,path=" + sock,
		"--log", "file=" + logFile + ",level=1",
		"--terminate"}
	if startup {
		args = append(args, "--flags", "startup-clear")
	}
	cmd := exec.Command(swtpm, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !fileExists(sock) {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("swtpm exited before listening (%v): %s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("swtpm did not create its socket within 10s")
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			stop()
			return nil, fmt.Errorf("wait for swtpm: %w", err)
		}
	}
	return stop, nil
}

// readLines sends r's lines, without line ends, to lines with prefix.
func readLines(r io.Reader, prefix string, lines chan<- string, wg *sync.WaitGroup) {
	defer wg.Done()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		s, err := br.ReadString('\n')
		if s != "" {
			lines <- prefix + strings.TrimRight(s, "\r\n")
		}
		if err != nil {
			return
		}
	}
}

// parseLine classifies a console line: "init", "point" (arg: name),
// "result" (arg: the rest), "done" (arg: exit status), "kvm-error", or "".
// Markers are found anywhere in the line, since kernel messages may precede
// them on the same line.
func parseLine(line string) (event, arg string) {
	if strings.Contains(line, "KVM internal error") || strings.Contains(line, "emulation failure") {
		return "kvm-error", ""
	}
	best := -1
	for _, m := range []struct{ marker, event string }{
		{"LAB-INIT", "init"}, {"POINT ", "point"}, {"RESULT ", "result"}, {"LAB-DONE", "done"},
	} {
		i := markerIndex(line, m.marker)
		if i < 0 || (best >= 0 && i >= best) {
			continue
		}
		best, event, arg = i, m.event, strings.TrimSpace(line[i+len(m.marker):])
	}
	return event, arg
}

// markerIndex returns the index of the first occurrence of marker in line
// that starts the line or follows a space, tab or ']' (the end of a kernel
// message prefix), or -1.
func markerIndex(line, marker string) int {
	off := 0
	for {
		i := strings.Index(line[off:], marker)
		if i < 0 {
			return -1
		}
		i += off
		if i == 0 || strings.ContainsRune(" ]\t", rune(line[i-1])) {
			return i
		}
		off = i + 1
	}
}

// parseResult parses the part of a RESULT line after "RESULT ".
func parseResult(s string) Result {
	f := strings.SplitN(s, " ", 3)
	r := Result{Name: f[0]}
	if len(f) > 1 {
		r.OK = f[1] == "ok"
	}
	if len(f) > 2 {
		r.Detail = strings.TrimSpace(f[2])
	}
	return r
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
