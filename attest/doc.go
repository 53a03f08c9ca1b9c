// Package attest produces and checks attestation evidence for confidisk
// guests: a vTPM quote with the logs that explain it and, later, a SEV-SNP
// or TDX report. [Issuer] runs in the guest; [Validator] runs in the
// verifier (`confidisk serve --verifier tpm --policy FILE`) and implements
// broker.Verifier. docs/attestation.md describes the formats at length.
//
// # Evidence
//
// [Evidence] is JSON (byte strings base64, PCR indices as object keys):
//
//	{"version":1, "nonce":B64, "ak_public":B64 (TPMT_PUBLIC),
//	 "quote":{"attest":B64 (TPMS_ATTEST), "signature":B64 (ECDSA DER)},
//	 "bank":"sha256", "pcrs":{"7":B64, "15":B64, ...},
//	 "measure_log":B64 (tpm2-measure.log), "firmware_log":B64?,
//	 "release_key":B64?, "tee_report":{"type":"sev-snp"|"tdx","report":B64,"certs":B64?}?}
//
// The attestation key is the endorsement-hierarchy primary of
// tpm.CreateAK (restricted ECDSA P-256 signing key; TPM 2.0 Part 1, section
// 25.2.2). The quote (TPM2_Quote, Part 3, section 18.4) always covers PCR 15,
// and its qualifying data is [Binding]: SHA-256 over a label and the
// length-prefixed nonce, release key, AK public area, and the SHA-256 of
// each log. A swapped release key, AK or log is refused
// ([ErrBindingMismatch]); a SEV-SNP/TDX report's report_data is
// [TEEReportData] of the same inputs, which ties the AK to the hardware.
//
// # Policy
//
// [Policy] is the reference values, JSON written by image building:
//
//	{"version": 1,
//	 "bank": "sha256",                             // optional, default sha256
//	 "pcrs": {"4": ["<hex>", ...], "7": [...]},    // allowed values per pcr; at least one pcr
//	 "root_hashes": ["<hex>", ...],                // allowed dm-verity root hashes
//	 "require_root_hash": false,                   // refuse without a verified dm-verity record
//	 "attestation_keys": ["<sha256 hex of TPMT_PUBLIC>"], // AK pinning (AKFingerprint)
//	 "require_tee": false,                         // refuse without a verified SEV-SNP/TDX report
//	 "volume_name": "state"}                       // which volume-key record gives the claims
//
// Without attestation_keys or require_tee, nothing ties the quote to a
// known vTPM: a software TPM that reproduces the PCR values would pass.
//
// # Checks
//
// [Validator.Verify] checks, each refusal wrapping its sentinel error: the
// nonce ([ErrNonceMismatch]); the AK's form and pinning
// ([ErrAKNotAllowed]); the quote's signature ([ErrQuoteSignature]) and PCR
// digest ([ErrPCRDigest]); the replay of systemd's userspace log (RFC 7464
// JSON-SEQ, src/shared/tpm2-util.c) to the quoted PCR 15 and the digests of
// its dm-verity records ([ErrLogTampered]); the binding
// ([ErrBindingMismatch]); the policy's PCR values ([ErrPCRPolicy]) and root
// hashes ([ErrUnknownRootHash]); the TEE report ([ErrTEEReport]). The
// claims come from PCR 15's volume-key record (src/cryptsetup/cryptsetup.c
// measure_volume_key): "cryptsetup:<name>:<uuid>" gives the volume, its
// sha256 digest — systemd's fixate-volume-key= value — the key id.
//
// # Creation records
//
// [CreationRecord] is evidence first boot takes right after measuring the
// new volume's key, with the key id (32 bytes) as the quote's qualifying
// data, as systemd issue 40410 proposes. [Validator.VerifyCreation] checks
// it like fresh evidence and that the key id is a replayed volume-key digest
// of PCR 15, and returns a [Creation] (volume, key id, measurements, the
// verifier's time).
//
// # SEV-SNP and TDX
//
// A [TEEReporter] (guest) and a [TEEVerifier] (verifier) for each live in
// packages attest/snp and attest/tdx, which wrap go-sev-guest and
// go-tdx-guest; register the verifiers in [ValidatorOptions.TEE].
package attest
