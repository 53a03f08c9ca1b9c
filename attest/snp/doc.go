// Package snp produces and verifies AMD SEV-SNP attestation reports for
// package attest, with Google's go-sev-guest: [Reporter] implements
// attest.TEEReporter in the guest, [Verifier] implements attest.TEEVerifier
// on the verifier side.
//
// # Report
//
// An attest.TEEReport of type attest.TEESEVSNP carries in Report the raw
// ATTESTATION_REPORT (SEV Secure Nested Paging Firmware ABI specification,
// AMD publication 56860, Table "ATTESTATION_REPORT Structure": 0x4A0
// bytes, little endian, versions 2 to 5) and in Certs the certificate table
// of the extended guest request, if the host supplied one (GHCB
// specification, AMD publication 56421, MSG_REPORT_REQ: 24-byte entries of
// GUID, offset and length, ended by an all-zero entry, followed by the
// DER certificates: ARK, ASK, VCEK or VLEK and ASVK, and go-sev-guest's
// extra platform information). [Reporter] gets both from the guest's SEV
// firmware interface through go-sev-guest's client.QuoteProvider:
// configfs-tsm (/sys/kernel/config/tsm/report, Linux 6.7 and later) when
// available, /dev/sev-guest (SNP_GET_EXT_REPORT) otherwise. REPORT_DATA is
// the 64 bytes the caller passes, attest.TEEReportData of the evidence,
// which binds the vTPM attestation key, nonce and logs to the report.
//
// # What is verified, and what is trusted
//
// [Verifier.Verify] trusts only the AMD root keys of [Options.TrustedRoots]:
// by default the ARK (AMD Root Key) and its ASK (AMD SEV Key) and ASVK (AMD
// SEV VLEK Key) for Milan, Genoa and Turin, as go-sev-guest embeds them
// (verify/trust, copied from AMD's Key Distribution Service, KDS). The
// host's certificate table is untrusted input: it only supplies the VCEK
// (Versioned Chip Endorsement Key) or VLEK (Versioned Loaded Endorsement
// Key) certificate, which must chain to a trusted ARK through the trusted
// ASK/ASVK (RSASSA-PSS, as the KDS specification, AMD publication 57230,
// prescribes); the ARK and ASK the host sends are ignored. It checks, in
// order:
//
//  1. the report's shape: 0x4A0 bytes, a supported version, a well-formed
//     guest POLICY and reserved fields zero, and a well-formed certificate
//     table ([ErrMalformedReport]);
//  2. with go-sev-guest's verify.SnpAttestation, the VCEK/VLEK certificate
//     chain at the verifier's time to the trusted roots of the report's
//     product line (from its CPUID family and model in report versions 3 and
//     later, from the certificate's product name in version 2), and the
//     report's ECDSA P-384 SHA-384 signature with the certificate's key
//     ([ErrNotVerified]). This is offline: a
//     report whose table lacks the VCEK/VLEK certificate is refused unless
//     [Options.Getter] allows fetching it from the KDS;
//  3. REPORT_DATA against the expected report data
//     ([ErrReportDataMismatch]);
//  4. with go-sev-guest's validate.SnpAttestation, the guest POLICY against
//     [Options.GuestPolicy] (by default a debuggable guest, one with a
//     migration agent or CXL is refused), REPORTED_TCB against the
//     certificate's TCB and [Options.MinimumTCB], committed against current
//     firmware, GUEST_SVN, VMPL, and CHIP_ID (unless the host masks it to
//     zero) against the VCEK's hardware id; then MEASUREMENT against
//     [Options.Measurements] ([ErrPolicy]).
//
// The claims are [Claims] as JSON: the launch measurement, host data, guest
// policy, TCB versions, chip and report ids, VMPL.
//
// Not covered: revocation (AMD's CRL for the ASK) unless
// [Options.CheckRevocations] with a Getter; the ID block and author keys;
// the platform's TCB freshness beyond the minimum the options set.
//
// Importing go-sev-guest registers flags on the standard library's
// flag.CommandLine (sev_guest_device_path, default_vmpl,
// self_throttle_duration, self_throttle_burst, workaround_kds_productname);
// their defaults are what this package expects.
package snp
