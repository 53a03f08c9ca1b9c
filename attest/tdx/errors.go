package tdx

import "errors"

// Sentinel errors of [Verifier.Verify], one per reason a quote is refused;
// test with errors.Is. Package attest wraps them in attest.ErrTEEReport.
var (
	// ErrMalformedQuote: the report is not a TDX quote of format version 4
	// whose length fields agree with its bytes.
	ErrMalformedQuote = errors.New("malformed tdx quote")

	// ErrNotVerified: the PCK certificate chain does not reach a trusted
	// Intel root, a signature in the quote does not verify (a forged or
	// edited quote), or, when collateral is fetched, the platform's TCB is
	// not up to date or a certificate is revoked.
	ErrNotVerified = errors.New("tdx quote signature or certificate chain does not verify")

	// ErrReportDataMismatch: the quote is genuine but its REPORTDATA is
	// not the expected one (a replayed quote, or one of other evidence).
	ErrReportDataMismatch = errors.New("tdx report_data does not match the evidence")

	// ErrPolicy: the quote is genuine but refused by the verifier's
	// options: MRTD, RTMR or MRSEAM values, SVNs, a debuggable TD.
	ErrPolicy = errors.New("tdx quote is not allowed by the policy")
)
