package snp

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/google/go-sev-guest/client"

	"github.com/confidisk/confidisk/attest"
)

// Reporter gets SEV-SNP attestation reports in the guest; it implements
// attest.TEEReporter.
type Reporter struct {
	qp client.QuoteProvider
}

var _ attest.TEEReporter = (*Reporter)(nil)

// NewReporter returns a Reporter that asks qp, for example
// go-sev-guest's client.GetQuoteProvider() or, in tests, a fake of its
// testing package.
func NewReporter(qp client.QuoteProvider) *Reporter {
	return &Reporter{qp: qp}
}

// OpenReporter returns a Reporter backed by this guest's SEV-SNP firmware
// interface: configfs-tsm (Linux 6.7 and later) if it reports the
// sev_guest provider, /dev/sev-guest otherwise. It fails outside a SEV-SNP
// guest.
func OpenReporter() (*Reporter, error) {
	qp, err := client.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("sev-snp reporter: %w", err)
	}
	return NewReporter(qp), nil
}

// Report returns an attestation report with REPORT_DATA reportData at the
// kernel's default VMPL, with the host's certificate table when it supplies
// one. The quote provider's call is not interruptible: ctx is checked
// before it only.
func (r *Reporter) Report(ctx context.Context, reportData [64]byte) (*attest.TEEReport, error) {
	if r == nil || r.qp == nil {
		return nil, errors.New("sev-snp report: no quote provider")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sev-snp report: %w", err)
	}
	raw, err := r.qp.GetRawQuote(reportData)
	if err != nil {
		return nil, fmt.Errorf("sev-snp report: %w", err)
	}
	if len(raw) < ReportSize {
		return nil, fmt.Errorf("sev-snp report: the quote provider returned %d bytes (a report is %d)", len(raw), ReportSize)
	}
	report, certs := bytes.Clone(raw[:ReportSize]), bytes.Clone(raw[ReportSize:])
	att, err := parse(report, certs)
	if err != nil {
		return nil, fmt.Errorf("sev-snp report: the quote provider returned a malformed report: %w", err)
	}
	if !bytes.Equal(att.GetReport().GetReportData(), reportData[:]) {
		return nil, errors.New("sev-snp report: the quote provider returned a report of other report_data")
	}
	if len(certs) == 0 {
		certs = nil
	}
	return &attest.TEEReport{Type: attest.TEESEVSNP, Report: report, Certs: certs}, nil
}
