// Package tdx produces and verifies Intel TDX quotes for package attest,
// with Google's go-tdx-guest: [Reporter] implements attest.TEEReporter in
// the guest, [Verifier] implements attest.TEEVerifier on the verifier side.
//
// # Quote
//
// An attest.TEEReport of type attest.TEETDX carries in Report a TDX quote
// in the Intel TDX DCAP quote format version 4 (Intel TDX DCAP Quote
// Generation Library and Quote Verification Library API, appendix "Quote
// Format"; the layout go-tdx-guest's abi package reads): a 48-byte header
// (version 4, attestation key type 2 = ECDSA-256 with P-256, TEE type 0x81
// = TDX), the 584-byte TD quote body (the TDREPORT's TEE_TCB_SVN, MRSEAM,
// MRSIGNERSEAM, SEAM_ATTRIBUTES, TD_ATTRIBUTES, XFAM, MRTD, MRCONFIGID,
// MROWNER, MROWNERCONFIG, RTMR0-3 and REPORTDATA), and the signature data:
// the ECDSA signature of header and body by the quote's attestation key,
// that key, and certification data of type 6 holding the Quoting Enclave's
// (QE) report, its signature by the PCK (Provisioning Certification Key),
// the QE authentication data and, as certification data of type 5, the
// PCK certificate chain (PEM: PCK certificate, Intel SGX PCK Platform or
// Processor CA, Intel SGX Root CA). Certs is unused: the quote carries its
// chain. [Reporter] gets the quote through go-tdx-guest's
// client.QuoteProvider: configfs-tsm (/sys/kernel/config/tsm/report, Linux
// 6.7 and later) when it reports the tdx_guest provider, /dev/tdx_guest
// (TDX_CMD_GET_QUOTE through the host's quote generation service)
// otherwise. REPORTDATA is the 64 bytes the caller passes,
// attest.TEEReportData of the evidence, which binds the vTPM attestation
// key, nonce and logs to the quote.
//
// # What is verified, and what is trusted
//
// [Verifier.Verify] trusts only the roots of [Options.TrustedRoots]: by
// default the Intel SGX Root CA (the self-signed ECDSA P-256 root of
// Intel's PCK hierarchy, SHA-256 fingerprint [IntelSGXRootCAFingerprint],
// valid to 2049, the certificate go-tdx-guest embeds, here in
// intel_sgx_root_ca.pem). It checks, in order:
//
//  1. the quote's shape: version 4 and every length field consistent with
//     the bytes, before go-tdx-guest's decoder sees it ([ErrMalformedQuote]);
//  2. with go-tdx-guest's verify.TdxQuote, offline by default: the PCK
//     certificate chain from the quote up to a trusted root at the
//     verifier's time (certificate names, ECDSA P-256 SHA-256 signatures,
//     validity), the QE report's signature by the PCK key, the QE report's
//     REPORTDATA binding the attestation key (SHA-256 of key and QE
//     authentication data), and the quote's signature over header and body
//     by that attestation key; then that the QE report is of Intel's TD
//     quoting enclave (MRSIGNER, ISVPRODID 2, MISCSELECT and ATTRIBUTES as
//     Intel's PCS QE Identity for TD_QE states them, so no debug-mode QE),
//     which go-tdx-guest checks only with fetched collateral
//     ([ErrNotVerified]);
//  3. REPORTDATA against the expected report data
//     ([ErrReportDataMismatch]);
//  4. with go-tdx-guest's validate.TdxQuote, the minimum TEE_TCB_SVN, QE
//     and PCE SVNs of [Options], the allowed MRTD values, and XFAM and
//     TD_ATTRIBUTES against the TDX module's fixed bits; then that the TD
//     is not debuggable (TD_ATTRIBUTES bit 0, unless [Options.AllowDebug]),
//     and the allowed MRSEAM and RTMR values ([ErrPolicy]).
//
// The claims are [Claims] as JSON: MRTD, the RTMRs, TD attributes, XFAM,
// MRSEAM and the SVNs.
//
// # Not verified offline
//
// The TCB status of the platform (whether the TDX module's and the QE's
// SVNs are up to date, per Intel's TCB Info and QE Identity) and
// revocation of the PCK certificates need Intel's signed collateral from
// the Provisioning Certification Service (PCS); go-tdx-guest only fetches
// it (through a getter, during verification) and cannot take it
// pre-fetched. With [Options.GetCollateral] and a Getter — Intel's PCS
// through go-tdx-guest's trust.DefaultHTTPSGetter(), or a getter that
// serves stored responses — the TCB Info and QE Identity are verified
// against the trusted root and the TCB status must be UpToDate;
// [Options.CheckRevocations] adds the PCK and root CA CRLs. Without them a
// platform with outdated (but not forged) TDX firmware is accepted: set
// [Options.MinimumTEETCBSVN] to bound it offline.
//
// Importing go-tdx-guest's client and verify packages initialises
// github.com/google/logger to write to standard output, and registers the
// tdx_guest_device_path flag on the standard library's flag.CommandLine.
// This package never takes the paths that log at the default verbosity
// (it always passes the trusted roots).
package tdx
