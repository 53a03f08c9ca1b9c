package clonetab

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseLineGood(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want Entry
	}{
		// clonetab(5), EXAMPLES, "Simple clone without options", verbatim
		// (man/clonetab.xml at 01813c3e9f23).
		{"man: simple clone", "mydevice /dev/sdb /dev/sdc /dev/sdd",
			Entry{Name: "mydevice", Source: "/dev/sdb", Destination: "/dev/sdc", Metadata: "/dev/sdd"}},
		// The second example in the 262 spelling (the draft's region_size=16
		// sectors is 8 KiB); see TestParseLineBad for the draft's line.
		{"man: custom region size", "mydevice /dev/sdb /dev/sdc /dev/sdd region-size=8K",
			Entry{Name: "mydevice", Source: "/dev/sdb", Destination: "/dev/sdc", Metadata: "/dev/sdd", Options: Options{RegionSize: 8 << 10}}},
		// Lines from systemd's own integration test of clonesetup.
		{"systemd test: placeholder", "testclonesetup /dev/loop0 /dev/loop1 /dev/loop2 -",
			Entry{Name: "testclonesetup", Source: "/dev/loop0", Destination: "/dev/loop1", Metadata: "/dev/loop2"}},
		{"systemd test: dot name", ".testdot /dev/loop0 /dev/loop1 /dev/loop2 -",
			Entry{Name: ".testdot", Source: "/dev/loop0", Destination: "/dev/loop1", Metadata: "/dev/loop2"}},
		{"systemd test: percent in paths", "testescapepaths /dev/loop0%foo /dev/loop1%bar /dev/loop2%baz -",
			Entry{Name: "testescapepaths", Source: "/dev/loop0%foo", Destination: "/dev/loop1%bar", Metadata: "/dev/loop2%baz"}},
		{"tabs and extra blanks", " \troot\t/dev/vda2   /dev/vdb1\v/dev/vdb2\fregion-size=1M \t\r",
			Entry{Name: "root", Source: "/dev/vda2", Destination: "/dev/vdb1", Metadata: "/dev/vdb2", Options: Options{RegionSize: 1 << 20}}},
		{"by-partuuid paths", "root /dev/disk/by-partuuid/4f68bce3-e8cd-4db1-96e7-fbcaf984b709 /dev/disk/by-partlabel/root-rw /dev/mapper/meta region-size=4K",
			Entry{Name: "root", Source: "/dev/disk/by-partuuid/4f68bce3-e8cd-4db1-96e7-fbcaf984b709", Destination: "/dev/disk/by-partlabel/root-rw", Metadata: "/dev/mapper/meta", Options: Options{RegionSize: 4096}}},
		{"hash inside a field", "a#b /dev/x# /dev/y /dev/z",
			Entry{Name: "a#b", Source: "/dev/x#", Destination: "/dev/y", Metadata: "/dev/z"}},
		{"largest region", "r /dev/a /dev/b /dev/c region-size=1G",
			Entry{Name: "r", Source: "/dev/a", Destination: "/dev/b", Metadata: "/dev/c", Options: Options{RegionSize: 1 << 30}}},
		{"region in bytes", "r /dev/a /dev/b /dev/c region-size=65536",
			Entry{Name: "r", Source: "/dev/a", Destination: "/dev/b", Metadata: "/dev/c", Options: Options{RegionSize: 64 << 10}}},
		{"region as parse_size reads it", "r /dev/a /dev/b /dev/c region-size=0.5M",
			Entry{Name: "r", Source: "/dev/a", Destination: "/dev/b", Metadata: "/dev/c", Options: Options{RegionSize: 512 << 10}}},
		{"repeated option: last wins", "r /dev/a /dev/b /dev/c region-size=8K,region-size=16K",
			Entry{Name: "r", Source: "/dev/a", Destination: "/dev/b", Metadata: "/dev/c", Options: Options{RegionSize: 16 << 10}}},
		{"longest name", strings.Repeat("n", MaxNameLen) + " /dev/a /dev/b /dev/c",
			Entry{Name: strings.Repeat("n", MaxNameLen), Source: "/dev/a", Destination: "/dev/b", Metadata: "/dev/c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ignored, err := ParseLine(tc.line)
			if err != nil || ignored {
				t.Fatalf("ParseLine(%q) = ignored %v, %v", tc.line, ignored, err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("ParseLine(%q) (-want +got):\n%s", tc.line, d)
			}
			again, ignored, err := ParseLine(got.String())
			if err != nil || ignored {
				t.Fatalf("ParseLine(%q) = ignored %v, %v", got.String(), ignored, err)
			}
			if d := cmp.Diff(got, again); d != "" {
				t.Fatalf("re-parsing %q (-first +again):\n%s", got.String(), d)
			}
		})
	}
}

func TestParseLineIgnored(t *testing.T) {
	for _, line := range []string{
		"",
		"   \t ",
		"\r",
		"# name source dest metadata options", // systemd's test file
		"#mydevice /dev/sdb /dev/sdc /dev/sdd",
		"   # indented comment",
		"\t#",
	} {
		e, ignored, err := ParseLine(line)
		if err != nil || !ignored || e != (Entry{}) {
			t.Errorf("ParseLine(%q) = %+v, ignored %v, %v; want ignored", line, e, ignored, err)
		}
	}
}

func TestParseLineBad(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		is         error
		msg        string
	}{
		// The draft man page's second example (man/clonetab.xml at
		// 01813c3e9f23): systemd 262 would warn and ignore the option.
		{"man draft: region_size in sectors", "mydevice /dev/sdb /dev/sdc /dev/sdd region_size=16", ErrUnknownOption, `unknown option "region_size=16" (systemd 262 spells it region-size=`},
		{"unknown option", "a /dev/b /dev/c /dev/d foo=bar", ErrUnknownOption, `unknown option "foo=bar"`},
		{"unknown among known", "a /dev/b /dev/c /dev/d region-size=8K,no_discard_passdown", ErrUnknownOption, `unknown option "no_discard_passdown"`},
		{"key without value", "a /dev/b /dev/c /dev/d region-size", ErrUnknownOption, `unknown option "region-size"`},
		{"one field", "a", ErrSyntax, "1 fields"},
		{"missing metadata", "a /dev/b /dev/c", ErrSyntax, "3 fields, want name, source, destination and metadata device"},
		{"trailing garbage", "a /dev/b /dev/c /dev/d - extra", ErrSyntax, `trailing field "extra"`},
		{"space in path (systemd test)", `testinvalidspace /dev/loop0 /dev/with\ space /dev/loop2 -`, ErrSyntax, `trailing field "-"`},
		{"quotes as options (systemd test)", `testinvalidopts /dev/loop0 /dev/loop1 /dev/loop2 ""`, ErrSyntax, `options "\"\"": syntax error: character '"'`},
		{"backslash (systemd test)", `testbackslash /dev/\x2e\x2e/foo /dev/loop1 /dev/loop2 -`, ErrDevice, `source device "/dev/\\x2e\\x2e/foo": invalid device path: character '\\'`},
		{"region size zero", "a /dev/b /dev/c /dev/d region-size=0", ErrRegionSize, "region-size=0: invalid region size: want a power of two from 4K to 1G"},
		{"region size too small", "a /dev/b /dev/c /dev/d region-size=2K", ErrRegionSize, "region-size=2K: invalid region size: want a power of two from 4K to 1G"},
		{"region size too large", "a /dev/b /dev/c /dev/d region-size=2G", ErrRegionSize, "region-size=2G: invalid region size"},
		{"region size not a power of two", "a /dev/b /dev/c /dev/d region-size=12K", ErrRegionSize, "region-size=12K: invalid region size"},
		{"region size lower-case suffix", "a /dev/b /dev/c /dev/d region-size=8k", ErrRegionSize, "region-size=8k: invalid region size: not a size"},
		{"region size KiB suffix", "a /dev/b /dev/c /dev/d region-size=8KiB", ErrRegionSize, "region-size=8KiB: invalid region size: not a size"},
		{"region size empty", "a /dev/b /dev/c /dev/d region-size=", ErrRegionSize, "region-size=: invalid region size: not a size"},
		{"region size negative", "a /dev/b /dev/c /dev/d region-size=-8K", ErrRegionSize, "region-size=-8K: invalid region size: out of range"},
		{"region size overflow", "a /dev/b /dev/c /dev/d region-size=99999999999999999999", ErrRegionSize, "out of range"},
		{"region size in sectors", "a /dev/b /dev/c /dev/d region-size=8", ErrRegionSize, "region-size=8: invalid region size"},
		{"bad region size even when repeated", "a /dev/b /dev/c /dev/d region-size=3K,region-size=8K", ErrRegionSize, "region-size=3K"},
		{"empty option", "a /dev/b /dev/c /dev/d region-size=8K,", ErrSyntax, "empty option"},
		{"placeholder among options", "a /dev/b /dev/c /dev/d -,region-size=8K", ErrSyntax, `"-" stands alone`},
		{"UUID=", "a UUID=0b2c4d2e-9d6f-4d0b-8b3a-2f6f3c1e8a11 /dev/c /dev/d", ErrDevice, "not UUID= (use /dev/disk/by-...)"},
		{"PARTLABEL=", "a /dev/b PARTLABEL=rw /dev/d", ErrDevice, `destination device "PARTLABEL=rw": invalid device path: clonetab takes device paths below /dev/, not PARTLABEL=`},
		{"relative path", "a sdb /dev/c /dev/d", ErrDevice, "want an absolute path below /dev/"},
		{"outside /dev", "a /tmp/b /dev/c /dev/d", ErrDevice, "want an absolute path below /dev/"},
		{"/dev itself", "a /dev /dev/c /dev/d", ErrDevice, "want an absolute path below /dev/"},
		{"dot dot", "a /dev/../etc/b /dev/c /dev/d", ErrDevice, `component ".."`},
		{"double slash", "a /dev//b /dev/c /dev/d", ErrDevice, "empty component"},
		{"trailing slash", "a /dev/b/ /dev/c /dev/d", ErrDevice, "empty component"},
		{"glob", "a /dev/sd? /dev/c /dev/d", ErrDevice, "character '?'"},
		{"same device twice", "a /dev/b /dev/c /dev/c", ErrDevice, `metadata device "/dev/c": invalid device path: also the destination device`},
		{"name with slash", "a/b /dev/b /dev/c /dev/d", ErrName, `name "a/b": invalid name: contains "/"`},
		{"name dot dot", ".. /dev/b /dev/c /dev/d", ErrName, "not a file name"},
		{"name starting with dash", "-a /dev/b /dev/c /dev/d", ErrName, `starts with "-"`},
		{"name with quote", "a'b /dev/b /dev/c /dev/d", ErrName, `character '\''`},
		{"name too long", strings.Repeat("n", MaxNameLen+1) + " /dev/b /dev/c /dev/d", ErrName, "128 bytes, at most 127"},
		{"name not UTF-8", "a\xff /dev/b /dev/c /dev/d", ErrName, "not valid UTF-8"},
		{"control character", "a\x01 /dev/b /dev/c /dev/d", ErrName, "control character"},
		{"carriage return inside", "a /dev/b\r/dev/c /dev/d /dev/e", ErrSyntax, `'\r' inside the line`},
		{"NUL", "a /dev/b /dev/c /dev/d\x00x", ErrSyntax, `'\x00' inside the line`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ignored, err := ParseLine(tc.line)
			if err == nil {
				t.Fatalf("ParseLine(%q) = %+v, ignored %v; want an error", tc.line, e, ignored)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("ParseLine(%q) = %v; want errors.Is %v", tc.line, err, tc.is)
			}
			if !strings.HasPrefix(err.Error(), "clonetab: ") || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ParseLine(%q) = %q; want \"clonetab: ...%s...\"", tc.line, err, tc.msg)
			}
		})
	}
}

func TestParse(t *testing.T) {
	in := "# /etc/clonetab written by hand\n" +
		"\n" +
		"mydevice /dev/sdb /dev/sdc /dev/sdd\r\n" +
		"   # the root\n" +
		"root /dev/vda2 /dev/vdb1 /dev/vdb2 region-size=64K" // no final newline
	want := []Entry{
		{Name: "mydevice", Source: "/dev/sdb", Destination: "/dev/sdc", Metadata: "/dev/sdd"},
		{Name: "root", Source: "/dev/vda2", Destination: "/dev/vdb1", Metadata: "/dev/vdb2", Options: Options{RegionSize: 64 << 10}},
	}
	got, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("Parse (-want +got):\n%s", d)
	}

	for _, in := range []string{"", "\n", "# only a comment\n"} {
		got, err := Parse(strings.NewReader(in))
		if err != nil || len(got) != 0 {
			t.Errorf("Parse(%q) = %v, %v; want no entries", in, got, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		line     int
		is       error
		msg      string
	}{
		{"unknown option on line 3", "# c\n\na /dev/b /dev/c /dev/d foo=\n", 3, ErrUnknownOption, `clonetab: line 3: unknown option "foo="`},
		{"duplicate name", "a /dev/b /dev/c /dev/d\nx /dev/e /dev/f /dev/g\na /dev/h /dev/i /dev/j\n", 3, ErrDuplicateName, `clonetab: line 3: name "a": duplicate name: first on line 1`},
		{"last line without newline", "a /dev/b /dev/c /dev/d\nb /dev/b", 2, ErrSyntax, "clonetab: line 2: syntax error: 2 fields"},
		{"line too long", "a /dev/b /dev/c /dev/d\n" + strings.Repeat("#", MaxLineLen+1) + "\n", 2, ErrSyntax, "line longer than 1048576 bytes"},
		{"line too long at end", strings.Repeat(" ", MaxLineLen+1), 1, ErrSyntax, "line longer than"},
		{"lone carriage return", "a /dev/b /dev/c /dev/d\rb /dev/e /dev/f /dev/g\n", 1, ErrSyntax, `'\r' inside the line`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("Parse = %+v; want an error", got)
			}
			var le *LineError
			if !errors.As(err, &le) || le.Line != tc.line {
				t.Errorf("Parse = %v; want a *LineError for line %d", err, tc.line)
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Parse = %q; want %v with %q", err, tc.is, tc.msg)
			}
		})
	}
}

// A line of exactly MaxLineLen bytes is still read.
func TestParseLongestLine(t *testing.T) {
	line := "a /dev/b /dev/c /dev/d"
	line += strings.Repeat(" ", MaxLineLen-len(line))
	got, err := Parse(strings.NewReader(line + "\n"))
	if err != nil || len(got) != 1 {
		t.Fatalf("Parse = %v, %v; want one entry", got, err)
	}
}

func TestFormat(t *testing.T) {
	entries := []Entry{
		{Name: "mydevice", Source: "/dev/sdb", Destination: "/dev/sdc", Metadata: "/dev/sdd"},
		{Name: "root", Source: "/dev/vda2", Destination: "/dev/vdb1", Metadata: "/dev/vdb2", Options: Options{RegionSize: 1 << 20}},
		{Name: "big", Source: "/dev/a", Destination: "/dev/b", Metadata: "/dev/c", Options: Options{RegionSize: 1 << 30}},
		{Name: "small", Source: "/dev/a", Destination: "/dev/b", Metadata: "/dev/c", Options: Options{RegionSize: 4 << 10}},
	}
	want := "mydevice /dev/sdb /dev/sdc /dev/sdd -\n" +
		"root /dev/vda2 /dev/vdb1 /dev/vdb2 region-size=1M\n" +
		"big /dev/a /dev/b /dev/c region-size=1G\n" +
		"small /dev/a /dev/b /dev/c region-size=4K\n"
	var b bytes.Buffer
	if err := Format(&b, entries); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Fatalf("Format (-want +got):\n%s", d)
	}
	got, err := Parse(&b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(entries, got); d != "" {
		t.Fatalf("Parse(Format) (-want +got):\n%s", d)
	}
}

func TestFormatRefuses(t *testing.T) {
	ok := Entry{Name: "a", Source: "/dev/b", Destination: "/dev/c", Metadata: "/dev/d"}
	for _, tc := range []struct {
		name    string
		entries []Entry
		is      error
		msg     string
	}{
		{"name starting with hash", []Entry{{Name: "#a", Source: "/dev/b", Destination: "/dev/c", Metadata: "/dev/d"}}, ErrName, `clonetab: entry 0: name "#a": invalid name: starts with "#"`},
		{"space in a path", []Entry{{Name: "a", Source: "/dev/b c", Destination: "/dev/c", Metadata: "/dev/d"}}, ErrDevice, "contains white space"},
		{"tab in a name", []Entry{{Name: "a\tb", Source: "/dev/b", Destination: "/dev/c", Metadata: "/dev/d"}}, ErrName, "control character"},
		{"bad region size", []Entry{ok, {Name: "b", Source: "/dev/b", Destination: "/dev/c", Metadata: "/dev/d", Options: Options{RegionSize: 6000}}}, ErrRegionSize, "clonetab: entry 1: region-size=6000: invalid region size"},
		{"duplicate name", []Entry{ok, ok}, ErrDuplicateName, `clonetab: entry 1: name "a": duplicate name: also entry 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			err := Format(&b, tc.entries)
			if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Format = %v; want %v with %q", err, tc.is, tc.msg)
			}
			if b.Len() != 0 {
				t.Errorf("Format wrote %q before failing", b.String())
			}
		})
	}
}

func TestOptions(t *testing.T) {
	if got := (Options{}).EffectiveRegionSize(); got != DefaultRegionSize {
		t.Errorf("EffectiveRegionSize of no options = %d, want %d", got, DefaultRegionSize)
	}
	if got := (Options{RegionSize: 1 << 20}).EffectiveRegionSize(); got != 1<<20 {
		t.Errorf("EffectiveRegionSize = %d, want %d", got, 1<<20)
	}
	for n := uint64(MinRegionSize); n <= MaxRegionSize; n <<= 1 {
		o := Options{RegionSize: n}
		if err := o.Validate(); err != nil {
			t.Errorf("Validate(%d) = %v", n, err)
		}
		got, err := parseOptions(o.String())
		if err != nil || got != o {
			t.Errorf("parseOptions(%q) = %+v, %v; want %+v", o.String(), got, err, o)
		}
		// dm-clone's limits in sectors are 8 ... 2097152.
		if s := n / SectorSize; s < 8 || s > 2097152 {
			t.Errorf("region size %d is %d sectors, outside dm-clone's limits", n, s)
		}
	}
	for _, n := range []uint64{1, 512, 2048, 4095, 4097, 12288, 2 << 30, 1 << 63} {
		if err := (Options{RegionSize: n}).Validate(); !errors.Is(err, ErrRegionSize) {
			t.Errorf("Validate(%d) = %v; want ErrRegionSize", n, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  error
	}{
		{"0", 0, nil},
		{"4096", 4096, nil},
		{"4096B", 4096, nil},
		{"4K", 4096, nil},
		{"+4K", 4096, nil},
		{"04K", 4096, nil},
		{"1M", 1 << 20, nil},
		{"1G", 1 << 30, nil},
		{"1T", 1 << 40, nil},
		{"1P", 1 << 50, nil},
		{"1E", 1 << 60, nil},
		{"16E", 0, errSizeRange},
		{"1G512M", 1<<30 + 512<<20, nil},
		{"1M1K1", 1<<20 + 1<<10 + 1, nil},
		{"1K1M", 0, errSizeSyntax},
		{"1K1K", 0, errSizeSyntax},
		{"0.5M", 512 << 10, nil},
		{"1.5K", 1536, nil},
		{"4.K", 4096, nil},
		{"1.", 1, nil},
		{".5K", 0, errSizeSyntax},
		{"4KB", 0, errSizeSyntax},
		{"4k", 0, errSizeSyntax},
		{"K", 0, errSizeSyntax},
		{"", 0, errSizeSyntax},
		{"+", 0, errSizeSyntax},
		{"-", 0, errSizeSyntax},
		{"-1", 0, errSizeRange},
		{"18446744073709551615", 1<<64 - 1, nil},
		{"18446744073709551616", 0, errSizeRange},
		{"18446744073709551615K", 0, errSizeRange},
		{"0x10", 0, errSizeSyntax},
	} {
		got, err := parseSize(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("parseSize(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// Random valid entries survive Format and Parse unchanged.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcXYZ019._-+:@%#=,~\u00e9\u4e16"
	word := func(n int) string {
		r := []rune(alphabet)
		var b strings.Builder
		for range n {
			b.WriteRune(r[rng.IntN(len(r))])
		}
		return b.String()
	}
	dev := func() string {
		parts := []string{"/dev"}
		for range 1 + rng.IntN(3) {
			w := word(1 + rng.IntN(8))
			if w == "." || w == ".." {
				w = "x"
			}
			parts = append(parts, w)
		}
		return strings.Join(parts, "/")
	}
	for i := range 2000 {
		var entries []Entry
		names := map[string]bool{}
		for range rng.IntN(5) {
			e := Entry{Name: word(1 + rng.IntN(20)), Source: dev(), Destination: dev(), Metadata: dev()}
			if rng.IntN(2) == 0 {
				e.Options.RegionSize = MinRegionSize << rng.IntN(19)
			}
			if e.Validate() != nil || names[e.Name] {
				continue
			}
			names[e.Name] = true
			entries = append(entries, e)
		}
		var b bytes.Buffer
		if err := Format(&b, entries); err != nil {
			t.Fatalf("case %d: Format(%+v) = %v", i, entries, err)
		}
		text := b.String()
		got, err := Parse(&b)
		if err != nil {
			t.Fatalf("case %d: Parse(%q) = %v", i, text, err)
		}
		if d := cmp.Diff(entries, got, cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("case %d: Parse(Format) of %q (-want +got):\n%s", i, text, d)
		}
	}
}
