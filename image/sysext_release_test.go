package image

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSysextReleaseChecks: extension-release fields systemd-sysext could
// never match, or would ignore, are refused, and with the initrd's release
// file the match is decided as extension_release_validate decides it.
func TestSysextReleaseChecks(t *testing.T) {
	for _, tc := range []struct {
		name, id, version, initrd string
		says                      string // "" when accepted
	}{
		{"any OS", "_any", "", "", ""},
		{"id and version", "fedora", "42", "", ""},
		{"id without version", "fedora", "", "", "a VERSION_ID= is needed"},
		{"upper-case id", "Fedora", "42", "", `extension OS ID "Fedora"`},
		{"id adding a line", "fedora\nSYSEXT_SCOPE=system", "42", "", "IDs are 0-9, a-z"},
		{"version with a space", "fedora", "42 beta", "", `extension VERSION_ID "42 beta"`},
		{"version with _any", "_any", "42", "", "ignores the version"},
		{"initrd matches", "fedora", "42", "ID=fedora\nVERSION_ID=42\n", ""},
		{"initrd quoted", "fedora", "42", "NAME=\"Fedora Linux\"\nID=fedora\nVERSION_ID='42'\n", ""},
		{"initrd other version", "fedora", "42", "ID=fedora\nVERSION_ID=43\n", "the initrd is VERSION_ID=43"},
		{"initrd other OS", "fedora", "42", "ID=debian\nVERSION_ID=13\n", "but the initrd is ID=debian"},
		{"initrd ID_LIKE", "rhel", "9", "ID=centos\nID_LIKE=\"rhel fedora\"\nVERSION_ID=9\n", ""},
		{"initrd rolling release", "arch", "", "ID=arch\nBUILD_ID=rolling\n", ""},
		{"initrd rolling, version given", "arch", "2026", "ID=arch\n", ""},
		{"initrd with level only", "foo", "", "ID=foo\nSYSEXT_LEVEL=1.0\n", ""},
		{"initrd level and version", "foo", "", "ID=foo\nSYSEXT_LEVEL=1.0\nVERSION_ID=3\n", `extension for VERSION_ID="", but the initrd is VERSION_ID=3`},
		{"initrd with any OS", "_any", "", "ID=debian\nVERSION_ID=12\n", ""},
		{"initrd without ID", "fedora", "42", "VERSION_ID=42\n", "no ID="},
		{"initrd unterminated quote", "fedora", "42", "ID=\"fedora\n", "unterminated double quote"},
		{"initrd not KEY=VALUE", "fedora", "42", "ID fedora\n", "want KEY=VALUE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Sysext{Name: "confidisk", Unit: []byte("[Unit]\n"), OSID: tc.id, VersionID: tc.version}
			if tc.initrd != "" {
				s.InitrdRelease = []byte(tc.initrd)
			}
			err := s.checkRelease()
			switch {
			case tc.says == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.says != "" && (err == nil || !strings.Contains(err.Error(), tc.says)):
				t.Fatalf("checkRelease: %v, want an error saying %q", err, tc.says)
			}
		})
	}
}

// TestSysextParseOSRelease: quoting, escapes and comments as os-release(5) and
// the shell have them.
func TestSysextParseOSRelease(t *testing.T) {
	in := `# comment
NAME="Fedora Linux"
ID=fedora
VERSION_ID=42

PRETTY_NAME='Fedora "Forty Two"'
ID_LIKE="rhel \"centos\" \\ \$x"
HOME_URL=https://example.org/a\ b
EMPTY=
`
	got, err := ParseOSRelease([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"NAME":        "Fedora Linux",
		"ID":          "fedora",
		"VERSION_ID":  "42",
		"PRETTY_NAME": `Fedora "Forty Two"`,
		"ID_LIKE":     `rhel "centos" \ $x`,
		"HOME_URL":    "https://example.org/a b",
		"EMPTY":       "",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseOSRelease (-want +got):\n%s", diff)
	}
}

// TestSysextNames checks the extension names systemd's image_name_is_valid
// accepts and refuses, the length bound included.
func TestSysextNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"confidisk", true},
		{"confidisk_2.0-rc1", true},
		{"9", true},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a", 256), false},
		{"", false},
		{".hidden", false},
		{"-dash", false},
		{"a/b", false},
		{"a b", false},
		{"naïve", false},
	} {
		s := Sysext{Name: tc.name, Unit: []byte("[Unit]\n"), OSID: "_any"}
		if err := s.checkRelease(); (err == nil) != tc.ok {
			t.Errorf("name %q: error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
