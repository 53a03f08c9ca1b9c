package verity

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMappingFormatAndVerify(t *testing.T) {
	p := DefaultParams(3000)
	p.Salt = []byte("mapped")
	data, hashDev, root := randomTree(t, p, 11)
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, data.b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := Map(f, int64(len(data.b)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got := &memDev{}
	mroot, err := Format(context.Background(), m, got, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mroot, root) || !bytes.Equal(got.b, hashDev.b) {
		t.Fatal("format from a mapping differs from format from a reader")
	}
	if err := Verify(context.Background(), m, hashDev, p, root, nil); err != nil {
		t.Fatalf("Verify from a mapping: %v", err)
	}

	// A file that shrinks under the mapping gives an error, not a crash.
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	err = Verify(context.Background(), m, hashDev, p, root, nil)
	if err == nil || !strings.Contains(err.Error(), "fault") {
		t.Fatalf("Verify of a shrunken mapped file: got %v, want a memory fault error", err)
	}
}
