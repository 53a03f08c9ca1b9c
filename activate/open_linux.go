package activate

import (
	"errors"
	"fmt"
	"os"

	"github.com/confidisk/confidisk/dm"
	"github.com/confidisk/confidisk/loop"
	"github.com/confidisk/confidisk/verity"
	"golang.org/x/sys/unix"
)

// blockDevice returns a block device for path: path itself when it is one,
// else a read-only loop device over the file (with autoclear, so the loop
// device goes away when the mapping that uses it does). release must be
// called once the mapping holds the device (or on failure).
func blockDevice(path string) (dev string, release func(), err error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", nil, err
	}
	if st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0 {
		// Like cryptsetup, refuse a device that is mounted or mapped: an
		// exclusive open fails with EBUSY then.
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.EBUSY) {
				return "", nil, fmt.Errorf("%s is in use (already mapped or mounted)", path)
			}
			return "", nil, fmt.Errorf("open %s: %w", path, err)
		}
		unix.Close(fd)
		return path, func() {}, nil
	}
	if !st.Mode().IsRegular() {
		return "", nil, fmt.Errorf("%s is neither a block device nor a regular file", path)
	}
	d, err := loop.Attach(path, loop.Options{ReadOnly: true, AutoClear: true})
	if err != nil {
		return "", nil, fmt.Errorf("attach %s to a loop device: %w", path, err)
	}
	return d.Path, func() { d.Close() }, nil
}

// Verity maps a dm-verity device NAME over dataPath and hashPath (block
// devices or image files, which get loop devices) and returns its path,
// /dev/mapper/NAME. It refuses a root hash that does not match before mapping
// anything, reads the first block through the new device so that the kernel
// checks it too, and removes the mapping again when that fails.
func Verity(m Mapper, name, dataPath, hashPath string, p verity.Params, root []byte, o VerityOptions) (string, error) {
	if name == "" || len(name) >= 128 {
		return "", fmt.Errorf("invalid device name %q", name)
	}
	data, err := os.Open(dataPath)
	if err != nil {
		return "", err
	}
	defer data.Close()
	hashDev, err := os.Open(hashPath)
	if err != nil {
		return "", err
	}
	defer hashDev.Close()
	if err := checkRoot(data, hashDev, p, root); err != nil {
		return "", err
	}

	dataDev, releaseData, err := blockDevice(dataPath)
	if err != nil {
		return "", err
	}
	defer releaseData()
	hashBlk := dataDev
	if !sameFile(dataPath, hashPath) {
		var releaseHash func()
		hashBlk, releaseHash, err = blockDevice(hashPath)
		if err != nil {
			return "", err
		}
		defer releaseHash()
	}
	t, err := VerityTable(dataDev, hashBlk, p, root, o)
	if err != nil {
		return "", err
	}
	path, err := m.CreateAndLoad(name, VerityUUID(p, name), []dm.Target{t}, true)
	if err != nil {
		return "", fmt.Errorf("create verity device %s: %w", name, err)
	}
	if err := readFirstBlock(path, int(p.DataBlockSize)); err != nil {
		rmErr := m.Remove(name)
		return "", errors.Join(fmt.Errorf("kernel refused to read block 0 of %s (root hash or device mismatch): %w", path, err), rmErr)
	}
	if st, err := m.Status(name); err == nil && !verityStatusOK(st) {
		rmErr := m.Remove(name)
		return "", errors.Join(fmt.Errorf("%s: the kernel reports corruption right after activation; device removed", name), rmErr)
	}
	return path, nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
