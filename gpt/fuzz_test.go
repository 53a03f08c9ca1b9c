package gpt

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzRead feeds arbitrary disk images to Read with 512- and 4096-byte
// sectors. Read must never panic; a table it accepts must survive Write and
// read back identically. The seed corpus in testdata/fuzz/FuzzRead holds small
// valid tables, tables with a damaged primary header or entry array, and a
// lone MBR.
func FuzzRead(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ss := range []int{512, 4096} {
			tab, err := Read(memDisk(data), int64(len(data)), ss)
			if err != nil {
				if tab != nil {
					t.Fatalf("Read returned a table and an error: %v", err)
				}
				continue
			}
			size := int64(len(data)) / int64(ss) * int64(ss)
			out := make(memDisk, size)
			if err := tab.Write(out, size); err != nil {
				// A valid table may place its entry arrays where Write does not
				// (for example after the usable range); that is not a bug.
				continue
			}
			back, err := Read(out, size, ss)
			if err != nil {
				t.Fatalf("reading back a written table: %v", err)
			}
			tab.Source, tab.PrimaryErr = Primary, nil
			if diff := cmp.Diff(tab, back); diff != "" {
				t.Fatalf("round trip mismatch (-read +reread):\n%s", diff)
			}
		}
	})
}

// TestSeedCorpus checks that the fuzz seeds are what their names say, so the
// fuzzer starts from tables that reach deep into Read.
func TestSeedCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzRead/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seed corpus: %v", err)
	}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a go test fuzz v1 []byte file", file)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		name := filepath.Base(file)
		ss := 512
		if strings.HasSuffix(name, "4096") {
			ss = 4096
		}
		tab, err := Read(memDisk(s), int64(len(s)), ss)
		switch {
		case strings.HasPrefix(name, "valid-"):
			if err != nil || tab.Source != Primary {
				t.Errorf("%s: Read = %v, %v; want a primary table", name, tab, err)
			}
		case strings.HasPrefix(name, "primary-"):
			if err != nil || tab.Source != Backup {
				t.Errorf("%s: Read = %v, %v; want the backup table", name, tab, err)
			}
		default:
			if err == nil {
				t.Errorf("%s: Read succeeded, want an error", name)
			}
		}
	}
}
