package snp

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	test "github.com/google/go-sev-guest/testing"

	"github.com/confidisk/confidisk/attest"
)

func TestReporter(t *testing.T) {
	amd := newSigner(t, nil)
	rd := attest.TEEReportData([]byte("nonce"), []byte{4, 1}, []byte("ak public"), nil, nil)
	r := signedReport(t, amd, rd, nil)
	table, err := amd.CertTableBytes()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(attest.TEESEVSNP, r.Type); diff != "" {
		t.Errorf("type (-want +got):\n%s", diff)
	}
	if len(r.Report) != ReportSize {
		t.Fatalf("report of %d bytes, want %d", len(r.Report), ReportSize)
	}
	if !bytes.Equal(r.Report[0x50:0x90], rd[:]) {
		t.Errorf("report_data %x, want %x", r.Report[0x50:0x90], rd)
	}
	// The fake device returns its table as is when it has a VCEK.
	if !bytes.Equal(r.Certs, table) {
		t.Errorf("certs are not the device's certificate table")
	}
	sig := r.Report[0x2A0 : 0x2A0+abi.EcdsaP384Sha384SignatureSize]
	if bytes.Equal(sig, make([]byte, len(sig))) {
		t.Error("report is not signed")
	}
}

// provider is a QuoteProvider that returns fixed bytes.
type provider struct {
	out []byte
	err error
}

func (p provider) IsSupported() bool                                 { return true }
func (p provider) GetRawQuote([64]byte) ([]byte, error)              { return p.out, p.err }
func (p provider) Product() *spb.SevProduct                          { return abi.DefaultSevProduct() }
func (p provider) GetRawQuoteAtLevel([64]byte, uint) ([]byte, error) { return p.out, p.err }

func TestReporterRefusals(t *testing.T) {
	amd := newSigner(t, nil)
	var rd, other [64]byte
	other[0] = 1
	fwErr, err := test.TcQuoteProvider([]test.TestCase{{Name: "oom", Input: rd, FwErr: abi.ResourceLimit}},
		&test.DeviceOptions{Signer: amd, Now: testNow, Product: amd.Product})
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		r    *Reporter
		ctx  context.Context
		want string
	}{
		{name: "firmware error", r: NewReporter(fwErr), want: "input/output error"},
		{name: "provider error", r: NewReporter(provider{err: errors.New("no sev guest")}), want: "no sev guest"},
		{name: "short report", r: NewReporter(provider{out: make([]byte, 100)}), want: "returned 100 bytes"},
		{name: "garbage report", r: NewReporter(provider{out: bytes.Repeat([]byte{0xff}, ReportSize)}), want: "malformed report"},
		{name: "report of other report_data", r: NewReporter(provider{out: rawReport(other, nil)}), want: "other report_data"},
		{name: "malformed certificate table", r: NewReporter(provider{out: append(rawReport(rd, nil), 1, 2, 3)}), want: "certificate table"},
		{name: "no provider", r: NewReporter(nil), want: "no quote provider"},
		{name: "cancelled", r: NewReporter(provider{out: rawReport(rd, nil)}), ctx: cancelled, want: "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			_, err := tc.r.Report(ctx, rd)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Report: %v, want an error with %q", err, tc.want)
			}
		})
	}
	// A report without a certificate table has no Certs.
	r, err := NewReporter(provider{out: rawReport(rd, nil)}).Report(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	if r.Certs != nil {
		t.Errorf("certs %x, want none", r.Certs)
	}
}
