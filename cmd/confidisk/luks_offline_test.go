package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
)

// TestFormatOffline: `luks format --offline` writes a LUKS2 header that
// cryptsetup reads and a dm-integrity superblock behind it, without
// device-mapper; bad input is refused before anything is written.
func TestFormatOffline(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "v.img")
	data := filepath.Join(dir, "data")
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("pw"), 0o600)
	os.WriteFile(data, bytes.Repeat([]byte("confidisk"), 4096*4/9+1)[:4096*4], 0o600)
	if err := os.WriteFile(img, nil, 0o600); err != nil || os.Truncate(img, 24<<20) != nil {
		t.Fatal(err)
	}
	args := func(extra ...string) []string {
		a := append([]string{"luks", "format", "-q", "--integrity", "hmac-sha256", "--offline", "--key-file", key}, fastKDF...)
		return append(a, extra...)
	}
	if _, stderr, err := runIn(t, "", args("--data", data, img)...); err != nil {
		t.Fatalf("format --offline: %v\n%s", err, stderr)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, _, err := luks2.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := integrity.ReadSuperblock(f, int64(h.Metadata.Segments[0].Offset)); err != nil {
		t.Errorf("no dm-integrity superblock after format --offline: %v", err)
	}
	if out, err := cs(t, "", "luksDump", img); err != nil || !strings.Contains(out, "hmac(sha256)") {
		t.Errorf("cryptsetup luksDump: %v\n%s", err, out)
	}

	// Refusals leave the image as it was.
	before, _ := os.ReadFile(img)
	big := filepath.Join(dir, "big")
	odd := filepath.Join(dir, "odd")
	os.WriteFile(big, nil, 0o600)
	os.Truncate(big, 24<<20)
	os.WriteFile(odd, make([]byte, 1000), 0o600)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"data larger than the volume", args("--data", big, img), "larger than the volume"},
		{"data not whole sectors", args("--data", odd, img), "not a multiple of the 4096-byte sector size"},
		{"cbc", append(append([]string{"luks", "format", "-q", "--cipher", "aes-cbc-essiv:sha256", "--integrity", "hmac-sha256", "--offline", "--key-file", key}, fastKDF...), img), "not aes-cbc-essiv:sha256 with integrity hmac(sha256)"},
		{"no integrity", append(append([]string{"luks", "format", "-q", "--offline", "--key-file", key}, fastKDF...), img), "--offline is for volumes with --integrity"},
		{"data without offline", []string{"luks", "format", "-q", "--integrity", "hmac-sha256", "--data", data, "--key-file", key, img}, "--data needs --offline"},
		{"missing data", args("--data", filepath.Join(dir, "nope"), img), "--data"},
	} {
		_, _, err := runIn(t, "", tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
		if after, _ := os.ReadFile(img); !bytes.Equal(after, before) {
			t.Fatalf("%s: the image changed", tt.name)
		}
	}
}
