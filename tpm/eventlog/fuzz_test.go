package eventlog

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors are one line
// and wrap ErrMalformed, and that a log it accepts replays for every
// algorithm it declares that this package can compute, and verifies
// against its own replay. Seeds: testdata/fuzz/FuzzParse (the real SeaBIOS
// log and the synthetic logs of the tests; see TestFuzzCorpus).
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error does not wrap ErrMalformed: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		if len(l.Events) == 0 || len(l.Algorithms) == 0 {
			t.Fatalf("parsed log with %d events and %d algorithms", len(l.Events), len(l.Algorithms))
		}
		for i, e := range l.Events {
			if e.Index != i {
				t.Fatalf("Events[%d].Index = %d", i, e.Index)
			}
		}
		for _, a := range l.Algorithms {
			pcrs, err := l.Replay(a.ID)
			if err != nil {
				if errors.Is(err, ErrAlgorithm) && newHash(a.ID) == nil {
					continue
				}
				t.Fatalf("Replay(%s) of a parsed log: %v", algName(a.ID), err)
			}
			if err := l.Verify(a.ID, pcrs); err != nil {
				t.Fatalf("Verify(%s) against its own replay: %v", algName(a.ID), err)
			}
		}
	})
}
