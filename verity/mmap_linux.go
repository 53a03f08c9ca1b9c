package verity

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Mapping is a read-only memory map of a file or block device. [Format] and
// [Verify] hash straight from it, without copying the data through read(2).
// A Mapping is an [io.ReaderAt] too, so it can be passed wherever data is.
//
// If the file shrinks while mapped, reading the lost pages faults; Format and
// Verify turn that fault into an error instead of a crash.
type Mapping struct {
	b     []byte
	raEnd atomic.Int64 // end of what readAhead has asked for
	ahead *prefetcher  // reads the file ahead of the workers; nil if it cannot
}

// Map maps the first size bytes of f read-only. Close unmaps it.
func Map(f *os.File, size int64) (*Mapping, error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, fmt.Errorf("map %s: cannot map %d bytes", f.Name(), size)
	}
	b, err := mapForReading(f, int(size))
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", f.Name(), err)
	}
	m := &Mapping{b: b}
	m.ahead = startPrefetcher(f, int(size), &m.raEnd)
	return m, nil
}

// mapForReading maps size bytes of f read-only for reading once, front to
// back: MADV_SEQUENTIAL, and MADV_HUGEPAGE so that what a fault reads from
// disk comes in folios of a PMD's size (2 MiB), which the mapping then maps
// with one entry each (mm/filemap.c, do_sync_mmap_readahead: a VM_HUGEPAGE
// mapping reads ahead in HPAGE_PMD_ORDER folios) instead of 4 KiB pages
// mapped, and later unmapped, one by one. Kernels without transparent huge
// pages refuse the advice, and read as before.
func mapForReading(f *os.File, size int) ([]byte, error) {
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	_ = unix.Madvise(b, unix.MADV_SEQUENTIAL)
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b, nil
}

// ReadAt implements [io.ReaderAt].
func (m *Mapping) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// madvPopulateRead is MADV_POPULATE_READ (Linux 5.14): map the pages of a
// range in one call instead of one page fault per few pages.
const madvPopulateRead = 22

// slice returns n mapped bytes at off without copying them, with their page
// table entries populated up front (older kernels fault them in as read).
func (m *Mapping) slice(off int64, n int) ([]byte, bool) {
	if off < 0 || off+int64(n) > int64(len(m.b)) {
		return nil, false
	}
	b := m.b[off : off+int64(n)]
	page := int64(os.Getpagesize())
	if start := off / page * page; n > 0 {
		_ = unix.Madvise(m.b[start:off+int64(n)], madvPopulateRead)
	}
	m.readAhead(off + int64(n))
	return b, true
}

// readAheadBytes is how far past the range being hashed [Mapping.slice]
// has the file read ahead: a few chunks per worker, so that the disk is
// busy while the workers hash what it read.
const readAheadBytes = 16 << 20

// readAhead has the prefetcher read up to readAheadBytes past from into the
// page cache, without waiting for it. Each byte is asked for once: the
// workers share the frontier raEnd, and the prefetcher skips what lies
// behind from, which the workers have reached. A range the page cache
// holds already does not wake the prefetcher.
func (m *Mapping) readAhead(from int64) {
	page := int64(os.Getpagesize())
	want := min((from+readAheadBytes)/page*page, int64(len(m.b)))
	if m.ahead != nil {
		m.ahead.reached(from)
	}
	for {
		done := m.raEnd.Load()
		if want <= done {
			return
		}
		if m.raEnd.CompareAndSwap(done, want) {
			if m.ahead != nil {
				if all, _ := m.ahead.cached(done, want-done); !all {
					m.ahead.wake()
				}
			}
			return
		}
	}
}

// release drops the pages of [off, off+n) from this process's mapping once
// hashed, so that resident memory stays bounded; the page cache keeps them.
func (m *Mapping) release(off int64, n int) {
	page := int64(os.Getpagesize())
	start := (off + page - 1) / page * page
	end := (off + int64(n)) / page * page
	if end > int64(len(m.b)) || start >= end {
		return
	}
	_ = unix.Madvise(m.b[start:end], unix.MADV_DONTNEED)
}

// Close stops the read-ahead and unmaps the file.
func (m *Mapping) Close() error {
	if m.b == nil {
		return nil
	}
	var err error
	if m.ahead != nil {
		err = m.ahead.close()
		m.ahead = nil
	}
	err = errors.Join(err, unix.Munmap(m.b))
	m.b = nil
	return err
}
