package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/confidisk/confidisk/verity"
)

// TestHashOptionsReadAheadP: hashing a Mapping runs one worker per P of
// GOMAXPROCS and one P more for the read-ahead, until restore; a plain file
// changes nothing.
func TestHashOptionsReadAheadP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	procs := runtime.GOMAXPROCS(0)

	opts, restore := hashOptions(f, nil)
	if opts.Workers != 0 || runtime.GOMAXPROCS(0) != procs {
		t.Errorf("plain file: Workers %d, GOMAXPROCS %d; want 0 and %d", opts.Workers, runtime.GOMAXPROCS(0), procs)
	}
	restore()

	m, err := verity.Map(f, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	opts, restore = hashOptions(m, nil)
	if opts.Workers != procs || runtime.GOMAXPROCS(0) != procs+1 {
		t.Errorf("mapping: Workers %d, GOMAXPROCS %d; want %d and %d", opts.Workers, runtime.GOMAXPROCS(0), procs, procs+1)
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("after restore: GOMAXPROCS %d, want %d", got, procs)
	}
}

// TestWritebackFileStartsWriteback: what a writebackFile writes arrives
// unchanged, and once a megabyte has been written the kernel has been told
// to write it out: none of it is still dirty in the page cache (cachestat).
func TestWritebackFileStartsWriteback(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "hash"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &writebackFile{File: f}
	want := make([]byte, writebackEvery)
	for i := range want {
		want[i] = byte(i * 7)
	}
	dirty := func() uint64 {
		t.Helper()
		var cs unix.Cachestat_t
		if err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{Off: 0, Len: writebackEvery}, &cs, 0); err != nil {
			t.Fatalf("cachestat: %v", err)
		}
		return cs.Dirty
	}
	const chunk = 16 << 10
	for off := 0; off < len(want); off += chunk {
		if off == len(want)/2 {
			if d := dirty(); d == 0 {
				t.Fatalf("half a megabyte written: no page dirty; the file system writes through, the test cannot tell")
			}
		}
		if _, err := w.WriteAt(want[off:off+chunk], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if d := dirty(); d != 0 {
		t.Errorf("after %d bytes: %d pages still dirty, want their writeback started", writebackEvery, d)
	}
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the file does not hold what was written")
	}
}
