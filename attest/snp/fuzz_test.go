package snp

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/confidisk/confidisk/attest"
)

// fuzzReportData is the report_data of the seed reports in
// testdata/fuzz/FuzzVerify (a genuine report signed by go-sev-guest's
// fixed test keys, with its certificate table, and edits of it).
var fuzzReportData = [64]byte{0: 'f', 1: 'u', 2: 'z', 3: 'z', 63: 1}

// FuzzVerify feeds arbitrary report and certificate bytes to what Verify
// decodes, without Verify's recover: parse must refuse or accept every
// input without panicking, and Verify (with the test roots) must only
// accept a report that carries the expected report_data, refusing all
// else with one of the package's sentinel errors.
func FuzzVerify(f *testing.F) {
	amd := newSigner(f, nil)
	good := signedReport(f, amd, fuzzReportData, nil)
	f.Add(good.Report, good.Certs)
	f.Add(good.Report, []byte(nil))
	f.Add(good.Report[:100], good.Certs)
	f.Add(good.Report, certTable(0xfffffff0, 0x20))
	v, err := NewVerifier(Options{TrustedRoots: rootsOf(amd), Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, report, certs []byte) {
		if a, err := parse(report, certs); err == nil && a.GetReport() == nil {
			t.Fatal("parse accepted a report without decoding it")
		}
		_, err := v.Verify(context.Background(), &attest.TEEReport{Type: attest.TEESEVSNP, Report: report, Certs: certs}, fuzzReportData)
		if err == nil {
			if !bytes.Equal(report[0x50:0x90], fuzzReportData[:]) {
				t.Fatalf("accepted a report with report_data %x", report[0x50:0x90])
			}
			return
		}
		if !errors.Is(err, ErrMalformedReport) && !errors.Is(err, ErrNotVerified) && !errors.Is(err, ErrReportDataMismatch) && !errors.Is(err, ErrPolicy) {
			t.Fatalf("Verify error %v wraps no sentinel", err)
		}
	})
}
