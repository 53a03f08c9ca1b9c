//go:build linux

package dm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultControl is the device-mapper control node (DM_DIR "/" DM_CONTROL_NODE
// in include/uapi/linux/dm-ioctl.h, under /dev).
const DefaultControl = "/dev/" + unix.DM_DIR + "/" + unix.DM_CONTROL_NODE

// NodePolicy says who creates /dev/mapper/NAME.
type NodePolicy int

const (
	// NodesAuto creates the node itself when udev is not running (no
	// /run/udev/control, as in a minimal initrd) and otherwise waits for
	// udev, creating the node only if udev has not within NodeWait.
	NodesAuto NodePolicy = iota
	// NodesCreate always creates the node with mknod.
	NodesCreate
	// NodesUdev never creates nodes; udev does.
	NodesUdev
)

// Options configure a [Client].
type Options struct {
	// Control is the control node; "" means DefaultControl. If it is
	// missing it is created from the "device-mapper" entry of /proc/misc.
	Control string
	// DevDir is where device nodes live; "" means /dev/mapper.
	DevDir string
	// Nodes says who creates device nodes.
	Nodes NodePolicy
	// NodeWait bounds the wait for udev under NodesAuto; 0 means 5 s.
	NodeWait time.Duration
}

// Client issues device-mapper ioctls (include/uapi/linux/dm-ioctl.h,
// Documentation/admin-guide/device-mapper/) on an open control node. A
// Client is safe for use by one goroutine at a time.
type Client struct {
	f        *os.File
	devDir   string
	nodes    NodePolicy
	nodeWait time.Duration
}

// Open opens the control node at path (normally [DefaultControl]) with
// default [Options].
func Open(path string) (*Client, error) {
	return OpenOptions(Options{Control: path})
}

// OpenOptions opens a Client configured by opts. It creates the devices
// directory and the control node when they are missing (an initrd without
// devtmpfs entries).
func OpenOptions(opts Options) (*Client, error) {
	c := &Client{devDir: opts.DevDir, nodes: opts.Nodes, nodeWait: opts.NodeWait}
	if c.devDir == "" {
		c.devDir = "/dev/" + unix.DM_DIR
	}
	if c.nodeWait == 0 {
		c.nodeWait = 5 * time.Second
	}
	control := opts.Control
	if control == "" {
		control = DefaultControl
	}
	if err := os.MkdirAll(c.devDir, 0o755); err != nil {
		return nil, fmt.Errorf("dm: create %s: %w", c.devDir, err)
	}
	if _, err := os.Stat(control); errors.Is(err, os.ErrNotExist) {
		if err := makeControlNode(control); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(control, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dm: open control node (is dm_mod loaded?): %w", err)
	}
	c.f = f
	return c, nil
}

// makeControlNode creates the control node as the character device
// 10:<minor>, the minor read from /proc/misc ("236 device-mapper"
// normally, MAPPER_CTRL_MINOR).
func makeControlNode(path string) error {
	minor := uint32(236)
	if f, err := os.Open("/proc/misc"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) == 2 && fs[1] == "device-mapper" {
				if n, err := strconv.ParseUint(fs[0], 10, 32); err == nil {
					minor = uint32(n)
				}
			}
		}
		f.Close()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("dm: create control node directory: %w", err)
	}
	if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(10, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("dm: create control node %s: %w", path, err)
	}
	return nil
}

// Close closes the control node.
func (c *Client) Close() error {
	if err := c.f.Close(); err != nil {
		return fmt.Errorf("dm: close control node: %w", err)
	}
	return nil
}

// DevicePath returns DevDir/name, the path of the device's node.
func (c *Client) DevicePath(name string) string { return filepath.Join(c.devDir, name) }

// ioctl issues one DM_* request on buf, retrying on EINTR.
func (c *Client) ioctl(req uint, buf []byte) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, c.f.Fd(), uintptr(req), uintptr(unsafe.Pointer(&buf[0])))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// Initial and maximum data area for replies of unknown size.
const (
	initialReply = 16 << 10
	maxReply     = 64 << 20
)

// query issues req with an output buffer, doubling it while the kernel sets
// DM_BUFFER_FULL_FLAG. When secure is set the request carries
// DM_SECURE_DATA_FLAG and outgrown buffers are wiped.
func (c *Client) query(req uint, h header, secure bool) ([]byte, error) {
	if secure {
		h.Flags |= flagSecureData
	}
	for size := initialReply; ; size *= 2 {
		b := newRequest(binary.NativeEndian, h, size)
		if err := c.ioctl(req, b); err != nil {
			clear(b)
			return nil, err
		}
		rh, err := parseHeader(b, binary.NativeEndian)
		if err != nil {
			return nil, err
		}
		if rh.Flags&flagBufferFull == 0 {
			return b, nil
		}
		if secure {
			clear(b)
		}
		if size >= maxReply {
			return nil, fmt.Errorf("dm: reply larger than %d bytes", maxReply)
		}
	}
}

// simple issues req for the named device with no payload and returns the
// reply header.
func (c *Client) simple(req uint, name string, flags uint32) (header, error) {
	if err := checkName(name); err != nil {
		return header{}, err
	}
	b := newRequest(binary.NativeEndian, header{Name: name, Flags: flags}, 0)
	if err := c.ioctl(req, b); err != nil {
		return header{}, err
	}
	return parseHeader(b, binary.NativeEndian)
}

// Version returns the kernel's device-mapper ioctl interface version
// (DM_VERSION).
func (c *Client) Version() ([3]uint32, error) {
	b := newRequest(binary.NativeEndian, header{}, 0)
	if err := c.ioctl(unix.DM_VERSION, b); err != nil {
		return [3]uint32{}, fmt.Errorf("dm: version: %w", err)
	}
	h, err := parseHeader(b, binary.NativeEndian)
	if err != nil {
		return [3]uint32{}, fmt.Errorf("dm: version: %w", err)
	}
	return h.Version, nil
}

// List returns all device-mapper devices (DM_LIST_DEVICES), with UUIDs on
// kernels with interface 4.45 or newer.
func (c *Client) List() ([]Device, error) {
	b, err := c.query(unix.DM_LIST_DEVICES, header{Flags: flagUUID}, false)
	if err != nil {
		return nil, fmt.Errorf("dm: list devices: %w", err)
	}
	h, err := parseHeader(b, binary.NativeEndian)
	if err != nil {
		return nil, fmt.Errorf("dm: list devices: %w", err)
	}
	withFlags := h.Version[0] == 4 && h.Version[1] >= 45
	ds, err := parseNameList(b, binary.NativeEndian, withFlags)
	if err != nil {
		return nil, fmt.Errorf("dm: list devices: %w", err)
	}
	return ds, nil
}

// Info describes a device (DM_DEV_STATUS).
type Info struct {
	// Name and UUID identify the device.
	Name, UUID string
	// Exists is false when the kernel knows no device of that name; the
	// other fields are then zero.
	Exists bool
	// Suspended reports DM_SUSPEND_FLAG.
	Suspended bool
	// ReadOnly reports DM_READONLY_FLAG.
	ReadOnly bool
	// LiveTable and InactiveTable report DM_ACTIVE_PRESENT_FLAG and
	// DM_INACTIVE_PRESENT_FLAG.
	LiveTable, InactiveTable bool
	// OpenCount is the number of openers of the block device.
	OpenCount int32
	// TargetCount is the number of targets in the live table.
	TargetCount uint32
	// EventNr is the device's event counter.
	EventNr uint32
	// Major and Minor are the block device number.
	Major, Minor uint32
}

func infoFromHeader(h header) Info {
	i := Info{
		Name: h.Name, UUID: h.UUID, Exists: true,
		Suspended:     h.Flags&flagSuspend != 0,
		ReadOnly:      h.Flags&flagReadOnly != 0,
		LiveTable:     h.Flags&flagActivePresent != 0,
		InactiveTable: h.Flags&flagInactivePres != 0,
		OpenCount:     h.OpenCount, TargetCount: h.TargetCount, EventNr: h.EventNr,
	}
	i.Major, i.Minor = decodeDev(h.Dev)
	return i
}

// Info returns the state of the named device. A missing device is not an
// error: Info.Exists is false.
func (c *Client) Info(name string) (Info, error) {
	h, err := c.simple(unix.DM_DEV_STATUS, name, 0)
	if errors.Is(err, unix.ENXIO) {
		return Info{Name: name}, nil
	}
	if err != nil {
		return Info{}, fmt.Errorf("dm: info %q: %w", name, err)
	}
	return infoFromHeader(h), nil
}

// Create creates an empty, suspended device (DM_DEV_CREATE) with the given
// name and UUID ("" for none) and returns its state. It does not create a
// node: [Client.CreateAndLoad] does once the device is live.
func (c *Client) Create(name, uuid string) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, fmt.Errorf("dm: create: %w", err)
	}
	if err := checkUUID(uuid); err != nil {
		return Info{}, fmt.Errorf("dm: create %q: %w", name, err)
	}
	b := newRequest(binary.NativeEndian, header{Name: name, UUID: uuid}, 0)
	if err := c.ioctl(unix.DM_DEV_CREATE, b); err != nil {
		return Info{}, fmt.Errorf("dm: create %q: %w", name, err)
	}
	h, err := parseHeader(b, binary.NativeEndian)
	if err != nil {
		return Info{}, fmt.Errorf("dm: create %q: %w", name, err)
	}
	return infoFromHeader(h), nil
}

// Load loads targets as the inactive table of the named device
// (DM_TABLE_LOAD); [Client.Resume] makes it live. The request carries
// DM_SECURE_DATA_FLAG so the kernel wipes its copy, and our buffer is wiped
// too. Errors never include the table's parameters.
func (c *Client) Load(name string, targets []Target, readOnly bool) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("dm: load table: %w", err)
	}
	h := header{Name: name, Flags: flagSecureData}
	if readOnly {
		h.Flags |= flagReadOnly
	}
	b, err := marshalTable(binary.NativeEndian, h, targets)
	if err != nil {
		return fmt.Errorf("dm: load table for %q: %w", name, err)
	}
	defer clear(b)
	if err := c.ioctl(unix.DM_TABLE_LOAD, b); err != nil {
		return fmt.Errorf("dm: load table for %q (see the kernel log for the target's reason): %w", name, err)
	}
	return nil
}

// Suspend suspends the named device (DM_DEV_SUSPEND with DM_SUSPEND_FLAG),
// flushing outstanding I/O first.
func (c *Client) Suspend(name string) error {
	if _, err := c.simple(unix.DM_DEV_SUSPEND, name, flagSuspend); err != nil {
		return fmt.Errorf("dm: suspend %q: %w", name, err)
	}
	return nil
}

// Resume resumes the named device (DM_DEV_SUSPEND without
// DM_SUSPEND_FLAG), first swapping in an inactive table if one is loaded.
func (c *Client) Resume(name string) error {
	if _, err := c.simple(unix.DM_DEV_SUSPEND, name, 0); err != nil {
		return fmt.Errorf("dm: resume %q: %w", name, err)
	}
	return nil
}

// Status returns the live table's targets with Params holding each
// target's status line (DM_TABLE_STATUS), as `dmsetup status` prints.
func (c *Client) Status(name string) ([]Target, error) {
	return c.tableStatus(name, 0)
}

// Table returns the live table as the kernel renders it (DM_TABLE_STATUS
// with DM_STATUS_TABLE_FLAG), as `dmsetup table --showkeys` prints: crypt
// keys are included, so do not log the result except through
// [Target.Redacted].
func (c *Client) Table(name string) ([]Target, error) {
	return c.tableStatus(name, flagStatusTable)
}

func (c *Client) tableStatus(name string, flags uint32) ([]Target, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("dm: table status: %w", err)
	}
	b, err := c.query(unix.DM_TABLE_STATUS, header{Name: name, Flags: flags}, true)
	if err != nil {
		return nil, fmt.Errorf("dm: table status of %q: %w", name, err)
	}
	defer clear(b)
	ts, err := parseTargets(b, binary.NativeEndian)
	if err != nil {
		return nil, fmt.Errorf("dm: table status of %q: %w", name, err)
	}
	return ts, nil
}

// Message sends msg to the target at sector of the named device
// (DM_TARGET_MSG), e.g. "enable_hydration" to dm-clone, and returns the
// target's reply text, if any.
func (c *Client) Message(name string, sector uint64, msg string) (string, error) {
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("dm: message: %w", err)
	}
	b, err := marshalMessage(binary.NativeEndian, header{Name: name, Flags: flagSecureData}, sector, msg)
	if err != nil {
		return "", fmt.Errorf("dm: message to %q: %w", name, err)
	}
	// Leave room for the reply.
	b = append(b, make([]byte, initialReply)...)
	binary.NativeEndian.PutUint32(b[offDataSize:], uint32(len(b)))
	defer clear(b)
	if err := c.ioctl(unix.DM_TARGET_MSG, b); err != nil {
		return "", fmt.Errorf("dm: message to %q: %w", name, err)
	}
	out, err := parseMessageReply(b, binary.NativeEndian)
	if err != nil {
		return "", fmt.Errorf("dm: message to %q: %w", name, err)
	}
	return out, nil
}

// RemoveOptions tune [Client.RemoveWith].
type RemoveOptions struct {
	// Deferred asks the kernel to remove a busy device when its last
	// opener closes it (DM_DEFERRED_REMOVE) instead of failing with EBUSY.
	Deferred bool
	// Retries is the number of further attempts after EBUSY (udev or blkid
	// often hold a new device open for a moment); 0 means 10.
	Retries int
	// Delay is the pause between attempts; 0 means 100 ms.
	Delay time.Duration
}

// Remove removes the named device (DM_DEV_REMOVE), retrying while it is
// busy, and removes the block device node this package created for it.
func (c *Client) Remove(name string) error {
	return c.RemoveWith(name, RemoveOptions{})
}

// RemoveWith removes the named device as configured by opts. A node at
// DevDir/name is removed when it is a block device node (not udev's
// symlink) with the device's number and the device is gone.
func (c *Client) RemoveWith(name string, opts RemoveOptions) error {
	if opts.Retries == 0 {
		opts.Retries = 10
	}
	if opts.Delay == 0 {
		opts.Delay = 100 * time.Millisecond
	}
	info, err := c.Info(name)
	if err != nil {
		return fmt.Errorf("dm: remove %q: %w", name, err)
	}
	if !info.Exists {
		return fmt.Errorf("dm: remove %q: %w", name, unix.ENXIO)
	}
	var flags uint32
	if opts.Deferred {
		flags |= flagDeferredRemove
	}
	for attempt := 0; ; attempt++ {
		_, err = c.simple(unix.DM_DEV_REMOVE, name, flags)
		if !errors.Is(err, unix.EBUSY) || attempt >= opts.Retries {
			break
		}
		time.Sleep(opts.Delay)
	}
	if err != nil {
		return fmt.Errorf("dm: remove %q: %w", name, err)
	}
	after, err := c.Info(name)
	if err != nil {
		return fmt.Errorf("dm: remove %q: %w", name, err)
	}
	if after.Exists {
		return nil // deferred: the kernel removes it on last close
	}
	return c.removeNode(name, info.Major, info.Minor)
}

// removeNode removes DevDir/name if it is the block device major:minor.
func (c *Client) removeNode(name string, major, minor uint32) error {
	p := c.DevicePath(name)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil // gone (or udev's job)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != unix.Mkdev(major, minor) {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dm: remove node %s: %w", p, err)
	}
	return nil
}

// udevRunning reports whether udev is running, the way libudev's
// udev_queue_get_udev_is_active does: /run/udev/control exists.
func udevRunning() bool {
	_, err := os.Stat("/run/udev/control")
	return err == nil
}

// ensureNode makes DevDir/name refer to the block device major:minor,
// following the Client's NodePolicy.
func (c *Client) ensureNode(name string, major, minor uint32) error {
	p := c.DevicePath(name)
	switch c.nodes {
	case NodesUdev:
		return nil
	case NodesAuto:
		if udevRunning() {
			deadline := time.Now().Add(c.nodeWait)
			for time.Now().Before(deadline) {
				if _, err := os.Stat(p); err == nil {
					return nil
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	dev := unix.Mkdev(major, minor)
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err == nil {
		if st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == dev {
			return nil
		}
		// A stale node from an earlier device of the same name.
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("dm: replace stale node %s: %w", p, err)
		}
	}
	if err := os.MkdirAll(c.devDir, 0o755); err != nil {
		return fmt.Errorf("dm: create %s: %w", c.devDir, err)
	}
	if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(dev)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("dm: create node %s: %w", p, err)
	}
	return nil
}

// CreateAndLoad creates the named device, loads targets, resumes it and
// makes sure DevDir/name exists, returning that path. On any failure it
// removes the device again, so nothing is left mapped.
func (c *Client) CreateAndLoad(name, uuid string, targets []Target, readOnly bool) (path string, err error) {
	if err := ValidateTable(targets); err != nil {
		return "", fmt.Errorf("dm: create %q: %w", name, err)
	}
	info, err := c.Create(name, uuid)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			if rerr := c.Remove(name); rerr != nil {
				err = errors.Join(err, fmt.Errorf("dm: clean up after failure: %w", rerr))
			}
		}
	}()
	if err := c.Load(name, targets, readOnly); err != nil {
		return "", err
	}
	if err := c.Resume(name); err != nil {
		return "", err
	}
	if err := c.ensureNode(name, info.Major, info.Minor); err != nil {
		return "", err
	}
	return c.DevicePath(name), nil
}
