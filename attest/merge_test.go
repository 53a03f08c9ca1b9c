package attest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/tpm"
)

func TestAttestMerge(t *testing.T) {
	h := func(c string) string { return strings.Repeat(c, 32) }
	m := func(c string) string { return strings.Repeat(c, 48) }
	v1 := &Policy{Version: 1, Bank: tpm.SHA256, PCRs: map[int][]string{7: {h("07")}, 11: {h("b1")}}, RootHashes: []string{h("a1")}, VolumeName: "state"}
	v2 := &Policy{Version: 1, Bank: tpm.SHA256, PCRs: map[int][]string{7: {h("07")}, 11: {h("b2")}}, RootHashes: []string{h("a2")}, VolumeName: "state"}
	with := func(p *Policy, f func(*Policy)) *Policy { c := clonePolicy(p); f(c); return c }
	tests := []struct {
		name    string
		in      []*Policy
		want    *Policy
		wantErr string
	}{
		{name: "one", in: []*Policy{v1}, want: v1},
		{name: "two images", in: []*Policy{v2, v1}, want: &Policy{Version: 1, Bank: tpm.SHA256,
			PCRs: map[int][]string{7: {h("07")}, 11: {h("b1"), h("b2")}}, RootHashes: []string{h("a1"), h("a2")}, VolumeName: "state"}},
		{name: "same twice", in: []*Policy{v1, v1}, want: v1},
		{name: "tee measurements", in: []*Policy{
			with(v1, func(p *Policy) { p.SEVSNP = &SEVSNPPolicy{Measurements: []string{m("01")}} }),
			with(v2, func(p *Policy) { p.SEVSNP = &SEVSNPPolicy{Measurements: []string{m("02")}} })},
			want: &Policy{Version: 1, Bank: tpm.SHA256, PCRs: map[int][]string{7: {h("07")}, 11: {h("b1"), h("b2")}},
				RootHashes: []string{h("a1"), h("a2")}, VolumeName: "state", SEVSNP: &SEVSNPPolicy{Measurements: []string{m("01"), m("02")}}}},
		{name: "none", wantErr: "no policy"},
		{name: "other pcrs", in: []*Policy{v1, with(v2, func(p *Policy) { p.PCRs[12] = []string{h("0c")} })}, wantErr: "pin different pcrs"},
		{name: "other bank", in: []*Policy{v1, with(v2, func(p *Policy) { p.Bank = tpm.SHA384 })}, wantErr: "banks"},
		{name: "other volume", in: []*Policy{v1, with(v2, func(p *Policy) { p.VolumeName = "data" })}, wantErr: "volume names"},
		{name: "require tee", in: []*Policy{v1, with(v2, func(p *Policy) { p.RequireTEE = true })}, wantErr: "require_tee"},
		{name: "any root", in: []*Policy{v1, with(v2, func(p *Policy) { p.RootHashes = nil })}, wantErr: "accepts any"},
		{name: "aks", in: []*Policy{v1, with(v2, func(p *Policy) { p.AttestationKeys = []string{h("ee")} })}, wantErr: "attestation_keys"},
		{name: "tee only in one", in: []*Policy{v1, with(v2, func(p *Policy) { p.TDX = &TDXPolicy{} })}, wantErr: "tee measurements"},
		{name: "any snp", in: []*Policy{with(v1, func(p *Policy) { p.SEVSNP = &SEVSNPPolicy{} }),
			with(v2, func(p *Policy) { p.SEVSNP = &SEVSNPPolicy{Measurements: []string{m("02")}} })}, wantErr: "sev_snp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Merge(tc.in...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Merge: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Merge (-want +got):\n%s", d)
			}
		})
	}
	// The inputs are left alone.
	if len(v1.PCRs[11]) != 1 || len(v2.RootHashes) != 1 {
		t.Errorf("Merge changed its inputs: %v %v", v1.PCRs, v2.RootHashes)
	}
}
