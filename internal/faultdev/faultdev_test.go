package faultdev

import (
	"bytes"
	"errors"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// run writes "a" to sector 0, syncs, then writes "b" to sector 1 and "c" to
// sector 2 (events 0 1 2 3, the last a Sync) and returns the first byte of
// each of the three sectors as they survive.
func run(t *testing.T, d *Disk) string {
	t.Helper()
	for _, op := range []struct {
		b   string
		off int64
	}{{"a", 0}, {"", 0}, {"b", 512}, {"c", 1024}, {"", 0}} {
		var err error
		if op.b == "" {
			err = d.Sync()
		} else {
			_, err = d.WriteAt([]byte(op.b), op.off)
		}
		if err != nil && !errors.Is(err, syscall.EIO) {
			t.Fatal(err)
		}
	}
	img := d.Durable()
	return string([]byte{img[0], img[512], img[1024]})
}

func TestDisk(t *testing.T) {
	tests := []struct {
		name string
		plan func(*Disk)
		want string
	}{
		{"no fault", func(*Disk) {}, "abc"},
		{"cut at the first write", func(d *Disk) { d.CutAt(0, Cache, 1) }, "..."},
		{"cut before the first sync", func(d *Disk) { d.CutAt(1, Cache, 1) }, "..."},
		{"cut before the first sync, write-through", func(d *Disk) { d.CutAt(1, WriteThrough, 1) }, "a.."},
		{"cut at the third write, cache", func(d *Disk) { d.CutAt(3, Cache, 1) }, "a.."},
		{"cut at the third write, write-through", func(d *Disk) { d.CutAt(3, WriteThrough, 1) }, "ab."},
		{"cut at the last sync, write-through", func(d *Disk) { d.CutAt(4, WriteThrough, 1) }, "abc"},
		{"EIO at the second write", func(d *Disk) { d.FailWriteAt(1) }, "a.c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := New(bytes.Repeat([]byte("."), 2048))
			tc.plan(d)
			if diff := cmp.Diff(tc.want, run(t, d)); diff != "" {
				t.Errorf("surviving sectors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTornKeepsSomeSectors(t *testing.T) {
	seen := map[string]bool{}
	for seed := range uint64(64) {
		d := New(bytes.Repeat([]byte("."), 2048))
		d.CutAt(4, Torn, seed)
		seen[run(t, d)] = true
	}
	for _, want := range []string{"a..", "ab.", "a.c", "abc"} {
		if !seen[want] {
			t.Errorf("torn cuts never left %q (saw %v)", want, seen)
		}
	}
}

func TestReadSeesPendingAndNeverGrows(t *testing.T) {
	d := New(make([]byte, 1024))
	if _, err := d.WriteAt([]byte("xy"), 10); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := d.ReadAt(b, 9); err != nil || string(b) != "\x00xy\x00" {
		t.Errorf("read %q, %v; want the pending write", b, err)
	}
	if d.Durable()[10] != 0 || d.Flushed()[10] != 'x' {
		t.Error("a write before Sync is durable, or missing from Flushed")
	}
	if _, err := d.WriteAt([]byte("z"), 1024); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("write past the end: %v, want ENOSPC", err)
	}
	if n, err := d.ReadAt(make([]byte, 8), 1020); n != 4 || err == nil {
		t.Errorf("short read at the end: %d, %v", n, err)
	}
}
