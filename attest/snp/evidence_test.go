package snp

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	test "github.com/google/go-sev-guest/testing"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// signingReporter is a guest's AMD-SP in tests: it signs a report with the
// report_data it is asked for, with s's keys.
type signingReporter struct {
	t testing.TB
	s *test.AmdSigner
}

func (r signingReporter) Report(_ context.Context, rd [64]byte) (*attest.TEEReport, error) {
	return signedReport(r.t, r.s, rd, nil), nil
}

// snpGuest is a vTPM (swtpm) that measured a state volume, with an issuer
// whose SEV-SNP reports s signs.
func snpGuest(t *testing.T, s *test.AmdSigner) *attest.Issuer {
	t.Helper()
	tp := tpmtest.Start(t).Open()
	t.Cleanup(func() { tp.Close() })
	log := filepath.Join(t.TempDir(), "tpm2-measure.log")
	if _, err := tpm.MeasureVolumeKey(tp, []byte(strings.Repeat("k", 64)), "state", "0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90", tpm.MeasureOptions{LogPath: log}); err != nil {
		t.Fatal(err)
	}
	iss, err := attest.NewIssuer(tp, attest.IssuerOptions{PCRs: []int{7}, MeasureLog: log, FirmwareLog: "-", TEE: signingReporter{t, s}})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// TestEvidenceWithSNP runs attest's Issuer and Validator with this
// package's Reporter and Verifier: the SEV-SNP report binds the vTPM's
// attestation key and the nonce (attest.TEEReportData), so a policy that
// requires it refuses a forged report and a report moved to evidence of
// another vTPM (a swapped attestation key).
func TestEvidenceWithSNP(t *testing.T) {
	ctx := context.Background()
	amd := newSigner(t, nil)
	nonce := []byte("broker nonce 0123456789abcdef")
	good, err := snpGuest(t, amd).Issue(ctx, nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := snpGuest(t, newSigner(t, forgerKeys(t))).Issue(ctx, nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := snpGuest(t, amd).Issue(ctx, nonce, nil) // another vTPM, another AK
	if err != nil {
		t.Fatal(err)
	}
	swapped := *other
	swapped.TEEReport = good.TEEReport

	snpv, err := NewVerifier(Options{TrustedRoots: rootsOf(amd), Now: func() time.Time { return testNow },
		Measurements: []string{hex.EncodeToString(measurement[:])}})
	if err != nil {
		t.Fatal(err)
	}
	pcr7 := hex.EncodeToString(good.PCRs[7])
	pol, err := attest.ParsePolicy([]byte(`{"version":1,"pcrs":{"7":["` + pcr7 + `"]},"require_tee":true}`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.NewValidator(pol, attest.ValidatorOptions{TEE: map[string]attest.TEEVerifier{attest.TEESEVSNP: snpv}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		e    *attest.Evidence
		want error
	}{
		{"genuine", good, nil},
		{"forged report (signed with the wrong key)", forged, attest.ErrTEEReport},
		{"report moved to another vTPM's evidence", &swapped, attest.ErrTEEReport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := tc.e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			c, err := v.Verify(ctx, raw, nonce)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
			if err != nil {
				t.Logf("refused: %v", err)
				return
			}
			var m attest.Measurements
			if err := json.Unmarshal(c.Measurements, &m); err != nil {
				t.Fatal(err)
			}
			if m.TEE != "sev-snp:verified" || !strings.Contains(string(m.TEEClaims), hex.EncodeToString(measurement[:])) {
				t.Errorf("measurements %+v, want a verified sev-snp report with the launch measurement", m)
			}
		})
	}
}
