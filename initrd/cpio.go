package initrd

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// CPIOWriter writes a cpio archive in the "newc" (SVR4, no CRC) format that
// the Linux kernel unpacks as an initramfs. Entries are written in call
// order; parent directories must come before their contents. Owners are
// root, timestamps zero, so the same calls give the same bytes.
type CPIOWriter struct {
	w   *bufio.Writer
	n   int64 // bytes written, for the 4-byte alignment
	ino uint32
	err error
}

// NewCPIOWriter returns a writer that writes the archive to w. Call Close to
// write the trailer.
func NewCPIOWriter(w io.Writer) *CPIOWriter {
	return &CPIOWriter{w: bufio.NewWriterSize(w, 1<<16)}
}

// Dir adds a directory with the given permission bits.
func (c *CPIOWriter) Dir(name string, perm fs.FileMode) error {
	return c.entry(name, 0o040000|uint32(perm.Perm()), 0, 0, nil)
}

// File adds a regular file with the given permission bits and contents.
func (c *CPIOWriter) File(name string, perm fs.FileMode, data []byte) error {
	return c.entry(name, 0o100000|uint32(perm.Perm()), 0, 0, data)
}

// Symlink adds a symbolic link name pointing at target.
func (c *CPIOWriter) Symlink(name, target string) error {
	return c.entry(name, 0o120000|0o777, 0, 0, []byte(target))
}

// CharDevice adds a character device node.
func (c *CPIOWriter) CharDevice(name string, perm fs.FileMode, major, minor uint32) error {
	return c.entry(name, 0o020000|uint32(perm.Perm()), major, minor, nil)
}

// Close writes the trailer and flushes; it does not close the underlying
// writer.
func (c *CPIOWriter) Close() error {
	if c.err != nil {
		return c.err
	}
	c.ino = 0
	if err := c.header("TRAILER!!!", 0, 0, 0, 0); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		c.err = fmt.Errorf("cpio: flush: %w", err)
	}
	return c.err
}

func (c *CPIOWriter) entry(name string, mode, rmajor, rminor uint32, data []byte) error {
	if c.err != nil {
		return c.err
	}
	name = strings.TrimPrefix(name, "/")
	if name == "" || strings.Contains(name, "\x00") {
		return fmt.Errorf("cpio: invalid entry name %q", name)
	}
	c.ino++
	if err := c.header(name, mode, uint32(len(data)), rmajor, rminor); err != nil {
		return err
	}
	c.write(data)
	c.pad()
	return c.err
}

// header writes one newc header and the name, padded to 4 bytes.
func (c *CPIOWriter) header(name string, mode, size, rmajor, rminor uint32) error {
	nlink := uint32(1)
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	if name == "TRAILER!!!" {
		nlink = 1
	}
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	c.write([]byte(h))
	c.write([]byte(name + "\x00"))
	c.pad()
	return c.err
}

func (c *CPIOWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	if err != nil {
		c.err = fmt.Errorf("cpio: write: %w", err)
	}
}

func (c *CPIOWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}
