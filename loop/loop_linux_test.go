//go:build linux

package loop

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// needLoop reports a missing prerequisite through testutil.Missing.
func needLoop(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Missing(t, "root", "run the loop tests as root (sudo go test ./loop/)")
	}
	if _, err := os.Stat(ControlPath); err != nil {
		testutil.Missing(t, ControlPath, "modprobe loop")
	}
}

// image writes size random bytes to a temp file and returns path and data.
func image(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, data
}

func attach(t *testing.T, p string, opts Options) *Device {
	t.Helper()
	d, err := Attach(p, opts)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	t.Cleanup(func() {
		if d.f != nil {
			_ = d.Detach()
		}
	})
	return d
}

func deviceSize(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		t.Fatalf("BLKGETSIZE64: %v", err)
	}
	return n
}

func TestAttachReadOnly(t *testing.T) {
	needLoop(t)
	p, data := image(t, 1<<20)
	d := attach(t, p, Options{ReadOnly: true, Offset: 4096, SizeLimit: 64 << 10})

	info, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	got := struct {
		Offset, Sizelimit uint64
		ReadOnly          bool
		Name              string
	}{info.Offset, info.Sizelimit, info.Flags&unix.LO_FLAGS_READ_ONLY != 0, string(bytes.TrimRight(info.File_name[:], "\x00"))}
	want := struct {
		Offset, Sizelimit uint64
		ReadOnly          bool
		Name              string
	}{4096, 64 << 10, true, p}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loop status (-want +got):\n%s", diff)
	}
	if n := deviceSize(t, d.Path); n != 64<<10 {
		t.Errorf("device size = %d, want %d", n, 64<<10)
	}

	f, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatalf("read %s: %v", d.Path, err)
	}
	f.Close()
	if !bytes.Equal(buf, data[4096:4096+64<<10]) {
		t.Error("bytes read through the loop device differ from the file at the offset")
	}

	w, err := os.OpenFile(d.Path, os.O_WRONLY, 0)
	if err == nil {
		_, err = w.WriteAt([]byte("x"), 0)
		w.Close()
	}
	if err == nil {
		t.Error("writing to a read-only loop device succeeded")
	}

	found, err := FindByBackingFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(found, d.Path) {
		t.Errorf("FindByBackingFile(%s) = %v, want it to include %s", p, found, d.Path)
	}

	if err := d.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	d.f = nil
	waitDetached(t, p, d.Path)
}

func TestAttachReadWrite(t *testing.T) {
	needLoop(t)
	p, data := image(t, 256<<10)
	d := attach(t, p, Options{})
	if n := deviceSize(t, d.Path); n != 256<<10 {
		t.Errorf("device size = %d, want %d", n, 256<<10)
	}

	msg := bytes.Repeat([]byte("confidisk"), 1000)
	f, err := os.OpenFile(d.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(msg, 8192); err != nil {
		t.Fatalf("write %s: %v", d.Path, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("sync %s: %v", d.Path, err)
	}
	f.Close()
	if err := d.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	d.f = nil

	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), data...)
	copy(want[8192:], msg)
	if !bytes.Equal(got, want) {
		t.Error("backing file after writing through the loop device is not the expected bytes")
	}
}

func TestAttachAutoClearAndDirectIO(t *testing.T) {
	needLoop(t)
	p, data := image(t, 128<<10)
	d := attach(t, p, Options{AutoClear: true, DirectIO: true, BlockSize: 4096})
	info, err := d.Status()
	if err != nil {
		t.Fatal(err)
	}
	if info.Flags&unix.LO_FLAGS_AUTOCLEAR == 0 {
		t.Errorf("flags %#x lack LO_FLAGS_AUTOCLEAR", info.Flags)
	}
	f, err := os.Open(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	var bs int
	bs, err = unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		t.Fatal(err)
	}
	if bs != 4096 {
		t.Errorf("logical block size = %d, want 4096", bs)
	}
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !bytes.Equal(buf, data[4096:8192]) {
		t.Error("bytes read through the loop device differ from the file")
	}

	// Closing our descriptor is the last close: autoclear detaches.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d.f = nil
	waitDetached(t, p, d.Path)
}

func TestAttachErrors(t *testing.T) {
	needLoop(t)
	if _, err := Attach(filepath.Join(t.TempDir(), "missing.img"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Attach(missing file) error = %v, want ErrNotExist", err)
	}
	p, _ := image(t, 4096)
	if _, err := Attach(p, Options{BlockSize: 1000}); err == nil {
		t.Error("Attach with block size 1000: want an error")
	}
}

func TestEnsureNodeCreatesMissingNode(t *testing.T) {
	needLoop(t)
	p := filepath.Join(t.TempDir(), "loop7")
	if err := ensureNode(7, p); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || unix.Major(st.Rdev) != 7 || unix.Minor(st.Rdev) != 7 {
		t.Errorf("node %s: mode %#o rdev %d:%d, want block 7:7", p, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
}

// waitDetached fails the test unless path stops being backed by backing
// within two seconds: the kernel may run the rundown of a loop device from
// a workqueue after the last close.
func waitDetached(t *testing.T, backing, path string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		found, err := FindByBackingFile(backing)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(found, path) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still attached to %s", path, backing)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
