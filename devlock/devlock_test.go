package devlock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/confidisk/confidisk/internal/testutil"
)

func TestFileLockExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	os.WriteFile(path, make([]byte, 4096), 0o600)
	a, err := Acquire(path, false, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Acquire(path, false, true)
	if err != nil {
		t.Fatalf("two shared locks: %v", err)
	}
	if _, err := Acquire(path, true, true); !errors.Is(err, ErrBusy) {
		t.Fatalf("exclusive lock while shared held: %v, want ErrBusy", err)
	}
	a.Unlock()
	b.Unlock()
	c, err := Acquire(path, true, true)
	if err != nil {
		t.Fatalf("exclusive after release: %v", err)
	}
	c.Unlock()
}

// TestCryptsetupHonoursOurLock holds our write lock on an image and checks
// that cryptsetup's luksDump (which takes a read lock) waits for it.
func TestCryptsetupHonoursOurLock(t *testing.T) {
	cs := testutil.LookPath(t, "cryptsetup", "cryptsetup-bin")
	path := filepath.Join(t.TempDir(), "img")
	f, _ := os.Create(path)
	f.Truncate(20 << 20)
	f.Close()
	if out, err := exec.Command("sh", "-c", "echo -n pw | "+cs+" luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file - "+path).CombinedOutput(); err != nil {
		t.Fatalf("luksFormat: %v\n%s", err, out)
	}
	l, err := Acquire(path, true, false)
	if err != nil {
		t.Fatal(err)
	}
	dump := exec.Command(cs, "luksDump", path)
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- dump.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("luksDump finished while we held the write lock (%v)", err)
	case <-time.After(700 * time.Millisecond):
	}
	l.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("luksDump after unlock: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("luksDump still waiting after unlock")
	}
}
