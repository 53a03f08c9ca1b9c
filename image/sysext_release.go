package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// osReleaseValueRE is what os-release(5) allows in ID= and VERSION_ID=:
// "no spaces or other characters outside of 0–9, a–z, '.', '_' and '-'".
// A value outside it can never equal a distribution's, and a newline or
// '=' would add lines to the extension-release file.
var osReleaseValueRE = regexp.MustCompile(`^[a-z0-9._-]+$`)

// checkReleaseFields refuses extension-release fields systemd-sysext can
// never match or would ignore.
func (s *Sysext) checkReleaseFields(host map[string]string) error {
	if !osReleaseValueRE.MatchString(s.OSID) {
		return fmt.Errorf("extension OS ID %q: os-release(5) IDs are 0-9, a-z, '.', '_' and '-' only", s.OSID)
	}
	if s.VersionID != "" && !osReleaseValueRE.MatchString(s.VersionID) {
		return fmt.Errorf("extension VERSION_ID %q: os-release(5) allows 0-9, a-z, '.', '_' and '-' only", s.VersionID)
	}
	if s.OSID == "_any" {
		if s.VersionID != "" {
			// extension-util.c, extension_release_validate: an ID=_any
			// extension matches before any version is looked at.
			return fmt.Errorf("extension VERSION_ID=%s with ID=_any: systemd-sysext matches _any with every OS and ignores the version; give the initrd's ID too, or no version", s.VersionID)
		}
		return nil
	}
	if host == nil {
		if s.VersionID == "" {
			return fmt.Errorf("extension for ID=%s: a VERSION_ID= is needed (or ID=_any, or the initrd's release file when it has no VERSION_ID)", s.OSID)
		}
		return nil
	}
	return s.matchInitrd(host)
}

// matchInitrd checks the extension against the release file of the initrd
// it is for, as systemd-sysext will (extension-util.c,
// extension_release_validate, with the scope "initrd"): the extension's ID
// is the initrd's ID or one of its ID_LIKE; then, unless the initrd has
// neither VERSION_ID nor SYSEXT_LEVEL (a rolling release), the VERSION_IDs
// are equal (the extension declares no SYSEXT_LEVEL, so systemd compares
// VERSION_ID even when the initrd has a level). The scope (initrd) and
// architecture (x86-64) are the extension's own and always fit an x86-64
// initrd.
func (s *Sysext) matchInitrd(host map[string]string) error {
	id := host["ID"]
	if id == "" {
		return errors.New("initrd release file: no ID= (systemd-sysext needs the host's ID)")
	}
	if s.OSID != id && !slices.Contains(strings.Fields(host["ID_LIKE"]), s.OSID) {
		return fmt.Errorf("extension for ID=%s, but the initrd is ID=%s (ID_LIKE=%q): systemd-sysext would not merge it", s.OSID, id, host["ID_LIKE"])
	}
	hostVersion := host["VERSION_ID"]
	if hostVersion == "" && host["SYSEXT_LEVEL"] == "" {
		return nil // a rolling release: the ID is enough
	}
	if hostVersion == "" {
		// A SYSEXT_LEVEL and no VERSION_ID: the extension has no level,
		// so none of extension_release_validate's comparisons applies
		// and it matches.
		return nil
	}
	if s.VersionID != hostVersion {
		return fmt.Errorf("extension for VERSION_ID=%q, but the initrd is VERSION_ID=%s: systemd-sysext would not merge it", s.VersionID, hostVersion)
	}
	return nil
}

// ParseOSRelease reads an os-release(5) file (os-release, initrd-release):
// KEY=VALUE lines, '#' comments and blank lines, values unquoted or in
// single or double quotes with the shell's backslash escapes, as systemd's
// load_env_file_pairs reads them.
func ParseOSRelease(b []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\"'") {
			return nil, fmt.Errorf("os-release line %d: want KEY=VALUE, have %q", n, line)
		}
		val, err := unquoteOSRelease(v)
		if err != nil {
			return nil, fmt.Errorf("os-release line %d (%s): %w", n, k, err)
		}
		out[k] = val
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("os-release: %w", err)
	}
	return out, nil
}

// unquoteOSRelease undoes the shell quoting os-release(5) allows: double
// quotes (backslash escapes \\, \", \$ and \`), single quotes (literal), and
// unquoted text (a backslash escapes the next character).
func unquoteOSRelease(v string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"':
			j := i + 1
			for ; j < len(v) && v[j] != '"'; j++ {
				if v[j] == '\\' && j+1 < len(v) && strings.IndexByte("\\\"$`", v[j+1]) >= 0 {
					j++
				}
				b.WriteByte(v[j])
			}
			if j == len(v) {
				return "", errors.New("unterminated double quote")
			}
			i = j
		case '\'':
			j := strings.IndexByte(v[i+1:], '\'')
			if j < 0 {
				return "", errors.New("unterminated single quote")
			}
			b.WriteString(v[i+1 : i+1+j])
			i += j + 1
		case '\\':
			if i+1 < len(v) {
				i++
				b.WriteByte(v[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
