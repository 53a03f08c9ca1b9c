package provision

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCopyTree(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "out")
	os.MkdirAll(filepath.Join(src, "etc/sub"), 0o750)
	os.WriteFile(filepath.Join(src, "etc/sub/file"), []byte("content"), 0o640)
	os.Symlink("sub/file", filepath.Join(src, "etc/link"))
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dst, "etc/link"))
	if err != nil || string(b) != "content" {
		t.Fatalf("through the copied symlink: %q %v", b, err)
	}
	if target, _ := os.Readlink(filepath.Join(dst, "etc/link")); target != "sub/file" {
		t.Errorf("symlink target %q", target)
	}
	st, _ := os.Stat(filepath.Join(dst, "etc/sub/file"))
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	st, _ = os.Stat(filepath.Join(dst, "etc/sub"))
	if st.Mode().Perm() != 0o750 {
		t.Errorf("dir mode %v, want 0750", st.Mode().Perm())
	}
}
