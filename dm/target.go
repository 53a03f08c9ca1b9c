package dm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SectorSize is the unit of Target.Start and Target.Length: device-mapper
// tables always count 512-byte sectors (Documentation/admin-guide/device-mapper/
// and dmsetup(8), "TABLE FORMAT").
const SectorSize = 512

// Target is one line of a device-mapper table:
//
//	<logical start sector> <num sectors> <target type> <target args>
//
// as described in dmsetup(8) "TABLE FORMAT" and each target's page under the
// kernel's Documentation/admin-guide/device-mapper/. Start and Length count
// 512-byte sectors.
//
// Params may hold key material (a crypt key, an integrity internal_hash
// key). String, GoString and Redacted hide it; only Line and the Params field
// itself reveal it.
type Target struct {
	// Start is the first logical sector of the mapped device this line covers.
	Start uint64
	// Length is the number of sectors this line covers.
	Length uint64
	// Type is the target type name, such as "crypt" or "verity".
	Type string
	// Params is the target-specific argument string.
	Params string
}

// Line returns the complete table line "<start> <length> <type> <params>",
// key material included. Do not log it; use [Target.Redacted].
func (t Target) Line() string {
	if t.Params == "" {
		return fmt.Sprintf("%d %d %s", t.Start, t.Length, t.Type)
	}
	return fmt.Sprintf("%d %d %s %s", t.Start, t.Length, t.Type, t.Params)
}

// Redacted returns the table line with every key replaced by "<redacted>":
// the hex key of a crypt target (a keyring reference ":<size>:<type>:<desc>"
// is kept, it names a key and is not one) and the keys of an integrity
// target's internal_hash, journal_crypt and journal_mac arguments.
func (t Target) Redacted() string {
	r := t
	r.Params = redactParams(t.Type, t.Params)
	return r.Line()
}

// String returns [Target.Redacted], so that printing a Target never leaks a
// key.
func (t Target) String() string { return t.Redacted() }

// GoString implements fmt.GoStringer so that %#v does not leak a key either.
func (t Target) GoString() string {
	return fmt.Sprintf("dm.Target{Start:%d, Length:%d, Type:%q, Params:%q}",
		t.Start, t.Length, t.Type, redactParams(t.Type, t.Params))
}

const redactedMark = "<redacted>"

// redactParams hides key material in params of a target of type typ.
func redactParams(typ, params string) string {
	switch typ {
	case "crypt":
		// <cipher> <key> <iv_offset> <device path> <offset> [...]
		// (Documentation/admin-guide/device-mapper/dm-crypt.rst).
		f := strings.Fields(params)
		if len(f) >= 2 && f[1] != "-" && !strings.HasPrefix(f[1], ":") {
			f[1] = redactedMark
		}
		return strings.Join(f, " ")
	case "integrity":
		// internal_hash:<alg>[:<key>], journal_crypt:<alg>[:<key>],
		// journal_mac:<alg>[:<key>]
		// (Documentation/admin-guide/device-mapper/dm-integrity.rst).
		f := strings.Fields(params)
		for i, w := range f {
			for _, p := range []string{"internal_hash:", "journal_crypt:", "journal_mac:"} {
				rest, ok := strings.CutPrefix(w, p)
				if !ok {
					continue
				}
				if alg, _, hasKey := strings.Cut(rest, ":"); hasKey {
					f[i] = p + alg + ":" + redactedMark
				}
			}
		}
		return strings.Join(f, " ")
	default:
		return params
	}
}

// ParseTarget parses one table line "<start> <length> <type> [<params>]", as
// printed by `dmsetup table` (without the leading "name: ") or returned by
// [Target.Line]. Runs of white space in params are collapsed to one space.
func ParseTarget(line string) (Target, error) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return Target{}, fmt.Errorf("dm: parse table line: want at least 3 fields, got %d", len(f))
	}
	start, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return Target{}, fmt.Errorf("dm: parse table line: start sector: %w", err)
	}
	length, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return Target{}, fmt.Errorf("dm: parse table line: length: %w", err)
	}
	return Target{Start: start, Length: length, Type: f[2], Params: strings.Join(f[3:], " ")}, nil
}

// ParseTable parses a multi-line table (one [ParseTarget] line each, blank
// lines ignored) and checks it with [ValidateTable].
func ParseTable(table string) ([]Target, error) {
	var ts []Target
	for i, line := range strings.Split(table, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		t, err := ParseTarget(line)
		if err != nil {
			return nil, fmt.Errorf("dm: table line %d: %w", i+1, err)
		}
		ts = append(ts, t)
	}
	if err := ValidateTable(ts); err != nil {
		return nil, err
	}
	return ts, nil
}

// FormatTable returns the table as newline-separated [Target.Line] lines,
// keys included: the input format of `dmsetup create`/`dmsetup load`.
func FormatTable(ts []Target) string {
	var b strings.Builder
	for _, t := range ts {
		b.WriteString(t.Line())
		b.WriteByte('\n')
	}
	return b.String()
}

// maxTypeName is DM_MAX_TYPE_NAME (16) minus the terminating NUL
// (include/uapi/linux/dm-ioctl.h).
const maxTypeName = 15

// ValidateTable checks what the kernel's dm_table_add_target
// (drivers/md/dm-table.c) would reject before a DM_TABLE_LOAD: at least one
// target, targets ordered and contiguous from sector 0 (no gaps, no
// overlaps), no zero-length target, type names of 1..15 bytes, and no NUL or
// newline in type or params. Errors never quote Params.
func ValidateTable(ts []Target) error {
	if len(ts) == 0 {
		return errors.New("dm: empty table")
	}
	var next uint64
	for i, t := range ts {
		if t.Start != next {
			return fmt.Errorf("dm: target %d (%s) starts at sector %d, want %d: tables must be contiguous from 0", i, t.Type, t.Start, next)
		}
		if t.Length == 0 {
			return fmt.Errorf("dm: target %d (%s) has zero length", i, t.Type)
		}
		if t.Start+t.Length < t.Start {
			return fmt.Errorf("dm: target %d (%s): start+length overflows", i, t.Type)
		}
		next = t.Start + t.Length
		if t.Type == "" || len(t.Type) > maxTypeName {
			return fmt.Errorf("dm: target %d: type name %q must be 1..%d bytes", i, t.Type, maxTypeName)
		}
		if strings.ContainsAny(t.Type, " \t\n\x00") {
			return fmt.Errorf("dm: target %d: type name %q contains white space or NUL", i, t.Type)
		}
		if strings.ContainsAny(t.Params, "\n\x00") {
			return fmt.Errorf("dm: target %d (%s): params contain a newline or NUL", i, t.Type)
		}
	}
	return nil
}

// checkWord reports an error unless s is a non-empty single word: device
// paths, algorithm names and key descriptions are split on white space by
// the kernel's dm_split_args (drivers/md/dm-table.c).
func checkWord(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if strings.ContainsAny(s, " \t\n\r\v\f\x00") {
		return fmt.Errorf("%s %q contains white space or NUL", what, s)
	}
	return nil
}

// isPowerOfTwo reports whether n is a power of two (n > 0).
func isPowerOfTwo(n uint64) bool { return n != 0 && n&(n-1) == 0 }
