package tdx

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/confidisk/confidisk/attest"
)

// FuzzVerify feeds arbitrary quotes to what Verify decodes, without
// Verify's recover: parseQuote must refuse or accept every input without
// panicking (go-tdx-guest's decoder slices by the quote's length fields),
// and Verify must only accept a quote that carries the expected report
// data, refusing all else with one of the package's sentinel errors.
// Seeds (the sample quote and edits of it) are in testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	q := sample()
	f.Add(q)
	f.Add(q[:sigDataOff+certDataOff+qeAuthOff])
	f.Add(edited(put32(sigDataSizeOff, 0xfffffff0)))
	rd := sampleReportData()
	v, err := NewVerifier(Options{Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, quote []byte) {
		if p, err := parseQuote(quote); err == nil && p.GetTdQuoteBody() == nil {
			t.Fatal("parseQuote accepted a quote without a body")
		}
		_, err := v.Verify(context.Background(), &attest.TEEReport{Type: attest.TEETDX, Report: quote}, rd)
		if err == nil {
			if !bytes.Equal(quote[offReportData:offReportData+64], rd[:]) {
				t.Fatalf("accepted a quote with report_data %x", quote[offReportData:offReportData+64])
			}
			return
		}
		if !errors.Is(err, ErrMalformedQuote) && !errors.Is(err, ErrNotVerified) && !errors.Is(err, ErrReportDataMismatch) && !errors.Is(err, ErrPolicy) {
			t.Fatalf("Verify error %v wraps no sentinel", err)
		}
	})
}
