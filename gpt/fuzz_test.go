package gpt

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzRead feeds arbitrary disk images to Read with 512- and 4096-byte
// sectors, as they are and with their header and entry CRCs recomputed (so
// that mutations reach the validation behind the CRC checks). Read must never
// panic; a table it accepts must survive Write and read back identically. The
// seed corpus in testdata/fuzz/FuzzRead holds small valid tables, tables with
// a damaged primary header or entry array, and a lone MBR.
//
// The inputs are whole disk images (kilobytes), which the fuzzer's default
// minimisation handles very slowly; run it as
//
//	go test ./gpt/ -run '^$' -fuzz FuzzRead -fuzztime 30s -fuzzminimizetime 1s
func FuzzRead(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range []struct {
			ss    int
			fixed bool
		}{{512, false}, {4096, false}, {512, true}, {4096, true}} {
			ss := c.ss
			disk := memDisk(data)
			if c.fixed {
				disk = fixCRCs(data, ss)
			}
			tab, err := Read(disk, int64(len(disk)), ss)
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

// fixCRCs returns a copy of data with the entry-array and header CRCs of the
// headers in LBA 1 and the last LBA recomputed from whatever fields they hold.
func fixCRCs(data []byte, ss int) memDisk {
	d := memDisk(bytes.Clone(data))
	lbas := int64(len(d)) / int64(ss)
	if lbas < 3 {
		return d
	}
	le := binary.LittleEndian
	for _, lba := range []int64{1, lbas - 1} {
		h := d[lba*int64(ss):][:ss]
		elba, count, size := le.Uint64(h[72:80]), uint64(le.Uint32(h[80:84])), uint64(le.Uint32(h[84:88]))
		if n := count * size; n <= MaxEntryArrayBytes && elba < uint64(lbas) && elba*uint64(ss)+n <= uint64(len(d)) {
			le.PutUint32(h[88:92], crc(d[elba*uint64(ss):][:n]))
		}
		hs := min(max(int(le.Uint32(h[12:16])), HeaderSize), ss)
		le.PutUint32(h[16:20], 0)
		le.PutUint32(h[16:20], crc(h[:hs]))
	}
	return d
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
