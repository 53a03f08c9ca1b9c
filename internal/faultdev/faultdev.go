// Package faultdev is a test double for a disk with a volatile write
// cache, for proving that a sequence of writes survives a power cut or an
// I/O error at any point.
//
// A [Disk] holds an image in memory. WriteAt goes to a pending layer (the
// cache); Sync makes everything pending durable. Reads see pending writes
// over the durable image, as a page cache does. Every WriteAt and Sync is an
// event, counted from 0. [Disk.CutAt] loses power at an event: what was
// pending then is dropped (Cache), kept (WriteThrough: a disk without a
// cache) or kept sector by sector at random (Torn: a cache that flushed some
// of its sectors), and the event and everything after it is dropped while
// reporting success, as if the process had died and the disk had gone away.
// [Disk.FailWriteAt] instead fails one WriteAt with EIO and lets the others
// through. The disk never grows: a write past its end fails, as on a block
// device.
package faultdev

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"syscall"
)

// SectorSize is the unit in which a Torn cut keeps or drops pending writes.
const SectorSize = 512

// Mode says what a power cut does with the writes not synced yet.
type Mode int

// The modes of [Disk.CutAt].
const (
	Cache        Mode = iota // drop every write since the last Sync
	WriteThrough             // keep every write issued before the cut
	Torn                     // keep a random subset of their sectors
)

func (m Mode) String() string {
	switch m {
	case Cache:
		return "cache"
	case WriteThrough:
		return "write-through"
	case Torn:
		return "torn"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ErrClosed is returned by operations on a closed Disk.
var ErrClosed = errors.New("faultdev: disk is closed")

type write struct {
	off int64
	b   []byte
}

// Disk is a disk in memory with a volatile write cache. Its methods are
// safe for concurrent use.
type Disk struct {
	mu      sync.Mutex
	durable []byte
	pending []write
	events  int // WriteAt and Sync calls seen
	writes  int // WriteAt calls seen
	cutAt   int // event at which power is lost; -1: never
	mode    Mode
	rng     *rand.Rand
	failAt  int // WriteAt that fails with EIO; -1: never
	cut     bool
	closed  bool
}

// New returns a disk holding a copy of image, with no fault planned.
func New(image []byte) *Disk {
	return &Disk{durable: append([]byte(nil), image...), cutAt: -1, failAt: -1}
}

// CutAt plans a power cut at event n (0 is the first WriteAt or Sync); seed
// drives the choice of sectors in Torn mode.
func (d *Disk) CutAt(n int, m Mode, seed uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cutAt, d.mode, d.rng = n, m, rand.New(rand.NewPCG(seed, uint64(n)))
}

// FailWriteAt plans WriteAt number n (from 0) to fail with EIO.
func (d *Disk) FailWriteAt(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failAt = n
}

// Size is the size of the disk in bytes.
func (d *Disk) Size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return int64(len(d.durable))
}

// ReadAt reads the disk as the writer sees it: pending writes over durable
// ones (after a cut, what survived it).
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("faultdev: negative offset %d", off)
	}
	if off >= int64(len(d.durable)) {
		return 0, io.EOF
	}
	n := copy(p, d.durable[off:])
	for _, w := range d.pending {
		overlay(p[:n], off, w)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// overlay copies the part of w that falls into p (which starts at off).
func overlay(p []byte, off int64, w write) {
	a, b := max(off, w.off), min(off+int64(len(p)), w.off+int64(len(w.b)))
	if a < b {
		copy(p[a-off:b-off], w.b[a-w.off:b-w.off])
	}
}

// WriteAt caches a write.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	n := d.writes
	d.writes++
	fits := off >= 0 && off+int64(len(p)) <= int64(len(d.durable))
	if fits && !d.cut && d.events == d.cutAt && d.mode == Torn {
		d.pending = append(d.pending, write{off, append([]byte(nil), p...)}) // in flight: torn too
	}
	if d.event() {
		return len(p), nil
	}
	if n == d.failAt {
		return 0, fmt.Errorf("faultdev: write %d at %d: %w", n, off, syscall.EIO)
	}
	if !fits {
		return 0, fmt.Errorf("faultdev: write of %d bytes at %d is past the end of the %d-byte disk: %w",
			len(p), off, len(d.durable), syscall.ENOSPC)
	}
	d.pending = append(d.pending, write{off, append([]byte(nil), p...)})
	return len(p), nil
}

// Sync makes the pending writes durable.
func (d *Disk) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.event() {
		return nil
	}
	d.flush(func(int64) bool { return true })
	return nil
}

// event counts an event and reports whether power is off by now (cutting
// it if this is the planned event).
func (d *Disk) event() bool {
	n := d.events
	d.events++
	if !d.cut && n == d.cutAt {
		d.powerCut()
	}
	return d.cut
}

func (d *Disk) powerCut() {
	d.cut = true
	switch d.mode {
	case WriteThrough:
		d.flush(func(int64) bool { return true })
	case Torn:
		d.flush(func(int64) bool { return d.rng.IntN(2) == 0 })
	}
	d.pending = nil
}

// flush applies the pending writes in order, each sector only if keep says so.
func (d *Disk) flush(keep func(sector int64) bool) {
	for _, w := range d.pending {
		for i := int64(0); i < int64(len(w.b)); i += SectorSize {
			if keep((w.off + i) / SectorSize) {
				copy(d.durable[w.off+i:], w.b[i:min(i+SectorSize, int64(len(w.b)))])
			}
		}
	}
	d.pending = nil
}

// Close closes the disk; its contents stay readable with [Disk.Durable].
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

// Events is the number of WriteAt and Sync calls so far.
func (d *Disk) Events() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.events
}

// Writes is the number of WriteAt calls so far.
func (d *Disk) Writes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes
}

// PowerLost reports whether the planned cut has happened.
func (d *Disk) PowerLost() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cut
}

// Durable returns a copy of what a power cut now would leave (after a
// cut: what survived it).
func (d *Disk) Durable() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.durable...)
}

// Flushed returns a copy of what an orderly shutdown now would leave: the
// durable image with the pending writes applied.
func (d *Disk) Flushed() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := append([]byte(nil), d.durable...)
	for _, w := range d.pending {
		overlay(b, 0, w)
	}
	return b
}
