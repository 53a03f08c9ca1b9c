package image

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/confidisk/confidisk/initrd"
	"github.com/confidisk/confidisk/probe"
)

// RootFS says where the root file system comes from.
type RootFS struct {
	// Source is a directory, a tar archive (optionally gzip-compressed)
	// or a file system image (ext4, erofs or squashfs, used as it is).
	Source string
	// Type is the file system to make from a directory or an archive:
	// "ext4" (the default) or "erofs".
	Type string
	// Size is the ext4 file system's size in bytes; 0 sizes it from the
	// contents. erofs is always as small as its contents.
	Size int64
}

// rootFSImage makes (or, for an image Source, opens) the root file system
// image in dir and returns its path and type.
func rootFSImage(ctx context.Context, r RootFS, seed Seed, dir string) (path, fstype string, err error) {
	fi, err := os.Stat(r.Source)
	if err != nil {
		return "", "", fmt.Errorf("root file system: %w", err)
	}
	typ := r.Type
	if typ == "" {
		typ = "ext4"
	}
	if typ != "ext4" && typ != "erofs" {
		return "", "", fmt.Errorf("root file system type %q: want ext4 or erofs", typ)
	}
	src := r.Source
	if !fi.IsDir() {
		if what, ok := fsImageType(r.Source); ok {
			return r.Source, what, nil
		}
		if src, err = extractTar(r.Source, filepath.Join(dir, "tree")); err != nil {
			return "", "", err
		}
	}
	out := filepath.Join(dir, "root."+typ)
	if typ == "erofs" {
		return out, typ, mkfsErofs(ctx, src, out, seed)
	}
	need, err := treeSize(src)
	if err != nil {
		return "", "", err
	}
	size := r.Size
	switch {
	case size == 0:
		size = ext4Size(need)
	case size < need:
		return "", "", fmt.Errorf("root file system: the tree %s needs at least %d bytes, more than the ext4 size of %d", src, need, size)
	}
	return out, typ, mkfsExt4(ctx, src, out, size, seed)
}

// fsImageType reports the file system an image file holds, if any.
func fsImageType(p string) (string, bool) {
	f, err := os.Open(p)
	if err != nil {
		return "", false
	}
	defer f.Close()
	what, err := probe.Identify(f)
	if err != nil {
		return "", false
	}
	switch t := probe.MountType(what); t {
	case "ext4", "erofs", "squashfs":
		return t, true
	}
	return "", false
}

// mkfsExt4 makes a read-only-friendly ext4 (no journal, no reserved
// blocks) of size bytes from the directory src, with the UUID and the
// directory hash seed derived from seed and the file system's own times
// fixed (E2FSPROGS_FAKE_TIME), so that the same tree gives the same image.
// mke2fs 1.47.0 copies each file's atime, mtime and ctime from the tree.
func mkfsExt4(ctx context.Context, src, out string, size int64, seed Seed) error {
	mkfs, err := initrd.LookTool("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return err
	}
	u := seed.UUID("root ext4 uuid").String()
	h := seed.UUID("root ext4 hash seed").String()
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-O", "^has_journal",
		"-U", u, "-E", "hash_seed="+h+",root_owner=0:0", "-L", "root", "-d", src, out, fmt.Sprint(size/1024)+"k")
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 of %s (%d bytes): %w: %s", src, size, err, toolOutput(b))
	}
	return nil
}

// mkfsErofs makes an erofs image of src with every file owned by root, zero
// timestamps and a UUID derived from seed.
func mkfsErofs(ctx context.Context, src, out string, seed Seed) error {
	mkfs, err := initrd.LookTool("mkfs.erofs", "erofs-utils")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, mkfs, "-T0", "--all-root", "-U", seed.UUID("root erofs uuid").String(), out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.erofs of %s: %w: %s", src, err, toolOutput(b))
	}
	return nil
}

// ext4Size sizes an ext4 file system for a tree of need bytes
// ([treeSize]): a tenth more for metadata and 16 MiB of room, rounded to a
// MiB.
func ext4Size(need int64) int64 {
	n := need + need/10 + 16<<20
	return (n + 1<<20 - 1) &^ (1<<20 - 1)
}

// treeSize is what the tree at src takes in a 4 KiB-block ext4 at least:
// every file and directory rounded up to a block, plus an inode each.
func treeSize(src string) (int64, error) {
	var blocks, inodes int64
	err := filepath.WalkDir(src, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inodes++
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			blocks += (fi.Size() + 4095) / 4096
		} else {
			blocks++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size the root tree: %w", err)
	}
	return blocks*4096 + inodes*256, nil
}

// toolOutput is a tool's output on one line, for an error message.
func toolOutput(b []byte) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", " | ")), " ")
}

// extractTar unpacks the tar archive (plain or gzip) at p into dir without
// root: regular files, directories and symlinks, with their permission
// bits and mtimes (atime = mtime, so the ext4 made from it does not depend
// on when the archive was unpacked). Owners become root in the image
// (root_owner, --all-root); device nodes and hard links are refused.
func extractTar(p, dir string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var r io.Reader = f
	if zr, err := gzip.NewReader(f); err == nil {
		r = zr
	} else if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	tr := tar.NewReader(r)
	dirTimes := map[string]time.Time{}
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) && n > 0 {
			break
		}
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%s is neither a file system image nor a tar archive (or it is an empty one)", p)
		}
		if err != nil {
			return "", fmt.Errorf("%s is neither a file system image nor a tar archive: %w", p, err)
		}
		if err := extractEntry(tr, h, dir); err != nil {
			return "", fmt.Errorf("%s: %s: %w", p, h.Name, err)
		}
		if h.Typeflag == tar.TypeDir {
			dirTimes[filepath.Join(dir, filepath.Clean("/"+h.Name))] = h.ModTime
		}
	}
	return dir, fixDirTimes(dir, dirTimes)
}

// extractEntry writes one archive member below dir.
func extractEntry(r io.Reader, h *tar.Header, dir string) error {
	name := filepath.Clean("/" + h.Name)
	if name == "/" {
		return nil
	}
	target := filepath.Join(dir, name)
	if err := noSymlinkParents(dir, name); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	mode := fs.FileMode(h.Mode).Perm()
	switch h.Typeflag {
	case tar.TypeDir:
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		return os.Chmod(target, mode|0o700)
	case tar.TypeSymlink:
		return os.Symlink(h.Linkname, target)
	case tar.TypeReg:
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode|0o600)
		if err != nil {
			return err
		}
		_, cerr := io.Copy(f, r)
		if err := errors.Join(cerr, f.Close()); err != nil {
			return err
		}
		return os.Chtimes(target, h.ModTime, h.ModTime)
	}
	return fmt.Errorf("unsupported member type %q (only files, directories and symlinks)", h.Typeflag)
}

// noSymlinkParents refuses a member whose parent directories include a
// symlink unpacked before it: writing through it could leave dir (an
// archive holding "etc -> /etc" and then "etc/passwd").
func noSymlinkParents(dir, name string) error {
	p := dir
	for _, c := range strings.Split(strings.Trim(filepath.Dir(name), "/"), "/") {
		if c == "" {
			continue
		}
		p = filepath.Join(p, c)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("parent %s is a symlink in the archive: refusing to write through it", strings.TrimPrefix(p, dir))
		}
	}
	return nil
}

// fixDirTimes sets every directory's times to its archive member's mtime
// (the Unix epoch for a directory the archive only implies), since
// extracting into them changed them.
func fixDirTimes(dir string, times map[string]time.Time) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		t, ok := times[p]
		if !ok {
			t = time.Unix(0, 0)
		}
		return os.Chtimes(p, t, t)
	})
}
