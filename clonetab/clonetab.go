package clonetab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Path is where systemd-clonesetup-generator(8) reads the table
// (clonetab(5), SYNOPSIS).
const Path = "/etc/clonetab"

// Region sizes in bytes (clonetab(5), region-size=; systemd-clonesetup(8)).
// They are dm-clone's limits of 8 to 2097152 sectors of [SectorSize] bytes.
const (
	SectorSize        = 512
	MinRegionSize     = 4 << 10
	MaxRegionSize     = 1 << 30
	DefaultRegionSize = MinRegionSize
)

// MaxNameLen is the longest device name in bytes: the name field of struct
// dm_ioctl holds 128 bytes with the terminating NUL, and
// systemd-clonesetup refuses a longer name (clonetab(5), first field).
const MaxNameLen = 127

// MaxLineLen is the longest line systemd reads (LONG_LINE_MAX in
// src/basic/fileio.h); on a longer line the generator gives up on the whole
// file.
const MaxLineLen = 1 << 20

// Errors returned, wrapped, by [Parse], [ParseLine], [Format],
// [Entry.Validate] and [Options.Validate]. Test for them with [errors.Is].
var (
	// ErrSyntax: a line does not split into four or five fields, or
	// holds a byte that cannot be in a field.
	ErrSyntax = errors.New("syntax error")
	// ErrName: the first field is not a usable device-mapper name.
	ErrName = errors.New("invalid name")
	// ErrDevice: a device field is not a normalized path below /dev/.
	ErrDevice = errors.New("invalid device path")
	// ErrUnknownOption: the options field holds something other than
	// region-size=.
	ErrUnknownOption = errors.New("unknown option")
	// ErrRegionSize: region-size= is not a power of two from 4K to 1G.
	ErrRegionSize = errors.New("invalid region size")
	// ErrDuplicateName: two entries have the same name (the generator
	// refuses the second one's unit).
	ErrDuplicateName = errors.New("duplicate name")
)

// LineError is the error [Parse] returns: the line (counted from 1, lines
// end at "\n") and what is wrong with it.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("clonetab: line %d: %v", e.Line, e.Err) }

// Unwrap returns the cause, so that [errors.Is] finds the sentinel.
func (e *LineError) Unwrap() error { return e.Err }

// Entry is one line of the table (clonetab(5), DESCRIPTION, fields one to
// five).
type Entry struct {
	// Name is the device-mapper name; the device appears as
	// /dev/mapper/Name.
	Name string
	// Source is the read-only device being cloned; reads of regions not
	// yet hydrated go to it.
	Source string
	// Destination is the writable device that receives the copy; it must
	// be at least as large as Source.
	Destination string
	// Metadata is the small device where dm-clone records which regions
	// are hydrated.
	Metadata string
	// Options is the fifth field.
	Options Options
}

// Options is the fifth field of a line (clonetab(5), DESCRIPTION, fifth
// field, and systemd-clonesetup(8)). The zero value is "no options".
type Options struct {
	// RegionSize is region-size= in bytes, the unit dm-clone hydrates and
	// tracks: a power of two from [MinRegionSize] to [MaxRegionSize], or 0
	// when the option is not given (systemd then uses
	// [DefaultRegionSize]).
	RegionSize uint64
}

// EffectiveRegionSize is the region size systemd-clonesetup uses:
// RegionSize, or [DefaultRegionSize] when it is 0.
func (o Options) EffectiveRegionSize() uint64 {
	if o.RegionSize == 0 {
		return DefaultRegionSize
	}
	return o.RegionSize
}

// Validate checks region-size= against the limits systemd-clonesetup and
// dm-clone impose (clonetab(5), region-size=): a power of two from 4 KiB to
// 1 GiB.
func (o Options) Validate() error {
	if o.RegionSize == 0 {
		return nil
	}
	if o.RegionSize < MinRegionSize || o.RegionSize > MaxRegionSize || bits.OnesCount64(o.RegionSize) != 1 {
		return fmt.Errorf("region-size=%s: %w: want a power of two from 4K to 1G", formatSize(o.RegionSize), ErrRegionSize)
	}
	return nil
}

// String returns the options field as [Format] writes it: "-" for none,
// otherwise "region-size=" with the largest of the suffixes K, M and G that
// divides the size (clonetab(5), fifth field).
func (o Options) String() string {
	if o.RegionSize == 0 {
		return "-"
	}
	return "region-size=" + formatSize(o.RegionSize)
}

// String returns the entry as one line without the newline, the five fields
// separated by single spaces (clonetab(5), DESCRIPTION). It does not
// validate; [Format] does.
func (e Entry) String() string {
	return strings.Join([]string{e.Name, e.Source, e.Destination, e.Metadata, e.Options.String()}, " ")
}

// Validate checks the entry the way systemd-clonesetup-generator and
// systemd-clonesetup do (validate_fields in src/clonesetup/), using the
// stricter of their checks where they differ (clonetab(5), first to fifth
// field):
//
//   - Name: 1 to [MaxNameLen] bytes of valid UTF-8, not "." or "..", with
//     no "/", control character, backslash, quote or glob character
//     ("*", "?", "[").
//   - Source, Destination, Metadata: a path below /dev/ of valid UTF-8 with
//     the same characters refused, no empty, "." or ".." component and
//     components of at most 255 bytes, shorter than 4096 bytes.
//   - Options: [Options.Validate].
//
// It also refuses what systemd takes but what cannot work or cannot be
// written back unchanged: white space in a field, a name that starts with
// "#" (the line would be a comment) or with "-" (systemd-clonesetup would
// take it for a command-line option), the path "/dev" itself or a trailing
// "/", and the same path given for two of the three devices.
func (e Entry) Validate() error {
	if err := validName(e.Name); err != nil {
		return fmt.Errorf("name %q: %w: %s", e.Name, ErrName, err)
	}
	devs := []struct{ what, path string }{
		{"source", e.Source},
		{"destination", e.Destination},
		{"metadata", e.Metadata},
	}
	for i, d := range devs {
		if err := validDevice(d.path); err != nil {
			return fmt.Errorf("%s device %q: %w: %s", d.what, d.path, ErrDevice, err)
		}
		for _, o := range devs[:i] {
			if o.path == d.path {
				return fmt.Errorf("%s device %q: %w: also the %s device", d.what, d.path, ErrDevice, o.what)
			}
		}
	}
	return e.Options.Validate()
}

// ParseLine parses one line of the table (clonetab(5), DESCRIPTION).
// ignored is true, with a zero Entry, for a blank line or a comment. The
// returned entry has passed [Entry.Validate]. The line must not contain a
// line break: [Parse] splits a file into lines.
func ParseLine(line string) (e Entry, ignored bool, err error) {
	e, ignored, err = parseLine(line)
	if err != nil {
		return Entry{}, false, fmt.Errorf("clonetab: %w", err)
	}
	return e, ignored, nil
}

// Parse reads a whole table (clonetab(5)). It returns the entries in file
// order, or a [*LineError] for the first line that systemd would not use
// exactly as written: wrong field count, an invalid field, an unknown or
// invalid option, a name used twice, a line longer than [MaxLineLen], a NUL
// byte or a carriage return other than before a newline.
func Parse(r io.Reader) ([]Entry, error) {
	br := bufio.NewReader(r)
	var entries []Entry
	first := map[string]int{}
	for n := 1; ; n++ {
		line, err := readLine(br)
		if err == io.EOF && line == "" {
			return entries, nil
		}
		if err != nil && err != io.EOF {
			if errors.Is(err, errLineTooLong) {
				return nil, &LineError{Line: n, Err: err}
			}
			return nil, fmt.Errorf("clonetab: line %d: %w", n, err)
		}
		e, ignored, perr := parseLine(line)
		if perr != nil {
			return nil, &LineError{Line: n, Err: perr}
		}
		if !ignored {
			if m, dup := first[e.Name]; dup {
				return nil, &LineError{Line: n, Err: fmt.Errorf("name %q: %w: first on line %d", e.Name, ErrDuplicateName, m)}
			}
			first[e.Name] = n
			entries = append(entries, e)
		}
		if err == io.EOF {
			return entries, nil
		}
	}
}

// Format writes the entries, one line each as [Entry.String] gives it
// (clonetab(5), DESCRIPTION). It validates every entry and refuses a name
// used twice before it writes anything.
func Format(w io.Writer, entries []Entry) error {
	var b bytes.Buffer
	first := map[string]int{}
	for i, e := range entries {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("clonetab: entry %d: %w", i, err)
		}
		if j, dup := first[e.Name]; dup {
			return fmt.Errorf("clonetab: entry %d: name %q: %w: also entry %d", i, e.Name, ErrDuplicateName, j)
		}
		first[e.Name] = i
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("clonetab: %w", err)
	}
	return nil
}

var errLineTooLong = fmt.Errorf("%w: line longer than %d bytes", ErrSyntax, MaxLineLen)

// readLine returns the next line without its "\n"; io.EOF comes with the
// last line (possibly empty) when the input does not end in a newline.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > MaxLineLen+1 {
			return "", errLineTooLong
		}
		switch err {
		case nil:
			buf = buf[:len(buf)-1]
			if len(buf) > MaxLineLen {
				return "", errLineTooLong
			}
			return string(buf), nil
		case bufio.ErrBufferFull:
			continue
		default:
			if len(buf) > MaxLineLen {
				return "", errLineTooLong
			}
			return string(buf), err
		}
	}
}

// parseLine is ParseLine without the package prefix on errors.
func parseLine(line string) (Entry, bool, error) {
	// read_stripped_line strips WHITESPACE (" \t\n\r") at both ends; an
	// empty result or one that starts with '#' is skipped.
	s := strings.Trim(line, " \t\n\r")
	if s == "" || s[0] == '#' {
		return Entry{}, true, nil
	}
	if i := strings.IndexAny(s, "\x00\r\n"); i >= 0 {
		// systemd ends a line at each of these; refuse rather than guess.
		return Entry{}, false, fmt.Errorf("%w: %q inside the line", ErrSyntax, s[i])
	}
	// sscanf("%ms ...") splits on C isspace().
	f := strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\v' || r == '\f'
	})
	if len(f) < 4 {
		return Entry{}, false, fmt.Errorf("%w: %d fields, want name, source, destination and metadata device, then optional options", ErrSyntax, len(f))
	}
	if len(f) > 5 {
		return Entry{}, false, fmt.Errorf("%w: trailing field %q after the options", ErrSyntax, f[5])
	}
	e := Entry{Name: f[0], Source: f[1], Destination: f[2], Metadata: f[3]}
	if len(f) == 5 {
		o, err := parseOptions(f[4])
		if err != nil {
			return Entry{}, false, err
		}
		e.Options = o
	}
	if err := e.Validate(); err != nil {
		return Entry{}, false, err
	}
	return e, false, nil
}

// parseOptions parses the fifth field the way parse_clone_options in
// src/clonesetup/clonesetup.c does, refusing what it only warns about.
func parseOptions(s string) (Options, error) {
	if s == "-" {
		return Options{}, nil
	}
	if err := safeChars(s); err != nil {
		return Options{}, fmt.Errorf("options %q: %w: %s", s, ErrSyntax, err)
	}
	var o Options
	for _, w := range strings.Split(s, ",") {
		switch {
		case w == "":
			return Options{}, fmt.Errorf("options %q: %w: empty option", s, ErrSyntax)
		case w == "-":
			// systemd skips "-" anywhere in the list; confidisk takes it
			// only as the whole field, since a field such as "-,..."
			// would reach systemd-clonesetup's command line as an option.
			return Options{}, fmt.Errorf("options %q: %w: \"-\" stands alone", s, ErrSyntax)
		case strings.HasPrefix(w, "region-size="):
			v := strings.TrimPrefix(w, "region-size=")
			n, err := parseSize(v)
			if err != nil {
				return Options{}, fmt.Errorf("region-size=%s: %w: %v", v, ErrRegionSize, err)
			}
			if n == 0 {
				return Options{}, fmt.Errorf("region-size=%s: %w: want a power of two from 4K to 1G", v, ErrRegionSize)
			}
			// A repeated key: the last one wins, as in systemd.
			o.RegionSize = n
			if err := o.Validate(); err != nil {
				return Options{}, err
			}
		case strings.HasPrefix(w, "region_size="):
			return Options{}, fmt.Errorf("%w %q (systemd 262 spells it region-size= and takes bytes)", ErrUnknownOption, w)
		default:
			return Options{}, fmt.Errorf("%w %q", ErrUnknownOption, w)
		}
	}
	return o, nil
}

// safeChars is string_is_safe(s, 0) (src/basic/string-util.c) without the
// empty-string case: valid UTF-8, no control character, DEL, backslash,
// quote or glob character.
func safeChars(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < ' ' || c == 0x7f:
			return fmt.Errorf("control character %q", c)
		case strings.IndexByte(`\"'*?[`, c) >= 0:
			return fmt.Errorf("character %q", c)
		}
	}
	return nil
}

func validName(n string) error {
	switch {
	case n == "":
		return errors.New("empty")
	case len(n) > MaxNameLen:
		return fmt.Errorf("%d bytes, at most %d", len(n), MaxNameLen)
	case n == "." || n == "..":
		return errors.New("not a file name")
	case strings.Contains(n, "/"):
		return errors.New(`contains "/"`)
	case strings.Contains(n, " "):
		return errors.New("contains white space")
	case n[0] == '#':
		return errors.New(`starts with "#"`)
	case n[0] == '-':
		return errors.New(`starts with "-"`)
	}
	return safeChars(n)
}

func validDevice(p string) error {
	rest, ok := strings.CutPrefix(p, "/dev/")
	switch {
	case strings.HasPrefix(p, "UUID=") || strings.HasPrefix(p, "LABEL=") ||
		strings.HasPrefix(p, "PARTUUID=") || strings.HasPrefix(p, "PARTLABEL="):
		return errors.New("clonetab takes device paths below /dev/, not " + p[:strings.IndexByte(p, '=')+1] + " (use /dev/disk/by-...)")
	case !ok || rest == "":
		return errors.New("want an absolute path below /dev/")
	case len(p) >= 4096:
		return fmt.Errorf("%d bytes, at most 4095", len(p))
	case strings.Contains(p, " "):
		return errors.New("contains white space")
	}
	for _, c := range strings.Split(rest, "/") {
		switch {
		case c == "":
			return errors.New(`empty component ("//" or a trailing "/")`)
		case c == "." || c == "..":
			return fmt.Errorf("component %q", c)
		case len(c) > 255:
			return fmt.Errorf("component of %d bytes, at most 255", len(c))
		}
	}
	return safeChars(p)
}

// formatSize writes n with the largest of G, M and K that divides it, as
// parseSize reads it back.
func formatSize(n uint64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatUint(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatUint(n, 10)
}
