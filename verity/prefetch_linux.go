package verity

import (
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// prefetcher reads a mapped file into the page cache ahead of the workers
// that hash it, in a goroutine of its own that may block on the disk while
// they hash. It reads through a second mapping of the file, populated
// (MADV_POPULATE_READ) a piece at a time and unmapped again at once, so
// that it never adds to the process's resident memory: MADV_WILLNEED, the
// obvious tool, reads into 4 KiB folios whatever the mapping's advice
// (mm/readahead.c, force_page_cache_ra), which then cost a fault per sixteen
// pages and an unmap per page, 0.4 s of system time per GiB; a fault in a
// VM_HUGEPAGE mapping reads 2 MiB folios, mapped with one PMD entry each.
// Pieces the page cache holds already are skipped, and the workers do not
// wake the prefetcher for a range the page cache holds ([prefetcher.cached]):
// on a file that is read from the page cache, a goroutine woken for every
// chunk only takes turns with the workers (measured on 1 GiB: 1.79 CPUs busy
// instead of 1.92, 4-6 % more wall time).
type prefetcher struct {
	fd     int           // the file, for cachestat
	b      []byte        // the prefetcher's own mapping of the file
	want   *atomic.Int64 // how far the file is to be read (Mapping.raEnd)
	from   atomic.Int64  // how far the workers have come: nothing behind is read
	signal chan struct{} // want moved
	stop   chan struct{} // close: return
	done   chan struct{} // closed on return
	vec    []byte        // mincore's answer for one piece
}

// prefetchPiece is how much the prefetcher maps, reads and unmaps at once:
// one PMD-sized folio.
const prefetchPiece = 2 << 20

// startPrefetcher starts reading f ahead as far as *want says, or returns
// nil if f cannot be mapped a second time (the workers then read what they
// need themselves).
func startPrefetcher(f *os.File, size int, want *atomic.Int64) *prefetcher {
	b, err := mapForReading(f, size)
	if err != nil {
		return nil
	}
	p := &prefetcher{
		fd:     int(f.Fd()),
		b:      b,
		want:   want,
		signal: make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		vec:    make([]byte, prefetchPiece/os.Getpagesize()),
	}
	go p.run()
	return p
}

// reached records that the workers have come to off.
func (p *prefetcher) reached(off int64) {
	for {
		cur := p.from.Load()
		if off <= cur || p.from.CompareAndSwap(cur, off) {
			return
		}
	}
}

// wake tells the prefetcher that want moved.
func (p *prefetcher) wake() {
	select {
	case p.signal <- struct{}{}:
	default: // a wake-up is pending already
	}
}

func (p *prefetcher) run() {
	defer close(p.done)
	var pos int64
	for {
		for pos = max(pos, p.from.Load()); pos < p.want.Load(); pos = max(pos, p.from.Load()) {
			n := min(prefetchPiece-pos%prefetchPiece, p.want.Load()-pos)
			p.read(pos, n)
			pos += n
			select {
			case <-p.stop:
				return
			default:
			}
		}
		select {
		case <-p.signal:
		case <-p.stop:
			return
		}
	}
}

// read brings [off, off+n) into the page cache unless it is there: the
// pages are mapped, which reads them, and unmapped again.
func (p *prefetcher) read(off, n int64) {
	if all, ok := p.cached(off, n); all || !ok && p.residentMincore(off, n) {
		return
	}
	r := p.b[off : off+n]
	_ = unix.Madvise(r, madvPopulateRead)
	_ = unix.Madvise(r, unix.MADV_DONTNEED)
}

// cached reports whether the page cache holds every page of [off, off+n)
// of the file, as cachestat(2) counts them: it walks the page cache a folio
// at a time, a few microseconds for 16 MiB in 2 MiB folios, and any
// goroutine may ask. ok is false where the kernel has no cachestat (before
// Linux 6.5) or refuses it: Linux 6.18 answers EPERM unless the caller owns
// the file, may write it or has CAP_FOWNER (checked here: root is answered,
// nobody is not), and the workers then wake the prefetcher for every range
// as before.
func (p *prefetcher) cached(off, n int64) (all, ok bool) {
	var cs unix.Cachestat_t
	r := unix.CachestatRange{Off: uint64(off), Len: uint64(n)}
	if err := unix.Cachestat(uint(p.fd), &r, &cs, 0); err != nil {
		return false, false
	}
	page := int64(os.Getpagesize())
	return int64(cs.Cache) >= (off+n+page-1)/page-off/page, true
}

// residentMincore is cached through mincore(2) on the prefetcher's
// mapping, which looks up every page. Only the prefetcher's goroutine may
// call it (vec is its own).
func (p *prefetcher) residentMincore(off, n int64) bool {
	r := p.b[off : off+n]
	vec := p.vec[:(len(r)+os.Getpagesize()-1)/os.Getpagesize()]
	return mincore(r, vec) == nil && allResident(vec)
}

// mincore fills vec with the page cache residency of the pages of b
// (mincore(2)), which x/sys/unix has no Linux wrapper for.
func mincore(b, vec []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if errno != 0 {
		return errno
	}
	return nil
}

// allResident reports whether mincore said so of every page.
func allResident(vec []byte) bool {
	for _, v := range vec {
		if v&1 == 0 {
			return false
		}
	}
	return true
}

// close stops the prefetcher, waiting for the piece it is reading, and
// unmaps its mapping.
func (p *prefetcher) close() error {
	close(p.stop)
	<-p.done
	return unix.Munmap(p.b)
}
