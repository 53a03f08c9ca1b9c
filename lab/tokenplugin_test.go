package lab

import (
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTrixieTokenPlugin: the pinned trixie packages unpack into a tree whose
// cryptsetup runs on this host with its own loader and libraries (2.7, with
// systemd 257's plugin), and GuestFiles ships the plugin, the libraries
// systemd loads with dlopen and everything they link, all from the tree; a
// tree that lacks a library is refused by name.
func TestTrixieTokenPlugin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := TrixieTokenPlugin(ctx, "")
	if err != nil {
		missingOrFatal(t, err)
	}
	if p.CryptsetupVersion != "2:2.7.5-2" || !strings.HasPrefix(p.SystemdVersion, "257.") {
		t.Errorf("versions %q, %q; want cryptsetup 2:2.7.5-2 and systemd 257", p.CryptsetupVersion, p.SystemdVersion)
	}
	args := append(p.Command(p.Root), "--version")
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "cryptsetup 2.7.5") {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}

	files, err := p.GuestFiles("/trixie")
	if err != nil {
		t.Fatal(err)
	}
	lib := "/trixie/usr/lib/x86_64-linux-gnu/"
	for _, want := range []string{
		lib + "ld-linux-x86-64.so.2", "/trixie/usr/sbin/cryptsetup",
		lib + "cryptsetup/libcryptsetup-token-systemd-tpm2.so", lib + "libcryptsetup.so.12",
		lib + "libtss2-esys.so.0", lib + "libtss2-rc.so.0", lib + "libtss2-mu.so.0", lib + "libtss2-tcti-device.so.0",
		lib + "libtss2-sys.so.1", // esys's, found through DT_NEEDED
		lib + "libc.so.6", lib + "libcrypto.so.3",
	} {
		if _, ok := files[want]; !ok {
			t.Errorf("GuestFiles lacks %s", want)
		}
	}
	var shared bool
	for guest, host := range files {
		if !strings.HasPrefix(host, p.Root+"/") {
			t.Errorf("%s comes from %s, outside the tree", guest, host)
		}
		shared = shared || strings.HasPrefix(guest, lib+"systemd/libsystemd-shared-257")
	}
	if !shared {
		t.Error("GuestFiles lacks the plugin's libsystemd-shared-257")
	}

	// The same tree without libjson-c (libcryptsetup's).
	partial := t.TempDir()
	for guest, host := range files {
		if path.Base(guest) == "libjson-c.so.5" {
			continue
		}
		dst := filepath.Join(partial, strings.TrimPrefix(guest, "/trixie/"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(host, dst); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := (&TokenPlugin{Root: partial}).GuestFiles("/trixie"); err == nil || !strings.Contains(err.Error(), "libjson-c.so.5") {
		t.Errorf("GuestFiles of a tree without libjson-c: %v", err)
	}
}
