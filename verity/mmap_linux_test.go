package verity

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMappingFormatAndVerify(t *testing.T) {
	p := DefaultParams(3000)
	p.Salt = []byte("mapped")
	data, hashDev, root := randomTree(t, p, 11)
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, data.b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := Map(f, int64(len(data.b)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got := &memDev{}
	mroot, err := Format(context.Background(), m, got, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mroot, root) || !bytes.Equal(got.b, hashDev.b) {
		t.Fatal("format from a mapping differs from format from a reader")
	}
	if err := Verify(context.Background(), m, hashDev, p, root, nil); err != nil {
		t.Fatalf("Verify from a mapping: %v", err)
	}

	// A file that shrinks under the mapping gives an error, not a crash.
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	err = Verify(context.Background(), m, hashDev, p, root, nil)
	if err == nil || !strings.Contains(err.Error(), "fault") {
		t.Fatalf("Verify of a shrunken mapped file: got %v, want a memory fault error", err)
	}
}

// TestReadAheadFrontier checks that slice asks for each byte ahead once: the
// frontier moves forward by what a slice adds, never back, and stops at the
// end of the mapping.
func TestReadAheadFrontier(t *testing.T) {
	const size = readAheadBytes + 8<<20
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := Map(f, size)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	page := int64(os.Getpagesize())
	steps := []struct {
		off, n int64
		want   int64
	}{
		{0, 1 << 20, 1<<20 + readAheadBytes},
		{0, page, 1<<20 + readAheadBytes}, // behind the frontier: unchanged
		{2 << 20, 1<<20 + 100, (3<<20 + 100 + readAheadBytes) / page * page},
		{size - page, page, size}, // clipped at the end
		{4 << 20, page, size},
	}
	for _, s := range steps {
		if _, ok := m.slice(s.off, int(s.n)); !ok {
			t.Fatalf("slice(%d, %d) failed", s.off, s.n)
		}
		if got := m.raEnd.Load(); got != s.want {
			t.Errorf("after slice(%d, %d): read-ahead frontier %d, want %d", s.off, s.n, got, s.want)
		}
	}
}

// droppedFile returns a file of size bytes, open for reading, none of
// which is in the page cache.
func droppedFile(t *testing.T, size int) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, bytes.Repeat([]byte{0x5a}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPrefetcherReadsAhead: after the pages of a file are dropped from the
// page cache, readAhead has the prefetcher bring the requested range back
// without the workers touching it, and Close stops the prefetcher.
func TestPrefetcherReadsAhead(t *testing.T) {
	const size = 3 * readAheadBytes
	f := droppedFile(t, size)
	goroutines := runtime.NumGoroutine()
	m, err := Map(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if m.ahead == nil {
		t.Fatal("no prefetcher")
	}
	m.readAhead(0)
	vec := make([]byte, readAheadBytes/os.Getpagesize())
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := mincore(m.b[:readAheadBytes], vec); err != nil {
			t.Fatal(err)
		}
		if allResident(vec) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first read-ahead range is not in the page cache after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// The prefetcher's goroutine has returned once Close has.
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines after Close, %d before Map", n, goroutines)
	}
}

// TestPrefetcherCached checks the page cache residency that decides whether
// the workers wake the prefetcher against mincore(2), on a file dropped from
// the page cache and then read back in part, and that readAhead wakes the
// prefetcher for the part that is not cached and only for it.
func TestPrefetcherCached(t *testing.T) {
	const size = 4 * readAheadBytes
	f := droppedFile(t, size)
	b, err := mapForReading(f, size)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	// A prefetcher whose goroutine is not running: its wake-ups stay in
	// the channel.
	p := &prefetcher{fd: int(f.Fd()), b: b, signal: make(chan struct{}, 1), vec: make([]byte, size/os.Getpagesize())}
	m := &Mapping{b: b, ahead: p}

	m.readAhead(0)
	select {
	case <-p.signal:
	default:
		t.Error("readAhead over a dropped range did not wake the prefetcher")
	}

	// Read the first half back, as the prefetcher would, and no more
	// (POSIX_FADV_RANDOM: no read-ahead past it).
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, size/2), 0); err != nil {
		t.Fatal(err)
	}
	ranges := []struct {
		off, n int64
		want   bool
	}{
		{0, size / 2, true},
		{4096, 100, true},
		{size/2 - 1, 1, true},
		{size / 2, size / 2, false},
		{0, size, false},
		{size/2 - 4096, 8192, false},
	}
	for _, r := range ranges {
		all, ok := p.cached(r.off, r.n)
		if !ok {
			t.Logf("no cachestat(2) here: cached(%d, %d) cannot say", r.off, r.n)
		} else if all != r.want {
			t.Errorf("cached(%d, %d) = %v, want %v", r.off, r.n, all, r.want)
		}
		pg := int64(os.Getpagesize())
		if got := p.residentMincore(r.off/pg*pg, (r.off+r.n+pg-1)/pg*pg-r.off/pg*pg); got != r.want {
			t.Errorf("mincore over [%d, %d): resident %v, want %v", r.off, r.off+r.n, got, r.want)
		}
	}

	// The first two read-ahead ranges are cached now: no wake-up, until the
	// frontier passes into the half that is not.
	m.raEnd.Store(0)
	m.readAhead(0)
	m.readAhead(readAheadBytes)
	if _, ok := p.cached(0, 1); ok && len(p.signal) != 0 {
		t.Error("readAhead over a cached range woke the prefetcher")
	}
	m.readAhead(2 * readAheadBytes)
	if len(p.signal) != 1 {
		t.Error("readAhead into the dropped half did not wake the prefetcher")
	}
}

// TestHashingAllocations: formatting and verifying a mapped file allocates
// per level and per worker, not per batch of blocks, so that no garbage
// collection (which stops the world while the workers are in assembly)
// starts however large the data: 64 MiB (32 batches) allocates no more than
// 8 MiB (4 batches).
func TestHashingAllocations(t *testing.T) {
	allocs := func(size int) uint64 {
		t.Helper()
		f := droppedFile(t, size)
		m, err := Map(f, int64(size))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		p := Params{HashName: "sha256", HashType: 1, DataBlockSize: 4096, HashBlockSize: 4096,
			DataBlocks: uint64(size / 4096), Salt: bytes.Repeat([]byte{1}, 32), NoSuperblock: true}
		hashDev := &memDev{}
		if _, err := Format(context.Background(), m, hashDev, p, &Options{Workers: 2}); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		root, err := Format(context.Background(), m, hashDev, p, &Options{Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(context.Background(), m, hashDev, p, root, &Options{Workers: 2}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.Mallocs - before.Mallocs
	}
	small, large := allocs(8<<20), allocs(64<<20)
	if large > small+16 {
		t.Errorf("format and verify of 64 MiB: %d allocations, of 8 MiB: %d; want about the same", large, small)
	}
	t.Logf("allocations: %d for 8 MiB, %d for 64 MiB", small, large)
}
