package uki_test

import (
	"testing"

	"github.com/confidisk/confidisk/uki"
)

// FuzzParse feeds arbitrary bytes to every function that parses a PE image:
// none may panic, and Assemble's output must parse again. The seed corpus
// (testdata/fuzz/FuzzParse) holds an addon built on the 254 addon stub.
func FuzzParse(f *testing.F) {
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		uki.Inspect(b)
		uki.KernelBootEvents(b)
		uki.CheckKernel(b)
		out, err := uki.Assemble(b, []uki.Part{{Name: ".cmdline", Data: []byte("roothash=00")}, {Name: ".sbat", Data: []byte("x,1\n")}})
		if err != nil {
			return
		}
		if _, err := uki.SectionData(out, ".cmdline"); err != nil {
			t.Fatalf("assembled image does not parse: %v", err)
		}
	})
}
