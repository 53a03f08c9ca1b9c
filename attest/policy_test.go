package attest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/tpm"
)

func TestAttestParsePolicy(t *testing.T) {
	z := strings.Repeat("00", 32)
	tests := []struct {
		name    string
		in      string
		want    *Policy
		wantErr string
	}{
		{name: "minimal", in: `{"version":1,"pcrs":{"7":["` + strings.Repeat("AB", 32) + `"]}}`,
			want: &Policy{Version: 1, Bank: tpm.SHA256, PCRs: map[int][]string{7: {strings.Repeat("ab", 32)}}, VolumeName: "state"}},
		{name: "full", in: `{"version":1,"bank":"SHA256","pcrs":{"4":["` + z + `"],"11":["` + z + `","` + z + `"]},
			"root_hashes":["` + strings.Repeat("cd", 32) + `"],"require_root_hash":true,
			"attestation_keys":["` + strings.Repeat("ef", 32) + `"],"require_tee":true,"volume_name":"data"}`,
			want: &Policy{Version: 1, Bank: tpm.SHA256, PCRs: map[int][]string{4: {z}, 11: {z, z}},
				RootHashes: []string{strings.Repeat("cd", 32)}, RequireRootHash: true,
				AttestationKeys: []string{strings.Repeat("ef", 32)}, RequireTEE: true, VolumeName: "data"}},
		{name: "tee reference values", in: `{"version":1,"pcrs":{"7":["` + z + `"]},"sev_snp":{"measurements":["` + strings.Repeat("A0", 48) + `"]},"tdx":{"mrtds":["` + strings.Repeat("b1", 48) + `"]}}`,
			want: &Policy{Version: 1, Bank: tpm.SHA256, PCRs: map[int][]string{7: {z}}, VolumeName: "state",
				SEVSNP: &SEVSNPPolicy{Measurements: []string{strings.Repeat("a0", 48)}}, TDX: &TDXPolicy{MRTDs: []string{strings.Repeat("b1", 48)}}}},
		{name: "short snp measurement", in: `{"version":1,"pcrs":{"7":["` + z + `"]},"sev_snp":{"measurements":["` + z + `"]}}`, wantErr: "sev_snp measurement"},
		{name: "bad mrtd", in: `{"version":1,"pcrs":{"7":["` + z + `"]},"tdx":{"mrtds":["zz"]}}`, wantErr: "tdx mrtd"},
		{name: "no pcrs", in: `{"version":1}`, wantErr: "no pcrs"},
		{name: "version", in: `{"version":2,"pcrs":{"7":["` + z + `"]}}`, wantErr: "version 2"},
		{name: "unknown field", in: `{"version":1,"pcr":{}}`, wantErr: "unknown field"},
		{name: "pcr out of range", in: `{"version":1,"pcrs":{"24":["` + z + `"]}}`, wantErr: "out of range"},
		{name: "no values", in: `{"version":1,"pcrs":{"7":[]}}`, wantErr: "no allowed values"},
		{name: "short value", in: `{"version":1,"pcrs":{"7":["00"]}}`, wantErr: "has 1 bytes"},
		{name: "sha1 size", in: `{"version":1,"bank":"sha1","pcrs":{"7":["` + z + `"]}}`, wantErr: "has 32 bytes"},
		{name: "bad bank", in: `{"version":1,"bank":"md5","pcrs":{"7":["` + z + `"]}}`, wantErr: "md5"},
		{name: "bad root hash", in: `{"version":1,"pcrs":{"7":["` + z + `"]},"root_hashes":["xyz"]}`, wantErr: "not hex"},
		{name: "bad ak", in: `{"version":1,"pcrs":{"7":["` + z + `"]},"attestation_keys":["00"]}`, wantErr: "attestation key"},
		{name: "trailing data", in: `{"version":1,"pcrs":{"7":["` + z + `"]}} {}`, wantErr: "after the json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePolicy([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParsePolicy: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("policy (-want +got):\n%s", diff)
			}
		})
	}
}
