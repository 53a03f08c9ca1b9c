package tdx

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tdx-guest/client"

	"github.com/confidisk/confidisk/attest"
)

// Reporter gets TDX quotes in the guest; it implements attest.TEEReporter.
type Reporter struct {
	qp client.QuoteProvider
}

var _ attest.TEEReporter = (*Reporter)(nil)

// NewReporter returns a Reporter that asks qp, for example go-tdx-guest's
// client.GetQuoteProvider() or, in tests, a fake of its testing package.
// When qp.IsSupported fails, go-tdx-guest falls back to /dev/tdx_guest.
func NewReporter(qp client.QuoteProvider) *Reporter {
	return &Reporter{qp: qp}
}

// OpenReporter returns a Reporter backed by this guest's TDX quote
// interface: configfs-tsm (Linux 6.7 and later) if it reports the
// tdx_guest provider, /dev/tdx_guest otherwise. It fails when the guest has
// neither.
func OpenReporter() (*Reporter, error) {
	qp, err := client.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("tdx reporter: %w", err)
	}
	if serr := qp.IsSupported(); serr != nil {
		d, derr := client.OpenDevice()
		if derr != nil {
			return nil, fmt.Errorf("tdx reporter: no configfs-tsm tdx provider (%v) and no tdx guest device (%v)", serr, derr)
		}
		d.Close()
	}
	return NewReporter(qp), nil
}

// Report returns a quote with REPORTDATA reportData. The quote
// generation call is not interruptible: ctx is checked before it only.
func (r *Reporter) Report(ctx context.Context, reportData [64]byte) (*attest.TEEReport, error) {
	if r == nil || r.qp == nil {
		return nil, errors.New("tdx quote: no quote provider")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tdx quote: %w", err)
	}
	raw, err := client.GetRawQuote(r.qp, reportData)
	if err != nil {
		return nil, fmt.Errorf("tdx quote: %w", err)
	}
	quote := bytes.Clone(raw)
	q, err := parseQuote(quote)
	if err != nil {
		return nil, fmt.Errorf("tdx quote: the quote provider returned a malformed quote: %w", err)
	}
	if !bytes.Equal(q.GetTdQuoteBody().GetReportData(), reportData[:]) {
		return nil, errors.New("tdx quote: the quote provider returned a quote of other report_data")
	}
	return &attest.TEEReport{Type: attest.TEETDX, Report: quote}, nil
}
