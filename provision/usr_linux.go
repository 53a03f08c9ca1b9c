package provision

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// usrDirs are the directories of a new root file system made for
// usrhash= (file-hierarchy(7)); everything else comes from /usr or is made
// by the booted system (systemd-tmpfiles, systemd-firstboot).
var usrDirs = []struct {
	name string
	mode os.FileMode
}{
	{"usr", 0o755}, {"etc", 0o755}, {"var", 0o755}, {"var/tmp", 0o1777}, {"tmp", 0o1777}, {"home", 0o755},
	{"root", 0o700}, {"run", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"dev", 0o755}, {"mnt", 0o755}, {"srv", 0o755}, {"opt", 0o755},
}

// usrLinks are the merged-/usr symlinks a usrhash= root needs (its /usr
// is the whole operating system).
var usrLinks = map[string]string{"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}

// makeRootSkeleton makes the empty root file system of usrhash= at dir (on
// the state volume) and, for a writable /usr, the overlay's upper and work
// directories beside it.
func makeRootSkeleton(dir string, overlay bool) error {
	for _, d := range usrDirs {
		p := filepath.Join(dir, d.name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
	}
	for name, target := range usrLinks {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	if overlay {
		return usrOverlayDirs()
	}
	return nil
}

func usrOverlayDirs() error {
	return errors.Join(os.MkdirAll(stateDir+"/overlay/usr/upper", 0o755), os.MkdirAll(stateDir+"/overlay/usr/work", 0o755))
}

// mountUsrRoot mounts the root of usrhash= at root: the state volume's
// root tree, with the verity /usr on its /usr, through an overlay
// (RWUsrOverlay) or read-only (RWUsr).
func (b *booter) mountUsrRoot(root string) error {
	if err := unix.Mount(stateDir+"/root", root, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the root made on the state volume: %w", err)
	}
	b.undo.add(func() error { return unix.Unmount(root, 0) })
	usr := filepath.Join(root, "usr")
	if err := os.MkdirAll(usr, 0o755); err != nil {
		return err
	}
	if b.cfg.RW == RWUsr {
		if err := unix.Mount(lowerDir, usr, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind the verity /usr: %w", err)
		}
		b.undo.add(func() error { return unix.Unmount(usr, 0) })
		return unix.Mount("", usr, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
	}
	if err := usrOverlayDirs(); err != nil {
		return fmt.Errorf("the /usr overlay's directories on the state volume: %w", err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/overlay/usr/upper,workdir=%s/overlay/usr/work", lowerDir, stateDir, stateDir)
	if err := unix.Mount("overlay", usr, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount the /usr overlay: %w", err)
	}
	b.undo.add(func() error { return unix.Unmount(usr, 0) })
	return nil
}
