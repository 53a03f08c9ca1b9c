package initrd

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
)

// entry is one member of an [Archive].
type entry struct {
	mode   fs.FileMode // type bits and permissions
	data   []byte
	src    string // a host file read when the archive is written
	target string // symlinks
	major  uint32 // devices
	minor  uint32
}

// Archive is the contents of an initramfs by guest path (absolute, clean).
// Adding a path twice keeps the last one. [Archive.Write] writes it in
// sorted path order with every missing parent directory, so the same
// contents always give the same bytes.
type Archive struct {
	entries map[string]entry
}

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]entry{}} }

func (a *Archive) put(p string, e entry) { a.entries[path.Clean("/"+p)] = e }

// File adds a regular file.
func (a *Archive) File(p string, perm fs.FileMode, data []byte) {
	a.put(p, entry{mode: perm.Perm(), data: data})
}

// Dir adds a directory.
func (a *Archive) Dir(p string, perm fs.FileMode) { a.put(p, entry{mode: fs.ModeDir | perm.Perm()}) }

// Symlink adds a symbolic link to target.
func (a *Archive) Symlink(p, target string) {
	a.put(p, entry{mode: fs.ModeSymlink | 0o777, target: target})
}

// CharDevice adds a character device node.
func (a *Archive) CharDevice(p string, perm fs.FileMode, major, minor uint32) {
	a.put(p, entry{mode: fs.ModeCharDevice | perm.Perm(), major: major, minor: minor})
}

// Has reports whether p was added.
func (a *Archive) Has(p string) bool {
	_, ok := a.entries[path.Clean("/"+p)]
	return ok
}

// HostFile copies the regular host file src to guest path p, with its
// permission bits. The file is read when the archive is written (one at a
// time, so that an archive of large files does not sit in memory).
func (a *Archive) HostFile(p, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("add %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("add %s: %s is not a regular file", p, src)
	}
	return a.hostFile(p, src, fi.Mode().Perm())
}

// hostFile adds the host file src as p with the permission bits perm.
func (a *Archive) hostFile(p, src string, perm fs.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("add %s: %w", p, err)
	}
	f.Close()
	a.put(p, entry{mode: perm.Perm(), src: src})
	return nil
}

// Paths returns every added path, sorted.
func (a *Archive) Paths() []string {
	names := make([]string, 0, len(a.entries))
	for p := range a.entries {
		names = append(names, p)
	}
	sort.Strings(names)
	return names
}

// Write writes the archive as a newc cpio archive (see [CPIOWriter]).
func (a *Archive) Write(w io.Writer) error {
	all := map[string]entry{}
	for p, e := range a.entries {
		all[p] = e
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = entry{mode: fs.ModeDir | 0o755}
			}
		}
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	cw := NewCPIOWriter(w)
	for _, p := range names {
		if err := writeEntry(cw, p, all[p]); err != nil {
			return err
		}
	}
	return cw.Close()
}

func writeEntry(w *CPIOWriter, p string, e entry) error {
	switch {
	case e.mode.IsDir():
		return w.Dir(p, e.mode)
	case e.mode&fs.ModeSymlink != 0:
		return w.Symlink(p, e.target)
	case e.mode&fs.ModeCharDevice != 0:
		return w.CharDevice(p, e.mode, e.major, e.minor)
	case e.src != "":
		data, err := os.ReadFile(e.src)
		if err != nil {
			return fmt.Errorf("add %s: %w", p, err)
		}
		return w.File(p, e.mode, data)
	}
	return w.File(p, e.mode, e.data)
}
