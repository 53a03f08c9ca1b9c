package broker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// evidenceMeasurements is what attest.Validator reports, in its shape.
const evidenceMeasurements = `{"bank":"sha256","pcrs":{"7":"00ab","11":"3f1c","15":"ee"},"ak":"a1b2",
	"ak_pinned":false,"root_hash":"verified:beef","tee":"sev-snp:verified",
	"tee_claims":{"policy":{"debug":false},"family":[1,2,{"x":"y"}]},"firmware_log":"verified:0,7",
	"tpm_reset_count":3,"tpm_restart_count":0,"maybe":null}`

// TestCheckRequire compares requirements with evidence; want is "" when
// the evidence shows them, else the mismatch's message.
func TestCheckRequire(t *testing.T) {
	for _, tc := range []struct {
		name, require, measurements, want string
	}{
		{"nothing required", ``, evidenceMeasurements, ""},
		{"one pcr", `{"pcrs":{"7":"00ab"}}`, evidenceMeasurements, ""},
		{"several members", `{"pcrs":{"11":"3f1c","7":"00ab"},"ak":"a1b2","tee":"sev-snp:verified","root_hash":"verified:beef"}`, evidenceMeasurements, ""},
		{"nested objects", `{"tee_claims":{"policy":{"debug":false}}}`, evidenceMeasurements, ""},
		{"null", `{"maybe":null}`, evidenceMeasurements, ""},
		{"number by value", `{"tpm_reset_count":3.0e0}`, evidenceMeasurements, ""},
		{"zero of any sign", `{"tpm_restart_count":-0.0}`, evidenceMeasurements, ""},
		{"array exactly", `{"tee_claims":{"family":[1.0,2,{"x":"y"}]}}`, evidenceMeasurements, ""},
		{"empty nested object needs an object", `{"pcrs":{}}`, evidenceMeasurements, ""},

		{"wrong pcr", `{"pcrs":{"7":"3f1c"}}`, evidenceMeasurements, "pcrs.7 is 00ab, the key requires 3f1c"},
		{"pcr not quoted", `{"pcrs":{"4":"3f1c"}}`, evidenceMeasurements, "pcrs.4 is missing from the evidence"},
		{"missing member", `{"pcrs":{"7":"00ab"},"vmpl":0}`, evidenceMeasurements, "vmpl is missing from the evidence"},
		{"first difference in the requirement's order", `{"tee":"tdx:verified","ak":"ffff"}`, evidenceMeasurements,
			"tee is sev-snp:verified, the key requires tdx:verified"},
		{"case-sensitive", `{"pcrs":{"7":"00AB"}}`, evidenceMeasurements, "pcrs.7 is 00ab, the key requires 00AB"},
		{"type mismatch", `{"tpm_reset_count":"3"}`, evidenceMeasurements, `tpm_reset_count is 3, the key requires "3"`},
		{"object required, string shown", `{"tee":{"type":"sev-snp"}}`, evidenceMeasurements, `tee is "sev-snp:verified", the key requires {"type":"sev-snp"}`},
		{"number differs", `{"tpm_reset_count":3.5}`, evidenceMeasurements, "tpm_reset_count is 3, the key requires 3.5"},
		{"3 is not 30", `{"tpm_reset_count":30e-1}`, `{"tpm_reset_count":30}`, "tpm_reset_count is 30, the key requires 30e-1"},
		{"bool", `{"ak_pinned":true}`, evidenceMeasurements, "ak_pinned is false, the key requires true"},
		{"null is not missing", `{"maybe":0}`, evidenceMeasurements, "maybe is null, the key requires 0"},
		{"array shorter", `{"tee_claims":{"family":[1,2]}}`, evidenceMeasurements, `tee_claims.family is [1,2,{"x":"y"}], the key requires [1,2]`},
		{"array order", `{"tee_claims":{"family":[2,1,{"x":"y"}]}}`, evidenceMeasurements, `tee_claims.family is [1,2,{"x":"y"}], the key requires [2,1,{"x":"y"}]`},
		{"object in array exactly", `{"tee_claims":{"family":[1,2,{}]}}`, evidenceMeasurements, `tee_claims.family is [1,2,{"x":"y"}], the key requires [1,2,{}]`},
		{"odd member name", `{"a.b":1}`, `{}`, `"a.b" is missing from the evidence`},
		{"no measurements", `{"ak":"a1b2"}`, ``, "ak is missing from the evidence"},
		{"null measurements", `{"ak":"a1b2"}`, `null`, "ak is missing from the evidence"},
		{"measurements not an object", `{"ak":"a1b2"}`, `[1]`, "the evidence's measurements are an array, not an object"},
		{"long values truncated", `{"pcrs":{"7":"` + strings.Repeat("1", 96) + `"}}`, `{"pcrs":{"7":"` + strings.Repeat("2", 96) + `"}}`,
			"pcrs.7 is " + strings.Repeat("2", 64) + "…, the key requires " + strings.Repeat("1", 64) + "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, e := canonicalRequire(json.RawMessage(tc.require))
			if e != nil {
				t.Fatalf("requirement refused: %v", e)
			}
			mm, err := checkRequire(req, json.RawMessage(tc.measurements))
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if mm != nil {
				got = mm.String()
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("mismatch (-want +got):\n%s", d)
			}
		})
	}
}

// TestCanonicalRequire: what put-key accepts, and the form it stores.
func TestCanonicalRequire(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, wantErr string
	}{
		{"absent", ``, ``, ""},
		{"null", `null`, ``, ""},
		{"empty", ` { } `, ``, ""},
		{"compacted in order", "{ \"pcrs\" : {\"7\": \"ab\"},\n \"ak\":\"cd\" }", `{"pcrs":{"7":"ab"},"ak":"cd"}`, ""},
		{"numbers kept", `{"n":1.50e+2}`, `{"n":1.50e+2}`, ""},
		{"escapes as encoding/json writes them", `{"s":"\u0041<\/"}`, `{"s":"A\u003c/"}`, ""},
		{"array", `["pcrs"]`, ``, "not an array"},
		{"string", `"pcrs"`, ``, "not a string"},
		{"number", `7`, ``, "not a number"},
		{"duplicate member", `{"a":{"b":1,"b":2}}`, ``, `twice in one object: "b"`},
		{"too deep", strings.Repeat(`{"a":`, maxRequireDepth+1) + `1` + strings.Repeat(`}`, maxRequireDepth+1), ``, "nested deeper than 32"},
		{"deep enough", strings.Repeat(`{"a":`, maxRequireDepth) + `1` + strings.Repeat(`}`, maxRequireDepth),
			strings.Repeat(`{"a":`, maxRequireDepth) + `1` + strings.Repeat(`}`, maxRequireDepth), ""},
		{"too large", `{"a":"` + strings.Repeat("x", maxRequire) + `"}`, ``, "larger than 16384 bytes"},
		{"malformed", `{"a":}`, ``, "malformed JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in json.RawMessage
			if tc.in != "" {
				in = json.RawMessage(tc.in)
			}
			got, e := canonicalRequire(in)
			gotErr := ""
			if e != nil {
				gotErr = e.msg
				if e.code != "invalid_require" || e.status != 400 {
					t.Errorf("refusal %d %s, want 400 invalid_require", e.status, e.code)
				}
			}
			if tc.wantErr == "" && gotErr != "" || !strings.Contains(gotErr, tc.wantErr) {
				t.Fatalf("error %q, want one with %q", gotErr, tc.wantErr)
			}
			if d := cmp.Diff(tc.want, string(got)); d != "" {
				t.Errorf("stored (-want +got):\n%s", d)
			}
			if tc.want == "" && got != nil {
				t.Errorf("stored %q, want nil", got)
			}
		})
	}
}

func TestNumbersEqual(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1", "1.0", true},
		{"1", "1e0", true},
		{"1", "0.1e1", true},
		{"100", "1e2", true},
		{"100", "1E+2", true},
		{"0.001", "1e-3", true},
		{"0", "-0", true},
		{"0", "0e999999999999999999999", true},
		{"-1.5", "-15e-1", true},
		{"1", "10", false},
		{"1", "-1", false},
		{"1e999999999999999999999", "1e999999999999999999998", false},
		{"12345678901234567890123", "12345678901234567890124", false},
		{"9007199254740993", "9007199254740992", false}, // equal as float64
	} {
		if got := numbersEqual(tc.a, tc.b); got != tc.want {
			t.Errorf("numbersEqual(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := numbersEqual(tc.b, tc.a); got != tc.want {
			t.Errorf("numbersEqual(%s, %s) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

// FuzzRequire checks, for any requirement put-key accepts: storing it again
// stores the same bytes; json.Marshal keeps them (as the bolt store does);
// evidence that shows exactly it satisfies it; and against any evidence the
// check answers without an error and names the path it reports.
func FuzzRequire(f *testing.F) {
	f.Add([]byte(`{"pcrs":{"7":"00ab"}}`), []byte(evidenceMeasurements))
	f.Add([]byte(`{"n":1.0,"a":[1,{"b":null}],"s":"\u00e9<"}`), []byte(`{"n":1,"a":[1,{"b":null}],"s":"é\u003c"}`))
	f.Fuzz(func(t *testing.T, require, measurements []byte) {
		c, e := canonicalRequire(require)
		if e != nil {
			if e.status != 400 || e.code != "invalid_require" || e.msg == "" {
				t.Fatalf("refusal without 400 invalid_require and a reason: %+v", e)
			}
			return
		}
		again, e := canonicalRequire(c)
		if e != nil || string(again) != string(c) {
			t.Fatalf("stored %q, stored again %q (%v)", c, again, e)
		}
		if m, err := json.Marshal(c); c != nil && (err != nil || string(m) != string(c)) {
			t.Fatalf("json.Marshal changes %q to %q (%v)", c, m, err)
		}
		if mm, err := checkRequire(c, c); err != nil || mm != nil {
			t.Fatalf("%q does not satisfy itself: %v %v", c, mm, err)
		}
		if !json.Valid(measurements) {
			return
		}
		mm, err := checkRequire(c, measurements)
		if err != nil {
			t.Fatalf("check against %q: %v", measurements, err)
		}
		if mm != nil && !strings.HasPrefix(mm.String(), mm.path) {
			t.Fatalf("message %q does not start with the path %q", mm.String(), mm.path)
		}
	})
}
