package luks2

// JSON-level validation of the LUKS2 metadata, as strict as cryptsetup 2.6:
// every rule of the on-disk format document (sections 2 and 3) and what
// cryptsetup's lib/luks2 enforces beyond it when it reads or writes a header.
// Each check names the cryptsetup function it mirrors. The checks work on
// the JSON tree (before it is decoded into Metadata), because most rules are
// about the JSON types of fields and about fields Metadata does not model.
//
// cryptsetup is json-c based; where this package cannot follow json-c it is
// stricter, never laxer: encoding/json refuses json-c's extensions (comments,
// single quotes, trailing commas), and the typed decode into Metadata refuses
// integer strings with leading zeros, signs or spaces, which strtoull takes.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// maxKeyslotsSize is LUKS2_MAX_KEYSLOTS_SIZE (lib/luks2/luks2.h): 128 MiB.
const maxKeyslotsSize = 0x8000000

// jsonText checks the bytes of a JSON area and returns its JSON text.
// It mirrors validate_json_area (luks2_disk_metadata.c): the first byte is
// '{' and, after the object and the white space json-c 0.16's tokener
// consumes behind it (space, tab, LF, CR; not VT or FF), only NUL bytes
// follow, at least one of them.
func jsonText(area []byte) ([]byte, error) {
	if len(area) == 0 || area[0] != '{' {
		return nil, errors.New("json area: the first byte is not '{'")
	}
	text := area
	if i := bytes.IndexByte(area, 0); i >= 0 {
		text = area[:i]
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("json area: %w", err)
	}
	end := int(dec.InputOffset())
	for end < len(area) && strings.IndexByte(" \t\n\r", area[end]) >= 0 {
		end++
	}
	if end >= len(area) {
		return nil, errors.New("json area: no NUL byte after the JSON text")
	}
	if i := slices.IndexFunc(area[end:], func(b byte) bool { return b != 0 }); i >= 0 {
		return nil, fmt.Errorf("json area: byte 0x%02x at offset %d after the JSON text (only NUL bytes may follow it)", area[end+i], end+i)
	}
	return area[:end], nil
}

// jsonTree decodes JSON text into maps, slices, strings and json.Numbers.
func jsonTree(text []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("json metadata: %w", err)
	}
	return top, nil
}

// validateTree runs cryptsetup's LUKS2_hdr_validate on the JSON tree of a
// header whose JSON area holds jsonSize bytes, in cryptsetup's order. With
// write set it also applies the checks cryptsetup makes before it writes
// (it repairs those on read: LUKS2_hdr_repair).
func validateTree(top map[string]any, jsonSize uint64, write bool) error {
	checks := []func(map[string]any) error{
		validateRequirements, validateTokens, validateDigests, validateSegments,
		validateKeyslots, validateConfig, validateAreas,
	}
	for _, c := range checks {
		if err := c(top); err != nil {
			return fmt.Errorf("json metadata: %w", err)
		}
	}
	if err := validateJSONSize(top, jsonSize); err != nil {
		return fmt.Errorf("json metadata: %w", err)
	}
	if err := validateKeyslotTypes(top, write); err != nil {
		return fmt.Errorf("json metadata: %w", err)
	}
	return nil
}

// --- typed access to the tree, after cryptsetup's json_contains helpers ---

// fieldErr names the object and the field a rule failed on.
func fieldErr(what, key, format string, a ...any) error {
	return fmt.Errorf("%s: field %q %s", what, key, fmt.Sprintf(format, a...))
}

// section returns a top-level object (json_contains(..., "JSON area", key,
// json_type_object) in each hdr_validate_* function).
func section(top map[string]any, key string) (map[string]any, error) {
	o, ok := top[key].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("top level: field %q is missing or not an object", key)
	}
	return o, nil
}

// objField mirrors json_contains(..., json_type_object).
func objField(o map[string]any, what, key string) (map[string]any, error) {
	v, ok := o[key].(map[string]any)
	if !ok {
		return nil, fieldErr(what, key, "is missing or not an object")
	}
	return v, nil
}

// arrField mirrors json_contains(..., json_type_array).
func arrField(o map[string]any, what, key string) ([]any, error) {
	v, ok := o[key].([]any)
	if !ok {
		return nil, fieldErr(what, key, "is missing or not an array")
	}
	return v, nil
}

// strField mirrors json_contains_string: a non-empty string.
func strField(o map[string]any, what, key string) (string, error) {
	v, ok := o[key].(string)
	if !ok || v == "" {
		return "", fieldErr(what, key, "is missing or not a non-empty string")
	}
	return v, nil
}

// intField mirrors json_contains(..., json_type_int): json-c types a number
// written without fraction or exponent as an integer.
func intField(o map[string]any, what, key string) (json.Number, error) {
	v, ok := o[key].(json.Number)
	if !ok || strings.ContainsAny(string(v), ".eE") {
		return "", fieldErr(what, key, "is missing or not an integer")
	}
	return v, nil
}

// uint32Field is intField plus validate_json_uint32 (0..2^32-1).
func uint32Field(o map[string]any, what, key string) (uint32, error) {
	n, err := intField(o, what, key)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil || v < 0 || v > math.MaxUint32 {
		return 0, fieldErr(what, key, "is %s, not a uint32", n)
	}
	return uint32(v), nil
}

// numbered mirrors cryptsetup's numbered(): only decimal digits (the empty
// string included).
func numbered(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < '0' || r > '9' })
}

// u64Field reads a string-uint64 (format document section 3.1): a
// non-empty string of digits (numbered) whose value fits 64 bits
// (json_str_to_uint64).
func u64Field(o map[string]any, what, key string) (uint64, error) {
	s, err := strField(o, what, key)
	if err != nil {
		return 0, err
	}
	if !numbered(s) {
		return 0, fieldErr(what, key, "is %q, not in numbered form", s)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fieldErr(what, key, "is %q, which does not fit 64 bits", s)
	}
	return v, nil
}

// strtoullField reads a field the way cryptsetup's json_str_to_uint64 does
// without a numbered() check before it (config json_size and keyslots_size,
// a reencrypt keyslot's shift_size): strtoull over the whole string, which
// takes leading white space and a sign ("-1" wraps around).
func strtoullField(o map[string]any, what, key string) (uint64, error) {
	s, err := strField(o, what, key)
	if err != nil {
		return 0, err
	}
	t := strings.TrimLeft(s, " \t\n\v\f\r")
	neg := strings.HasPrefix(t, "-")
	t = strings.TrimPrefix(strings.TrimPrefix(t, "-"), "+")
	v, perr := strconv.ParseUint(t, 10, 64)
	if perr != nil || !numbered(t) {
		return 0, fieldErr(what, key, "is %q, not a 64-bit decimal number", s)
	}
	if neg {
		v = -v
	}
	return v, nil
}

// stringArray mirrors the loops that check every element of an optional
// flags or mandatory array is a string.
func stringArray(o map[string]any, what, key string) ([]string, error) {
	if _, ok := o[key]; !ok {
		return nil, nil
	}
	arr, err := arrField(o, what, key)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, fieldErr(what, key, "element %d is not a string", i)
		}
		out = append(out, s)
	}
	return out, nil
}

// forEach calls f for every member of a section in id order, after checking
// the id is in numbered form (numbered() in hdr_validate_keyslots/tokens/
// digests/segments) and the member is an object.
func forEach(sec map[string]any, kind string, f func(what, id string, o map[string]any) error) error {
	ids := make([]string, 0, len(sec))
	for id := range sec {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int { return cmpID(a, b) })
	for _, id := range ids {
		if !numbered(id) {
			return fmt.Errorf("%s %q: the id is not in numbered form", kind, id)
		}
		what := kind + " " + id
		if id == "" || id != strconv.Itoa(idNumber(id)) {
			what = kind + " " + strconv.Quote(id)
		}
		o, ok := sec[id].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", what)
		}
		if err := f(what, id, o); err != nil {
			return err
		}
	}
	return nil
}

// cmpID orders numbered ids by value (shorter first), others after.
func cmpID(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// refArray mirrors validate_keyslots_array / validate_segments_array: every
// element of arr is a string naming an object of sec.
func refArray(arr []any, sec map[string]any, what, key, kind string) error {
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			return fieldErr(what, key, "element %d is not a string", i)
		}
		if _, ok := sec[s].(map[string]any); !ok {
			return fieldErr(what, key, "refers to %s %q, which does not exist", kind, s)
		}
	}
	return nil
}
