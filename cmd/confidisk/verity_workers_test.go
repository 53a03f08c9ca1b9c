package main

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

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
