package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/luks2"
)

// runIn executes the CLI in-process with stdin and returns stdout, stderr
// and the error.
func runIn(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func cs(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	c := exec.Command(testutil.LookPath(t, "cryptsetup", "cryptsetup-bin"), args...)
	c.Stdin = strings.NewReader(stdin)
	out, err := c.CombinedOutput()
	return string(out), err
}

var fastKDF = []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}

func luksImage(t *testing.T) (dir, img, key string) {
	t.Helper()
	dir = t.TempDir()
	img = filepath.Join(dir, "disk.img")
	f, _ := os.Create(img)
	f.Truncate(24 << 20)
	f.Close()
	key = filepath.Join(dir, "key")
	os.WriteFile(key, []byte("first passphrase"), 0o600)
	return dir, img, key
}

// TestLUKSDumpMatchesCryptsetup formats with the CLI and compares both dump
// forms with cryptsetup's, text for text.
func TestLUKSDumpMatchesCryptsetup(t *testing.T) {
	_, img, key := luksImage(t)
	args := append([]string{"luks", "format", "-q", "--key-file", key, "--label", "state", "--subsystem", "confidisk"}, fastKDF...)
	if _, _, err := runIn(t, "", append(args, img)...); err != nil {
		t.Fatal(err)
	}
	// A second keyslot with Argon2 and a token, through the CLI.
	if _, _, err := runIn(t, "second\n", "luks", "add-key", "--pbkdf", "argon2id", "--pbkdf-force-iterations", "4", "--pbkdf-memory", "1024", "--key-file", key, img); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runIn(t, `{"type":"confidisk-test","keyslots":["1"],"data":"x"}`, "luks", "token", "import", img); err != nil {
		t.Fatal(err)
	}
	for _, form := range [][]string{nil, {"--dump-json-metadata"}} {
		want, err := cs(t, "", append(append([]string{"luksDump"}, form...), img)...)
		if err != nil {
			t.Fatalf("cryptsetup luksDump: %v\n%s", err, want)
		}
		got, _, err := runIn(t, "", append(append([]string{"luks", "dump"}, form...), img)...)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(strings.TrimRight(want, "\n"), strings.TrimRight(got, "\n")); diff != "" {
			t.Errorf("luks dump %v (-cryptsetup +confidisk):\n%s", form, diff)
		}
	}
	for _, pass := range []string{"first passphrase", "second"} {
		if out, err := cs(t, pass, "open", "--test-passphrase", "--key-file", "-", img); err != nil {
			t.Errorf("cryptsetup --test-passphrase %q: %v\n%s", pass, err, out)
		}
		if _, _, err := runIn(t, pass+"\n", "luks", "open", "--test-passphrase", img); err != nil {
			t.Errorf("luks open --test-passphrase %q from stdin: %v", pass, err)
		}
	}
	out, _, err := runIn(t, "", "luks", "token", "export", "--token-id", "0", img)
	if err != nil || strings.TrimSpace(out) != `{"type":"confidisk-test","keyslots":["1"],"data":"x"}` {
		t.Errorf("token export: %q %v", out, err)
	}
}

func TestLUKSKeyManagement(t *testing.T) {
	dir, img, key := luksImage(t)
	if _, _, err := runIn(t, "", append(append([]string{"luks", "format", "-q", "--key-file", key}, fastKDF...), img)...); err != nil {
		t.Fatal(err)
	}
	k2 := filepath.Join(dir, "k2")
	os.WriteFile(k2, []byte("two"), 0o600)
	if _, errOut, err := runIn(t, "", append(append([]string{"luks", "add-key", "--key-file", key}, fastKDF...), img, k2)...); err != nil || !strings.Contains(errOut, "Key slot 1 created") {
		t.Fatalf("add-key: %v %s", err, errOut)
	}
	if _, errOut, err := runIn(t, "", "luks", "remove-key", "--key-file", key, img); err != nil || !strings.Contains(errOut, "Key slot 0 removed") {
		t.Fatalf("remove-key: %v %s", err, errOut)
	}
	if _, err := cs(t, "first passphrase", "open", "--test-passphrase", "--key-file", "-", img); err == nil {
		t.Error("removed passphrase still opens")
	}
	_, _, err := runIn(t, "", "luks", "open", "--test-passphrase", "--key-file", key, img)
	if !errors.Is(err, luks2.ErrWrongPassphrase) {
		t.Errorf("removed passphrase: %v, want ErrWrongPassphrase", err)
	}
	k3 := filepath.Join(dir, "k3")
	os.WriteFile(k3, []byte("three"), 0o600)
	if _, _, err := runIn(t, "", append(append([]string{"luks", "change-key", "--key-file", k2}, fastKDF...), img, k3)...); err != nil {
		t.Fatalf("change-key: %v", err)
	}
	if _, err := cs(t, "two", "open", "--test-passphrase", "--key-file", "-", img); err == nil {
		t.Error("changed passphrase still opens")
	}
	if _, _, err := runIn(t, "", append(append([]string{"luks", "change-key", "--key-file", k3}, fastKDF...), img, k2)...); err != nil {
		t.Fatalf("change-key back: %v", err)
	}
	if _, _, err := runIn(t, "", "luks", "kill-slot", img, "1"); err == nil {
		t.Error("killing the last keyslot without --force succeeded")
	}
	if out, err := cs(t, "two", "open", "--test-passphrase", "--key-file", "-", img); err != nil {
		t.Errorf("last keyslot after refused kill: %v\n%s", err, out)
	}
}

func TestLUKSHeaderBackupRestore(t *testing.T) {
	dir, img, key := luksImage(t)
	if _, _, err := runIn(t, "", append(append([]string{"luks", "format", "-q", "--key-file", key}, fastKDF...), img)...); err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(dir, "ours.bak")
	theirs := filepath.Join(dir, "theirs.bak")
	if _, _, err := runIn(t, "", "luks", "header-backup", "--header-backup-file", ours, img); err != nil {
		t.Fatal(err)
	}
	if out, err := cs(t, "", "luksHeaderBackup", "--header-backup-file", theirs, img); err != nil {
		t.Fatalf("luksHeaderBackup: %v\n%s", err, out)
	}
	a, _ := os.ReadFile(ours)
	b, _ := os.ReadFile(theirs)
	if !bytes.Equal(a, b) {
		t.Errorf("our backup (%d bytes) differs from cryptsetup's (%d bytes)", len(a), len(b))
	}
	// Destroy both header copies and the keyslots, then restore.
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt(make([]byte, 1<<20), 0)
	f.Close()
	if _, _, err := runIn(t, "", "luks", "open", "--test-passphrase", "--key-file", key, img); err == nil || !strings.Contains(err.Error(), "not a LUKS2 device") {
		t.Errorf("wiped header: %v", err)
	}
	if _, _, err := runIn(t, "", "luks", "header-restore", "--header-backup-file", ours, img); err == nil || !strings.Contains(err.Error(), "--batch-mode") {
		t.Fatalf("restore onto a wiped header without --batch-mode: %v", err)
	}
	if _, _, err := runIn(t, "", "luks", "header-restore", "-q", "--header-backup-file", ours, img); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(img); !bytes.Equal(got[:len(a)], a) {
		t.Error("the restored device does not begin with the backup's bytes")
	}
	if out, err := cs(t, "first passphrase", "open", "--test-passphrase", "--key-file", "-", img); err != nil {
		t.Errorf("after restore: %v\n%s", err, out)
	}
	if _, _, err := runIn(t, "", "luks", "header-backup", "--header-backup-file", ours, img); err == nil {
		t.Error("header-backup overwrote an existing file")
	}
}

// TestLUKSRepairAndBadInput: a damaged primary header is repaired from the
// secondary (and the user told); other bad input is refused plainly.
func TestLUKSRepairAndBadInput(t *testing.T) {
	dir, img, key := luksImage(t)
	if _, _, err := runIn(t, "", append(append([]string{"luks", "format", "-q", "--key-file", key}, fastKDF...), img)...); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt([]byte("garbage"), 5000) // inside the primary JSON area
	f.Close()
	_, errOut, err := runIn(t, "", "luks", "dump", img)
	if err != nil || !strings.Contains(errOut, "primary header is damaged") {
		t.Errorf("dump of a damaged primary: %v, stderr %q", err, errOut)
	}
	k2 := filepath.Join(dir, "k2")
	os.WriteFile(k2, []byte("two"), 0o600)
	_, errOut, err = runIn(t, "", append(append([]string{"luks", "add-key", "--key-file", key}, fastKDF...), img, k2)...)
	if err != nil || !strings.Contains(errOut, "repaired from the valid copy") {
		t.Errorf("add-key repairs: %v, stderr %q", err, errOut)
	}
	if _, errOut, _ := runIn(t, "", "luks", "dump", img); strings.Contains(errOut, "damaged") {
		t.Errorf("still damaged after repair: %s", errOut)
	}

	// Refuse to format over a file system, and leave it as it was.
	ext := filepath.Join(dir, "ext.img")
	mkfs := testutil.LookPath(t, "mkfs.ext4", "e2fsprogs")
	if out, err := exec.Command(mkfs, "-q", "-F", ext, "20M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v\n%s", err, out)
	}
	before, _ := os.ReadFile(ext)
	_, _, err = runIn(t, "", "luks", "format", "--key-file", key, ext)
	if err == nil || !strings.Contains(err.Error(), "ext2/3/4") {
		t.Errorf("format over ext4: %v", err)
	}
	if after, _ := os.ReadFile(ext); !bytes.Equal(before, after) {
		t.Error("refused format changed the device")
	}
	tests := []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"not luks", []string{"luks", "dump", ext}, "not a LUKS2 device", false},
		{"luks1 type", []string{"luks", "format", "--type", "luks1", img}, "only luks2", true},
		{"bad integrity", []string{"luks", "format", "-q", "--key-file", key, "--integrity", "crc32", img}, "integrity", false},
		{"bad sector size", []string{"luks", "format", "-q", "--key-file", key, "--sector-size", "3000", img}, "sector size", false},
		{"too small", []string{"luks", "format", "-q", "--key-file", key, filepath.Join(dir, "k2")}, "too small", false},
		{"missing name", []string{"luks", "open", "--key-file", key, img}, "missing NAME", true},
		{"token without id", []string{"luks", "token", "export", img}, "--token-id", true},
		{"empty key file", []string{"luks", "open", "--test-passphrase", "--key-file", "/dev/null", img}, "key file is empty", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runIn(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			var ue usageError
			if errors.As(err, &ue) != tc.usage {
				t.Errorf("usage error = %v, want %v", !tc.usage, tc.usage)
			}
		})
	}
}
