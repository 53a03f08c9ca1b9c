// Package devlock takes the advisory locks that cryptsetup takes around LUKS2
// metadata, so that confidisk and cryptsetup never rewrite a header under
// each other (cryptsetup lib/utils_device_locking.c):
//
//   - a regular file (an image) is locked with flock(2) on the file itself;
//   - a block device is locked with flock(2) on the resource file
//     /run/cryptsetup/L_<major>:<minor>, created on demand and removed by
//     the last holder.
//
// Readers take a shared lock, writers an exclusive one.
package devlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Dir is where cryptsetup keeps its lock resource files (DEFAULT_LUKS2_LOCK_PATH).
const Dir = "/run/cryptsetup"

// Lock is a held lock; Unlock releases it.
type Lock struct {
	f        *os.File
	resource string // the resource file of a block device, "" for a regular file
}

// ErrBusy is returned by a non-blocking lock that another process holds.
var ErrBusy = errors.New("device metadata is locked by another process")

// Acquire locks the device at path: shared unless exclusive. It waits for a
// conflicting holder unless nonBlocking, which returns ErrBusy instead.
func Acquire(path string, exclusive, nonBlocking bool) (*Lock, error) {
	op := unix.LOCK_SH
	if exclusive {
		op = unix.LOCK_EX
	}
	if nonBlocking {
		op |= unix.LOCK_NB
	}
	for {
		l, err := open(path)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(l.f.Fd()), op); err != nil {
			l.f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock %s: %w", path, ErrBusy)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// Another holder may have removed the resource file between our open
		// and our flock (see Unlock); then lock the new file instead.
		if l.resource == "" || sameInode(l.f, l.resource) {
			return l, nil
		}
		unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
		l.f.Close()
	}
}

func open(path string) (*Lock, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_NONBLOCK, 0)
		if err != nil {
			f, err = os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
		}
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return &Lock{f: f}, nil
	case unix.S_IFBLK:
		if err := os.MkdirAll(Dir, 0o700); err != nil {
			return nil, fmt.Errorf("lock directory: %w", err)
		}
		res := filepath.Join(Dir, fmt.Sprintf("L_%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))))
		f, err := os.OpenFile(res, os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return &Lock{f: f, resource: res}, nil
	}
	return nil, fmt.Errorf("lock %s: neither a regular file nor a block device", path)
}

func sameInode(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// Unlock releases the lock. The last holder of a block device's resource
// file removes it, as cryptsetup does.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	if l.resource != "" && unix.Flock(int(l.f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && sameInode(l.f, l.resource) {
		os.Remove(l.resource)
	}
	unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	err := l.f.Close()
	l.f = nil
	return err
}
