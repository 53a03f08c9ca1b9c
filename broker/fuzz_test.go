package broker

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fuzzDecode decodes data as a T, and when that succeeds checks that the
// value re-encodes and decodes to itself (validation is idempotent).
func fuzzDecode[T any](t *testing.T, data []byte, validate func(*T) *apiError) {
	v, e := decodeBody(bytes.NewReader(data), validate)
	if e != nil {
		if e.status < 400 || e.status >= 500 || e.code == "" || e.msg == "" {
			t.Fatalf("refusal without a 4xx status and reason: %+v", e)
		}
		return
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("accepted value does not encode: %v", err)
	}
	w, e := decodeBody(bytes.NewReader(again), validate)
	if e != nil {
		t.Fatalf("re-encoded value %s refused: %v", again, e)
	}
	if d := cmp.Diff(v, w); d != "" {
		t.Fatalf("round trip changed the value (-first +second):\n%s", d)
	}
}

func FuzzDecodeEvidence(f *testing.F) {
	f.Add([]byte(`{"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","evidence":"eA=="}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, data, validateEvidence) })
}

func FuzzDecodeRegister(f *testing.F) {
	f.Add([]byte(`{"volume":{"uuid":"11111111-2222-4333-8444-555555555555","key_id":"AB","measurements":{"a": [1, 2]}}}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, data, validateRegister) })
}

func FuzzDecodeAdvanceEpoch(f *testing.F) {
	f.Add([]byte(`{"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","evidence":"eA==","old":1,"new":2}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, data, validateAdvance) })
}

func FuzzDecodePutKey(f *testing.F) {
	f.Add([]byte(`{"key_id":"00ff","key":"AAAAAAAAAAAAAAAAAAAAAA=="}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, data, validatePutKey) })
}

func FuzzDecodeReleaseKey(f *testing.F) {
	f.Add([]byte(`{"nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","evidence":"eA=="}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecode(t, data, validateRelease) })
}

// TestDecodeErrors names what is wrong for each kind of bad body.
func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, body string
		want       string
	}{
		{"ok", `{"key_id":"00","key":"AAAAAAAAAAAAAAAAAAAAAA=="}`, ""},
		{"unknown field", `{"key_id":"00","key":"AAAAAAAAAAAAAAAAAAAAAA==","x":1}`, "unknown_field"},
		{"null", `null`, "invalid_key_id"},
		{"string", `"x"`, "malformed_json"},
		{"deep nesting", `{"key_id":` + string(bytes.Repeat([]byte("["), 20000)), "malformed_json"},
		{"short key", `{"key_id":"00","key":"AA=="}`, "invalid_key"},
		{"odd hex", `{"key_id":"0","key":"AAAAAAAAAAAAAAAAAAAAAA=="}`, "invalid_key_id"},
		{"require", `{"key_id":"00","key":"AAAAAAAAAAAAAAAAAAAAAA==","require":{"pcrs":{"7":"ab"}}}`, ""},
		{"require not an object", `{"key_id":"00","key":"AAAAAAAAAAAAAAAAAAAAAA==","require":["ab"]}`, "invalid_require"},
		{"key id too long", `{"key_id":"` + string(bytes.Repeat([]byte("a"), 130)) + `","key":"AAAAAAAAAAAAAAAAAAAAAA=="}`, "invalid_key_id"},
	}
	for _, tc := range tests {
		_, e := decodeBody(bytes.NewReader([]byte(tc.body)), validatePutKey)
		got := ""
		if e != nil {
			got = e.code
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: code (-want +got):\n%s (%v)", tc.name, d, e)
		}
	}
}
