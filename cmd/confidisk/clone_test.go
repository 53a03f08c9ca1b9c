package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/clonetab"
)

func TestWriteCloneTab(t *testing.T) {
	e := clonetab.Entry{Name: "rwroot", Source: "/dev/mapper/root", Destination: "/dev/mapper/rwroot-dest",
		Metadata: "/dev/mapper/rwroot-meta", Options: clonetab.Options{RegionSize: 64 << 10}}
	want := "rwroot /dev/mapper/root /dev/mapper/rwroot-dest /dev/mapper/rwroot-meta region-size=64K\n"
	for _, tc := range []struct{ name, old, want string }{
		{"new", "", want},
		{"kept-and-appended", "# data disks\nother /dev/vdb /dev/vdc /dev/vdd -", "# data disks\nother /dev/vdb /dev/vdc /dev/vdd -\n" + want},
		{"replaced", "rwroot /dev/vda /dev/vdb /dev/vdc region-size=4K\n# end\n", want + "# end\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "clonetab")
			if tc.old != "" {
				os.WriteFile(p, []byte(tc.old), 0o644)
			}
			if err := writeCloneTab(p, e); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(p)
			if d := cmp.Diff(tc.want, string(got)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if _, err := clonetab.Parse(strings.NewReader(string(got))); err != nil {
				t.Errorf("written file does not parse: %v", err)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "clonetab")
	bad := "rwroot /dev/vda /dev/vdb /dev/vdc hydration=fast\n"
	os.WriteFile(p, []byte(bad), 0o644)
	if err := writeCloneTab(p, e); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a clonetab with an unknown option: %v, want a refusal naming line 1", err)
	}
	if got, _ := os.ReadFile(p); string(got) != bad {
		t.Errorf("refused file changed to %q", got)
	}
}
