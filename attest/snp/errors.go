package snp

import "errors"

// Sentinel errors of [Verifier.Verify], one per reason a report is refused;
// test with errors.Is. Package attest wraps them in attest.ErrTEEReport.
var (
	// ErrMalformedReport: the report is not an ATTESTATION_REPORT of a
	// supported version, or its certificate table cannot be read.
	ErrMalformedReport = errors.New("malformed sev-snp report")

	// ErrNotVerified: the VCEK/VLEK certificate does not chain to a
	// trusted AMD root, is missing, or its key did not sign the report (a
	// forged or edited report).
	ErrNotVerified = errors.New("sev-snp report signature or certificate chain does not verify")

	// ErrReportDataMismatch: the report is genuine but its REPORT_DATA is
	// not the expected one (a replayed report, or one of other evidence).
	ErrReportDataMismatch = errors.New("sev-snp report_data does not match the evidence")

	// ErrPolicy: the report is genuine but refused by the verifier's
	// options: guest policy (such as debugging allowed), TCB, guest SVN,
	// VMPL, or launch measurement.
	ErrPolicy = errors.New("sev-snp report is not allowed by the policy")
)
