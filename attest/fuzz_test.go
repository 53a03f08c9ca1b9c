package attest

import (
	"context"
	"errors"
	"testing"
)

// FuzzParseEvidence feeds arbitrary bytes to the evidence parser and to the
// validator behind it: every input is accepted or refused with
// ErrMalformedEvidence (or another sentinel once it parses), never a panic.
// Seeds are in testdata/fuzz/FuzzParseEvidence.
func FuzzParseEvidence(f *testing.F) {
	f.Add([]byte(`{"version":1}`))
	v, err := NewValidator(&Policy{Version: 1, PCRs: map[int][]string{7: {"0000000000000000000000000000000000000000000000000000000000000000"}}}, ValidatorOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEvidence(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedEvidence) {
				t.Fatalf("ParseEvidence error %v does not wrap ErrMalformedEvidence", err)
			}
			return
		}
		if _, err := e.Marshal(); err != nil {
			t.Fatalf("parsed evidence does not marshal: %v", err)
		}
		if _, err := v.Verify(context.Background(), b, e.Nonce); err == nil {
			t.Fatal("fuzzed evidence verified")
		}
	})
}
