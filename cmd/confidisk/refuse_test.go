package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
)

// snapshot is the name, size and SHA-256 of every file under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[strings.TrimPrefix(p, dir)] = fmt.Sprintf("%d bytes, sha256 %x", len(b), sha256.Sum256(b))
		return nil
	})
	return out
}

// TestCommandsRefuseBeforeWriting: a write command with a bad input (a
// wrong passphrase, a bad file, an argument that would destroy data) fails
// with an error that names the problem and leaves every file as it was —
// also a damaged header copy, which only a write that succeeds repairs.
func TestCommandsRefuseBeforeWriting(t *testing.T) {
	dir, img, key := luksImage(t)
	luksFormat := func(path string) {
		if _, _, err := runIn(t, "", append(append([]string{"luks", "format", "-q", "--key-file", key}, fastKDF...), path)...); err != nil {
			t.Fatal(err)
		}
	}
	luksFormat(img)
	put := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, _ := os.ReadFile(img)
	damaged := put("damaged.img", append(append([]byte{}, good[:5000]...), append([]byte("garbage"), good[5007:]...)...))
	truncated := put("truncated.img", good[:20000]) // the primary copy whole, the secondary cut
	other := put("other.img", make([]byte, 24<<20))
	luksFormat(other)
	bak := filepath.Join(dir, "bak")
	if _, _, err := runIn(t, "", "luks", "header-backup", "--header-backup-file", bak, img); err != nil {
		t.Fatal(err)
	}
	ext := put("ext.img", nil)
	if out, err := exec.Command(testutil.LookPath(t, "mkfs.ext4", "e2fsprogs"), "-q", "-F", ext, "20M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v\n%s", err, out)
	}
	luks1 := put("luks1.img", make([]byte, 24<<20))
	if out, err := cs(t, "x", "luksFormat", "--type", "luks1", "-q", "--key-file", "-", "--pbkdf-force-iterations", "1000", luks1); err != nil {
		t.Fatalf("luksFormat --type luks1: %v\n%s", err, out)
	}
	wrong := put("wrong", []byte("not the passphrase"))
	newKey := put("new", []byte("new passphrase"))
	empty := put("empty.img", nil)
	bigToken := put("big.json", []byte(`{"type":"x","keyslots":[],"pad":"`+strings.Repeat("a", 27<<20)+`"}`))
	badToken := put("bad.json", []byte(`{"type":`))
	data := put("data", make([]byte, 1<<20))
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	secret := put("secret", []byte("s3cret"))
	existing := put("existing.json", []byte("keep me"))

	tests := []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"add-key, wrong passphrase, damaged copy", append([]string{"luks", "add-key", "--key-file", wrong}, damaged, newKey), "no key available", false},
		{"add-key on a truncated image", append([]string{"luks", "add-key", "--key-file", key}, truncated, newKey), "truncated", false},
		{"change-key, wrong passphrase", []string{"luks", "change-key", "--key-file", wrong, damaged, newKey}, "no key available", false},
		{"remove-key, wrong passphrase", []string{"luks", "remove-key", "--key-file", wrong, damaged}, "no key available", false},
		{"kill-slot of the last keyslot", []string{"luks", "kill-slot", damaged, "0"}, "last one", false},
		{"kill-slot of a missing keyslot", []string{"luks", "kill-slot", damaged, "7"}, "does not exist", false},
		{"token import of a 27 MB file", []string{"luks", "token", "import", "--json-file", bigToken, damaged}, "larger than 1 MiB", false},
		{"token import of bad JSON", []string{"luks", "token", "import", "--json-file", badToken, damaged}, "not a JSON object", false},
		{"token remove of a missing token", []string{"luks", "token", "remove", "--token-id", "3", damaged}, "does not exist", false},
		{"header-restore onto ext4", []string{"luks", "header-restore", "--header-backup-file", bak, ext}, "(found: ext2/3/4 signature); refusing to go on without --batch-mode", false},
		{"header-restore onto LUKS1", []string{"luks", "header-restore", "--header-backup-file", bak, luks1}, "(found: LUKS1 header); refusing", false},
		{"header-restore onto another volume", []string{"luks", "header-restore", "--header-backup-file", bak, other}, "another LUKS2 volume", false},
		{"header-restore from a non-backup", []string{"luks", "header-restore", "--header-backup-file", data, img}, "not a valid LUKS2 header backup", false},
		{"header-restore onto a smaller device", []string{"luks", "header-restore", "-q", "--header-backup-file", bak, truncated}, "less than the", false},
		{"luks dump of an empty file", []string{"luks", "dump", empty}, "is empty (0 bytes), not a LUKS2 device", false},
		{"luks format of a directory", []string{"luks", "format", "-q", "--key-file", key, sub}, "is a directory", false},
		{"verity format of a directory", []string{"verity", "format", sub, filepath.Join(dir, "h1")}, "is a directory", false},
		{"verity format DATA DATA", []string{"verity", "format", data, data}, "data area overlaps with hash area", true},
		{"verity format, hash offset inside the data", []string{"verity", "format", "--hash-offset", "4096", data, data}, "at least 1048576", true},
		{"tpm seal over an existing file", []string{"tpm", "seal", "--tpm", "swtpm:/nonexistent", "--pcrs", "7", "--in", secret, "--out", existing}, "give --force", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, dir)
			_, errOut, err := runIn(t, "", tc.args...)
			if strings.Contains(errOut, "repaired") {
				t.Errorf("a refused command claims a repair: %q", errOut)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			t.Log(err)
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			var ue usageError
			if errors.As(err, &ue) != tc.usage {
				t.Errorf("usage error = %v, want %v", !tc.usage, tc.usage)
			}
			if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
				t.Errorf("a refused command changed files (-before +after):\n%s", diff)
			}
		})
	}
}
