//go:build !confidisk_guest

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/attest"
)

func TestImageMergePolicies(t *testing.T) {
	dir := t.TempDir()
	write := func(name, pcr11, root string) string {
		p := filepath.Join(dir, name)
		s := `{"version":1,"pcrs":{"7":["` + strings.Repeat("07", 32) + `"],"11":["` + pcr11 + `"]},"root_hashes":["` + root + `"]}`
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := write("v1.json", strings.Repeat("b1", 32), strings.Repeat("a1", 32))
	v2 := write("v2.json", strings.Repeat("b2", 32), strings.Repeat("a2", 32))
	out := filepath.Join(dir, "broker.json")
	if _, err := runCLI(t, "image", "merge-policies", "--out", out, v1, v2); err != nil {
		t.Fatal(err)
	}
	got, err := attest.LoadPolicy(out)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{strings.Repeat("b1", 32), strings.Repeat("b2", 32)}, got.PCRs[11]); d != "" {
		t.Errorf("pcr 11 (-want +got):\n%s", d)
	}
	if _, err := runCLI(t, "image", "merge-policies", "--out", out, v2); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("an existing --out without --force: %v", err)
	}
	// Retiring v1: the live file is replaced by v2's values alone.
	if _, err := runCLI(t, "image", "merge-policies", "--force", "--out", out, v2); err != nil {
		t.Fatal(err)
	}
	if got, err = attest.LoadPolicy(out); err != nil || len(got.PCRs[11]) != 1 {
		t.Errorf("after retiring v1: %v, %v", got, err)
	}
	other := filepath.Join(dir, "other.json")
	if err := os.WriteFile(other, []byte(`{"version":1,"pcrs":{"7":["`+strings.Repeat("07", 32)+`"]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(out)
	for _, args := range [][]string{{"--force", "--out", out, v1, other}, {"--force", "--out", out, filepath.Join(dir, "missing.json")}, {v1}} {
		if _, err := runCLI(t, append([]string{"image", "merge-policies"}, args...)...); err == nil {
			t.Errorf("merge-policies %v: no error", args)
		}
	}
	if after, _ := os.ReadFile(out); string(after) != string(before) {
		t.Error("a refused merge changed the live policy")
	}
}
