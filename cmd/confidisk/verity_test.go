package main

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
)

// run executes the CLI in-process and returns stdout and the error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func writeRandom(t *testing.T, path string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{9}).Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	testSalt = "00112233"
	testUUID = "12345678-1234-1234-1234-123456789abc"
)

var rootLine = regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]+)$`)

// TestFormatOutputMatchesVeritysetup compares the whole text of format and
// dump with veritysetup's for the same parameters.
func TestFormatOutputMatchesVeritysetup(t *testing.T) {
	vs := testutil.LookPath(t, "veritysetup", "cryptsetup-bin")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeRandom(t, data, 1_000_000)
	for _, extra := range [][]string{nil, {"--no-superblock"}, {"--hash", "sha1", "--data-block-size", "1024"}} {
		hash := filepath.Join(dir, "hash")
		os.Remove(hash)
		args := append([]string{"--salt", testSalt, "--uuid", testUUID}, extra...)
		cmd := exec.Command(vs, append(append([]string{"format"}, args...), data, hash)...)
		cmd.Dir = dir
		want, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("veritysetup: %v\n%s", err, want)
		}
		wantHash, _ := os.ReadFile(hash)
		os.Remove(hash)
		got, err := run(t, append(append([]string{"verity", "format"}, args...), data, hash)...)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), got); diff != "" {
			t.Errorf("format %v output (-veritysetup +confidisk):\n%s", extra, diff)
		}
		gotHash, _ := os.ReadFile(hash)
		if !bytes.Equal(wantHash, gotHash) {
			t.Errorf("format %v: hash devices differ", extra)
		}
		if len(extra) == 0 {
			want, err := exec.Command(vs, "dump", hash).CombinedOutput()
			if err != nil {
				t.Fatalf("veritysetup dump: %v\n%s", err, want)
			}
			got, err := run(t, "verity", "dump", hash)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("dump output (-veritysetup +confidisk):\n%s", diff)
			}
		}
	}
}

func TestVerifyAndReadCLI(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	hash := filepath.Join(dir, "hash")
	content := writeRandom(t, data, 300*4096)
	out, err := run(t, "verity", "format", data, hash, "--root-hash-file", filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	root := rootLine.FindStringSubmatch(out)[1]
	if b, _ := os.ReadFile(filepath.Join(dir, "root")); string(b) != root {
		t.Errorf("root hash file holds %q, want %q", b, root)
	}
	if _, err := run(t, "verity", "verify", data, hash, root); err != nil {
		t.Errorf("verify: %v", err)
	}
	if _, err := run(t, "verity", "verify", "--root-hash-file", filepath.Join(dir, "root"), data, hash); err != nil {
		t.Errorf("verify --root-hash-file: %v", err)
	}
	got, err := run(t, "verity", "read", "--offset", "5000", "--length", "10000", data, hash, root)
	if err != nil || got != string(content[5000:15000]) {
		t.Fatalf("read: %d bytes, %v", len(got), err)
	}

	// One flipped byte: verify and read both name the block.
	content[200*4096+17] ^= 1
	os.WriteFile(data, content, 0o600)
	_, err = run(t, "verity", "verify", data, hash, root)
	if err == nil || !strings.Contains(err.Error(), "data block 200 ") {
		t.Errorf("verify of corrupted data: %v, want data block 200 named", err)
	}
	out, err = run(t, "verity", "read", data, hash, root)
	if err == nil || !strings.Contains(err.Error(), "data block 200 ") {
		t.Errorf("read of corrupted data: %v, want data block 200 named", err)
	}
	if len(out) != 200*4096 {
		t.Errorf("read wrote %d bytes before the bad block, want exactly the %d verified ones", len(out), 200*4096)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	hash := filepath.Join(dir, "hash")
	writeRandom(t, data, 200*4096)
	out, err := run(t, "verity", "format", data, hash)
	if err != nil {
		t.Fatal(err)
	}
	root := rootLine.FindStringSubmatch(out)[1]
	good, _ := os.ReadFile(hash)
	put := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	badMagic := bytes.Clone(good)
	badMagic[0] = 'x'
	badVersion := bytes.Clone(good)
	badVersion[8] = 9
	badHash := bytes.Clone(good)
	copy(badHash[32:], "md5\x00\x00\x00")

	tests := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"truncated hash device", []string{"verify", data, put("short", good[:8192]), root}, false, "ends early"},
		{"tiny hash device", []string{"verify", data, put("tiny", good[:100]), root}, false, "too short"},
		{"wrong magic", []string{"verify", data, put("magic", badMagic), root}, false, "no verity superblock"},
		{"wrong version", []string{"dump", put("version", badVersion)}, false, "version 9"},
		{"unsupported hash in superblock", []string{"dump", put("md5", badHash)}, false, "unsupported hash algorithm"},
		{"unsupported hash flag", []string{"format", "--hash", "md5", data, filepath.Join(dir, "h1")}, true, "unsupported hash algorithm"},
		{"block size not power of two", []string{"format", "--data-block-size", "3000", data, filepath.Join(dir, "h2")}, true, "not a power of two"},
		{"hash block size too big", []string{"format", "--hash-block-size", "1048576", data, filepath.Join(dir, "h3")}, true, "invalid hash block size"},
		{"more data blocks than data", []string{"format", "--data-blocks", "201", data, filepath.Join(dir, "h4")}, false, "holds only"},
		{"tree larger than data", []string{"verify", put("small-data", make([]byte, 4096)), hash, root}, false, "holds only"},
		{"root hash too short", []string{"verify", data, hash, "abcd"}, true, "64 hex digits"},
		{"root hash not hex", []string{"verify", data, hash, strings.Repeat("zz", 32)}, true, "not hex"},
		{"wrong root hash", []string{"verify", data, hash, strings.Repeat("00", 32)}, false, "is not the root hash"},
		{"salt not hex", []string{"format", "--salt", "xyz", data, filepath.Join(dir, "h5")}, true, "not hex"},
		{"bad uuid", []string{"format", "--uuid", "nope", data, filepath.Join(dir, "h6")}, true, "invalid UUID"},
		{"missing argument", []string{"verify", data}, true, "usage:"},
		{"missing root hash", []string{"verify", data, hash}, true, "missing root hash"},
		{"missing data file", []string{"format", filepath.Join(dir, "nope"), filepath.Join(dir, "h7")}, false, "no such file"},
		{"empty data", []string{"format", put("empty", nil), filepath.Join(dir, "h8")}, false, "less than one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, append([]string{"verity"}, tc.args...)...)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("error is not one line: %q", err)
			}
			var ue usageError
			if got := errors.As(err, &ue); got != tc.usage {
				t.Errorf("usage error = %v, want %v (exit status 2 vs 1)", got, tc.usage)
			}
		})
	}
	// No format above left a hash file or a temporary file behind.
	for i := 1; i <= 8; i++ {
		if _, err := os.Stat(filepath.Join(dir, "h"+string(rune('0'+i)))); err == nil {
			t.Errorf("failed format left h%d behind", i)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

// TestFailedFormatKeepsOldHash checks that a format failing half-way (here: a
// data file that is really a directory) leaves an existing hash file as it was.
func TestFailedFormatKeepsOldHash(t *testing.T) {
	dir := t.TempDir()
	hash := filepath.Join(dir, "hash")
	os.WriteFile(hash, []byte("previous content"), 0o600)
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	if _, err := run(t, "verity", "format", "--data-blocks", "1", sub, hash); err == nil {
		t.Fatal("format of a directory succeeded")
	}
	if b, _ := os.ReadFile(hash); string(b) != "previous content" {
		t.Errorf("hash file changed to %q", b)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestFormatInPlaceAfterData(t *testing.T) {
	vs := testutil.LookPath(t, "veritysetup", "cryptsetup-bin")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk")
	writeRandom(t, disk, 2<<20)
	os.Truncate(disk, 3<<20)
	out, err := run(t, "verity", "format", "--data-blocks", "512", "--hash-offset", "2097152", disk, disk)
	if err != nil {
		t.Fatal(err)
	}
	root := rootLine.FindStringSubmatch(out)[1]
	if b, err := exec.Command(vs, "verify", "--hash-offset", "2097152", disk, disk, root).CombinedOutput(); err != nil {
		t.Fatalf("veritysetup verify of an in-place tree: %v\n%s", err, b)
	}
}
