package clonetab

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParse checks that Parse never panics and that whatever it accepts,
// Format writes and Parse reads back as the same entries.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"mydevice /dev/sdb /dev/sdc /dev/sdd\n",
		"mydevice /dev/sdb /dev/sdc /dev/sdd region-size=8K\n",
		"# c\n\nroot /dev/vda2 /dev/vdb1 /dev/vdb2 region-size=0.5M\r\n",
		"a /dev/b /dev/c /dev/d region-size=8K,region-size=1G",
		"a /dev/b /dev/c /dev/d region_size=16\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := Format(&b, entries); err != nil {
			t.Fatalf("Format of what Parse(%q) accepted: %v", in, err)
		}
		out := b.String()
		again, err := Parse(&b)
		if err != nil {
			t.Fatalf("Parse(Format) of %q = %v (formatted %q)", in, err, out)
		}
		if d := cmp.Diff(entries, again, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("Parse(Format) of %q (-first +again):\n%s", in, d)
		}
		for _, e := range entries {
			got, ignored, err := ParseLine(e.String())
			if err != nil || ignored || got != e {
				t.Fatalf("ParseLine(%q) = %+v, %v, %v; want %+v", e.String(), got, ignored, err, e)
			}
		}
	})
}
