package tdx

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	test "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/confidisk/confidisk/attest"
)

// fakeProvider is go-tdx-guest's fake configfs quote provider answering
// report data rd with quote.
func fakeProvider(t *testing.T, rd [64]byte, quote []byte) *test.TdxQuoteProvider {
	t.Helper()
	qp, err := test.TcQuoteProvider([]test.TestCase{{Name: "quote", Input: rd, Quote: quote}})
	if err != nil {
		t.Fatal(err)
	}
	return qp
}

func TestReporter(t *testing.T) {
	rd := sampleReportData()
	r, err := NewReporter(fakeProvider(t, rd, testdata.RawQuote)).Report(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != attest.TEETDX || !bytes.Equal(r.Report, testdata.RawQuote) || r.Certs != nil {
		t.Fatalf("report %q of %d bytes with %d bytes of certs, want the sample quote", r.Type, len(r.Report), len(r.Certs))
	}
	// What the reporter produced verifies.
	v, err := NewVerifier(Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), r, rd); err != nil {
		t.Fatal(err)
	}
}

// provider is a QuoteProvider that returns fixed bytes.
type provider struct {
	out []byte
	err error
}

func (p provider) IsSupported() error                   { return nil }
func (p provider) GetRawQuote([64]byte) ([]byte, error) { return p.out, p.err }

func TestReporterRefusals(t *testing.T) {
	rd := sampleReportData()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	// go-tdx-guest's own test case answers its report data with the sample
	// quote, whose REPORTDATA is another.
	tcs := test.TestCases()
	theirs, err := test.TcQuoteProvider(tcs)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		r    *Reporter
		rd   *[64]byte // default rd
		ctx  context.Context
		want string
	}{
		{name: "quote of other report_data", r: NewReporter(theirs), rd: &tcs[0].Input, want: "other report_data"},
		{name: "no quote for this report data", r: NewReporter(fakeProvider(t, [64]byte{1}, testdata.RawQuote)), want: "malformed quote"},
		{name: "truncated quote", r: NewReporter(provider{out: testdata.RawQuote[:1000]}), want: "malformed quote"},
		{name: "provider error", r: NewReporter(provider{err: errors.New("no tdx guest")}), want: "no tdx guest"},
		{name: "no provider", r: NewReporter(nil), want: "no quote provider"},
		{name: "cancelled", r: NewReporter(provider{out: testdata.RawQuote}), ctx: cancelled, want: "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			in := rd
			if tc.rd != nil {
				in = *tc.rd
			}
			_, err := tc.r.Report(ctx, in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Report: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
