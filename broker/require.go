package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
)

// A key's requirement (api.PutKeyRequest.Require) is a JSON object of
// measurements the evidence of a release must show: every member of it
// must be present in the verified Claims.Measurements with an equal value.
// Objects are compared member by member, recursively (members the
// requirement does not name are not looked at); arrays, strings, numbers,
// booleans and null must be equal exactly (arrays element by element,
// objects inside arrays with the same members; numbers by value, so 1
// equals 1.0 and 1e0; strings case-sensitively).

// Why a requirement is not accepted at put-key.
var (
	errRequireDuplicate = errors.New("a member name appears twice in one object")
	errRequireTooDeep   = fmt.Errorf("nested deeper than %d levels", maxRequireDepth)
)

// valueKind is the kind of a [jsonValue].
type valueKind uint8

const (
	jsonNull valueKind = iota
	jsonBool
	jsonNumber
	jsonString
	jsonArray
	jsonObject
)

var valueKindNames = [...]string{"null", "a boolean", "a number", "a string", "an array", "an object"}

// jsonValue is a parsed JSON value that keeps the order of object members
// (the first difference reported is the first in the requirement's order)
// and numbers' literals.
type jsonValue struct {
	kind    valueKind
	b       bool
	s       string       // a string, or a number's literal
	items   []jsonValue  // an array's elements
	members []jsonMember // an object's members, in document order
}

type jsonMember struct {
	name  string
	value jsonValue
}

// member returns the value of the last member called name (the one
// encoding/json keeps), or nil.
func (v *jsonValue) member(name string) *jsonValue {
	for i := len(v.members) - 1; i >= 0; i-- {
		if v.members[i].name == name {
			return &v.members[i].value
		}
	}
	return nil
}

// parseJSON parses one JSON value of at most maxDepth nested arrays and
// objects. With unique, a member name twice in one object is an error.
func parseJSON(data []byte, maxDepth int, unique bool) (jsonValue, error) {
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v) // for its description of the error
		return jsonValue{}, fmt.Errorf("malformed JSON: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, maxDepth, unique)
	if err != nil {
		return jsonValue{}, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return jsonValue{}, errors.New("data after the JSON value")
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int, unique bool) (jsonValue, error) {
	tok, err := dec.Token()
	if err != nil {
		return jsonValue{}, fmt.Errorf("malformed JSON: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth == 0 {
			return jsonValue{}, errRequireTooDeep
		}
		if t == '[' {
			return parseArray(dec, depth-1, unique)
		}
		return parseObject(dec, depth-1, unique)
	case bool:
		return jsonValue{kind: jsonBool, b: t}, nil
	case json.Number:
		return jsonValue{kind: jsonNumber, s: string(t)}, nil
	case string:
		return jsonValue{kind: jsonString, s: t}, nil
	case nil:
		return jsonValue{kind: jsonNull}, nil
	}
	return jsonValue{}, fmt.Errorf("malformed JSON: unexpected token %v", tok)
}

func parseArray(dec *json.Decoder, depth int, unique bool) (jsonValue, error) {
	v := jsonValue{kind: jsonArray}
	for dec.More() {
		item, err := parseValue(dec, depth, unique)
		if err != nil {
			return jsonValue{}, err
		}
		v.items = append(v.items, item)
	}
	_, err := dec.Token() // ]
	return v, err
}

func parseObject(dec *json.Decoder, depth int, unique bool) (jsonValue, error) {
	v := jsonValue{kind: jsonObject}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonValue{}, fmt.Errorf("malformed JSON: %w", err)
		}
		name, _ := tok.(string)
		if unique && v.member(name) != nil {
			return jsonValue{}, fmt.Errorf("%w: %q", errRequireDuplicate, name)
		}
		val, err := parseValue(dec, depth, unique)
		if err != nil {
			return jsonValue{}, err
		}
		v.members = append(v.members, jsonMember{name: name, value: val})
	}
	_, err := dec.Token() // }
	return v, err
}

// appendJSON appends v as compact JSON, its strings escaped as
// encoding/json escapes them (so that json.Marshal keeps the bytes).
func (v *jsonValue) appendJSON(b []byte) []byte {
	switch v.kind {
	case jsonNull:
		return append(b, "null"...)
	case jsonBool:
		return strconv.AppendBool(b, v.b)
	case jsonNumber:
		return append(b, v.s...)
	case jsonString:
		return appendJSONString(b, v.s)
	case jsonArray:
		b = append(b, '[')
		for i := range v.items {
			if i > 0 {
				b = append(b, ',')
			}
			b = v.items[i].appendJSON(b)
		}
		return append(b, ']')
	}
	b = append(b, '{')
	for i := range v.members {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendJSONString(b, v.members[i].name), ':')
		b = v.members[i].value.appendJSON(b)
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// canonicalRequire validates the Require of a put-key request and returns
// what is stored: nil for no requirement (absent, null or {}), else the
// object as compact JSON.
func canonicalRequire(raw json.RawMessage) (json.RawMessage, *apiError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if len(raw) > maxRequire {
		return nil, badRequest("invalid_require", "require is larger than %d bytes", maxRequire)
	}
	v, err := parseJSON(raw, maxRequireDepth, true)
	switch {
	case err != nil:
		return nil, badRequest("invalid_require", "require: %v", err)
	case v.kind != jsonObject:
		return nil, badRequest("invalid_require",
			`require must be a JSON object of measurements (for example {"pcrs":{"7":"<hex>"}}), not %s`, valueKindNames[v.kind])
	case len(v.members) == 0:
		return nil, nil
	}
	return v.appendJSON(nil), nil
}

// mismatch is the first value a requirement names that the evidence does
// not show.
type mismatch struct {
	// path names the value: member names joined by ".", "" for the whole
	// measurements.
	path string
	want *jsonValue
	// got is the evidence's value, nil when it has none.
	got *jsonValue
}

func (m *mismatch) String() string {
	switch {
	case m.got == nil:
		return m.path + " is missing from the evidence"
	case m.path == "":
		return "the evidence's measurements are " + valueKindNames[m.got.kind] + ", not an object"
	}
	got, want := show(m.got, m.want), show(m.want, m.got)
	return m.path + " is " + got + ", the key requires " + want
}

// show is v for a message: a string as itself when compared with a string,
// else JSON; truncated.
func show(v, other *jsonValue) string {
	if v.kind == jsonString && other.kind == jsonString {
		return truncate(v.s)
	}
	return truncate(string(v.appendJSON(nil)))
}

// checkRequire reports the first value of require (stored by
// canonicalRequire) that measurements (the verifier's, absent or null
// meaning none) do not show, or nil when they show all of it.
func checkRequire(require, measurements json.RawMessage) (*mismatch, error) {
	if len(require) == 0 {
		return nil, nil
	}
	want, err := parseJSON(require, maxRequireDepth, false)
	if err != nil {
		return nil, fmt.Errorf("stored requirement: %w", err)
	}
	got := jsonValue{kind: jsonObject}
	if len(measurements) > 0 {
		// encoding/json's own nesting limit.
		if got, err = parseJSON(measurements, 10000, false); err != nil {
			return nil, fmt.Errorf("verifier measurements: %w", err)
		}
		if got.kind == jsonNull {
			got = jsonValue{kind: jsonObject}
		}
	}
	return findMismatch("", &want, &got), nil
}

// findMismatch compares the evidence's value got at path with the
// required want.
func findMismatch(path string, want, got *jsonValue) *mismatch {
	if want.kind != jsonObject {
		if !jsonEqual(want, got) {
			return &mismatch{path: path, want: want, got: got}
		}
		return nil
	}
	if got.kind != jsonObject {
		return &mismatch{path: path, want: want, got: got}
	}
	for i := range want.members {
		m := &want.members[i]
		p := joinPath(path, m.name)
		g := got.member(m.name)
		if g == nil {
			return &mismatch{path: p, want: &m.value}
		}
		if mm := findMismatch(p, &m.value, g); mm != nil {
			return mm
		}
	}
	return nil
}

// joinPath appends a member name to a path; a name that is empty or holds
// anything but letters, digits, "_" and "-" is written as a JSON string.
func joinPath(path, name string) string {
	if !plainName(name) {
		name = string(appendJSONString(nil, name))
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

func plainName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// jsonEqual reports whether a and b are the same JSON value: objects with
// the same members (in any order), numbers by value.
func jsonEqual(a, b *jsonValue) bool {
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case jsonNull:
		return true
	case jsonBool:
		return a.b == b.b
	case jsonNumber:
		return numbersEqual(a.s, b.s)
	case jsonString:
		return a.s == b.s
	case jsonArray:
		if len(a.items) != len(b.items) {
			return false
		}
		for i := range a.items {
			if !jsonEqual(&a.items[i], &b.items[i]) {
				return false
			}
		}
		return true
	}
	return sameMembers(a, b) && sameMembers(b, a)
}

// sameMembers reports whether every member of a is in b with an equal value.
func sameMembers(a, b *jsonValue) bool {
	for i := range a.members {
		m := b.member(a.members[i].name)
		if m == nil || !jsonEqual(a.member(a.members[i].name), m) {
			return false
		}
	}
	return true
}

// decimal is a JSON number's value: (-1)^neg × 0.digits × 10^exp, digits
// without leading or trailing zeros ("" for zero, whatever its sign).
type decimal struct {
	neg    bool
	digits string
	exp    big.Int
}

// parseDecimal reads a JSON number literal (RFC 8259 section 6 syntax, as
// the decoder checked it) exactly: no rounding, any exponent.
func parseDecimal(lit string) *decimal {
	d := new(decimal)
	lit, d.neg = strings.CutPrefix(lit, "-")
	mant, expLit, _ := strings.Cut(strings.ToLower(lit), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	if _, ok := d.exp.SetString(expLit, 10); !ok {
		d.exp.SetInt64(0)
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	// 0.digits × 10^exp = intPart.frac × 10^expLit.
	d.exp.Add(&d.exp, big.NewInt(int64(len(digits)-len(frac))))
	d.digits = strings.TrimRight(digits, "0")
	if d.digits == "" {
		return new(decimal)
	}
	return d
}

// numbersEqual compares two JSON number literals by value.
func numbersEqual(a, b string) bool {
	if a == b {
		return true
	}
	x, y := parseDecimal(a), parseDecimal(b)
	return x.neg == y.neg && x.digits == y.digits && x.exp.Cmp(&y.exp) == 0
}
