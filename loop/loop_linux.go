//go:build linux

package loop

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ControlPath is the loop control device (loop(4), "/dev/loop-control").
const ControlPath = "/dev/loop-control"

// loopMajor is LOOP_MAJOR (include/uapi/linux/major.h).
const loopMajor = 7

// Options configure [Attach]; they map onto struct loop_info64 and struct
// loop_config (include/uapi/linux/loop.h).
type Options struct {
	// ReadOnly opens the backing file read-only and sets
	// LO_FLAGS_READ_ONLY.
	ReadOnly bool
	// Offset is the byte offset of the data in the backing file (lo_offset).
	Offset uint64
	// SizeLimit caps the device size in bytes; 0 means up to the end of the
	// file (lo_sizelimit).
	SizeLimit uint64
	// AutoClear detaches the device when its last opener closes it
	// (LO_FLAGS_AUTOCLEAR). The [Device] keeps its own descriptor open, so
	// the device stays until [Device.Close] and whatever was stacked on
	// top is gone.
	AutoClear bool
	// DirectIO bypasses the page cache of the backing file
	// (LO_FLAGS_DIRECT_IO); the kernel falls back to buffered I/O when the
	// file system cannot do it.
	DirectIO bool
	// BlockSize is the logical block size in bytes (512..4096, power of
	// two); 0 keeps 512.
	BlockSize uint32
}

// Device is an attached loop device.
type Device struct {
	// Number is N in /dev/loopN.
	Number int
	// Path is the device node, /dev/loopN.
	Path string
	f    *os.File
}

// maxAttempts bounds the retries when another process grabs the free
// device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE (EBUSY).
const maxAttempts = 16

// Attach attaches the file at backing to a free loop device.
func Attach(backing string, opts Options) (*Device, error) {
	if opts.BlockSize != 0 && (opts.BlockSize < 512 || opts.BlockSize > 4096 || opts.BlockSize&(opts.BlockSize-1) != 0) {
		return nil, fmt.Errorf("loop: block size %d: want a power of two in 512..4096", opts.BlockSize)
	}
	mode := os.O_RDWR
	if opts.ReadOnly {
		mode = os.O_RDONLY
	}
	file, err := os.OpenFile(backing, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop: open backing file: %w", err)
	}
	defer file.Close() // the kernel holds its own reference once attached

	ctl, err := os.OpenFile(ControlPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop: open %s (is the loop module loaded?): %w", ControlPath, err)
	}
	defer ctl.Close()

	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("loop: get free device: %w", err)
		}
		d, err := configure(n, file, backing, opts)
		if errors.Is(err, unix.EBUSY) && attempt < maxAttempts {
			continue
		}
		if err != nil {
			return nil, err
		}
		return d, nil
	}
}

// configure attaches file to /dev/loopN.
func configure(n int, file *os.File, backing string, opts Options) (*Device, error) {
	path := fmt.Sprintf("/dev/loop%d", n)
	if err := ensureNode(n, path); err != nil {
		return nil, err
	}
	mode := os.O_RDWR
	if opts.ReadOnly {
		mode = os.O_RDONLY
	}
	f, err := os.OpenFile(path, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop: open %s: %w", path, err)
	}
	fd := int(f.Fd())

	var info unix.LoopInfo64
	info.Offset = opts.Offset
	info.Sizelimit = opts.SizeLimit
	if opts.ReadOnly {
		info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	if opts.AutoClear {
		info.Flags |= unix.LO_FLAGS_AUTOCLEAR
	}
	if opts.DirectIO {
		info.Flags |= unix.LO_FLAGS_DIRECT_IO
	}
	copy(info.File_name[:unix.LO_NAME_SIZE-1], backing)

	cfg := unix.LoopConfig{Fd: uint32(file.Fd()), Size: opts.BlockSize, Info: info}
	err = unix.IoctlLoopConfigure(fd, &cfg)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
		// Before Linux 5.8 there is no LOOP_CONFIGURE.
		err = legacyConfigure(fd, file, info, opts)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("loop: configure %s: %w", path, err)
	}
	return &Device{Number: n, Path: path, f: f}, nil
}

// legacyConfigure does what LOOP_CONFIGURE does with the older ioctls:
// LOOP_SET_FD, LOOP_SET_STATUS64 (offset, size limit, autoclear; read-only
// follows from the backing file's open mode), LOOP_SET_BLOCK_SIZE and
// LOOP_SET_DIRECT_IO.
func legacyConfigure(fd int, file *os.File, info unix.LoopInfo64, opts Options) error {
	if err := unix.IoctlSetInt(fd, unix.LOOP_SET_FD, int(file.Fd())); err != nil {
		return fmt.Errorf("LOOP_SET_FD: %w", err)
	}
	fail := func(what string, err error) error {
		_ = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("%s: %w", what, err)
	}
	info.Flags &^= unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_DIRECT_IO
	if err := unix.IoctlLoopSetStatus64(fd, &info); err != nil {
		return fail("LOOP_SET_STATUS64", err)
	}
	if opts.BlockSize != 0 {
		if err := unix.IoctlSetInt(fd, unix.LOOP_SET_BLOCK_SIZE, int(opts.BlockSize)); err != nil {
			return fail("LOOP_SET_BLOCK_SIZE", err)
		}
	}
	if opts.DirectIO {
		if err := unix.IoctlSetInt(fd, unix.LOOP_SET_DIRECT_IO, 1); err != nil {
			return fail("LOOP_SET_DIRECT_IO", err)
		}
	}
	return nil
}

// ensureNode creates /dev/loopN as a block device when it is missing, with
// the number sysfs reports (/sys/block/loopN/dev) or 7:N.
func ensureNode(n int, path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	major, minor := uint32(loopMajor), uint32(n)
	if b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/dev", n)); err == nil {
		ma, mi, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
		a, err1 := strconv.ParseUint(ma, 10, 32)
		i, err2 := strconv.ParseUint(mi, 10, 32)
		if ok && err1 == nil && err2 == nil {
			major, minor = uint32(a), uint32(i)
		}
	}
	if err := unix.Mknod(path, unix.S_IFBLK|0o660, int(unix.Mkdev(major, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("loop: create node %s: %w", path, err)
	}
	return nil
}

// Status returns the device's struct loop_info64 (LOOP_GET_STATUS64).
func (d *Device) Status() (*unix.LoopInfo64, error) {
	info, err := unix.IoctlLoopGetStatus64(int(d.f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("loop: status of %s: %w", d.Path, err)
	}
	return info, nil
}

// Detach detaches the backing file (LOOP_CLR_FD) and closes the device.
// If the device is still open elsewhere the kernel detaches it on the last
// close (the kernel turns LOOP_CLR_FD into autoclear then).
func (d *Device) Detach() error {
	err := unix.IoctlSetInt(int(d.f.Fd()), unix.LOOP_CLR_FD, 0)
	cerr := d.f.Close()
	if err != nil {
		return fmt.Errorf("loop: detach %s: %w", d.Path, err)
	}
	if cerr != nil {
		return fmt.Errorf("loop: close %s: %w", d.Path, cerr)
	}
	return nil
}

// Close closes the Device's descriptor without detaching; with
// Options.AutoClear this detaches the device once nothing else holds it.
func (d *Device) Close() error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("loop: close %s: %w", d.Path, err)
	}
	return nil
}

// Detach detaches the loop device at path (LOOP_CLR_FD).
func Detach(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loop: detach %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0); err != nil {
		return fmt.Errorf("loop: detach %s: %w", path, err)
	}
	return nil
}

// FindByBackingFile returns the /dev/loopN paths whose backing file is
// backing, read from /sys/block/loopN/loop/backing_file.
func FindByBackingFile(backing string) ([]string, error) {
	abs, err := filepath.Abs(backing)
	if err != nil {
		return nil, fmt.Errorf("loop: find %s: %w", backing, err)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	matches, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return nil, fmt.Errorf("loop: find %s: %w", backing, err)
	}
	var out []string
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue // detached meanwhile
		}
		if string(bytes.TrimRight(b, "\n")) == abs {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(m))))
		}
	}
	return out, nil
}
