package attest

import "errors"

// Sentinel errors, one per reason evidence or a creation record is refused;
// test with errors.Is. Every refusal wraps exactly one of them.
var (
	// ErrMalformedEvidence: the evidence (or creation record) is not
	// version-1 JSON of the documented shape, or a field inside it (AK
	// public area, TPMS_ATTEST, PCR values, measurement log) cannot be read.
	ErrMalformedEvidence = errors.New("malformed evidence")

	// ErrNonceMismatch: the evidence answers another nonce than the one the
	// verifier issued (a replayed or foreign evidence).
	ErrNonceMismatch = errors.New("evidence is bound to another nonce")

	// ErrBindingMismatch: the quote's qualifying data is not the binding of
	// the evidence's nonce, release key, attestation key and logs (see
	// [Binding]): one of them was swapped after the guest signed.
	ErrBindingMismatch = errors.New("quote qualifying data does not bind the evidence's nonce, release key, attestation key and logs")

	// ErrQuoteSignature: the quote's signature does not verify with the
	// evidence's attestation key (wraps tpm.ErrQuoteSignature).
	ErrQuoteSignature = errors.New("quote signature does not verify")

	// ErrPCRDigest: the PCR values in the evidence are not the ones the
	// quote's pcrDigest covers.
	ErrPCRDigest = errors.New("pcr values do not match the quote")

	// ErrAKNotAllowed: the policy pins attestation keys and the evidence's
	// key is not one of them (a swapped attestation key, or another TPM).
	ErrAKNotAllowed = errors.New("attestation key is not allowed by the policy")

	// ErrPCRPolicy: a PCR the policy pins is not quoted, or its value is
	// not one of the policy's allowed values.
	ErrPCRPolicy = errors.New("pcr values are not allowed by the policy")

	// ErrLogTampered: the userspace measurement log does not replay to the
	// quoted PCR value, or a record's digest does not match its content.
	ErrLogTampered = errors.New("measurement log does not match the quoted pcrs")

	// ErrUnknownRootHash: a verified dm-verity record names a root hash the
	// policy does not allow, or the policy requires a verified root hash and
	// the evidence has none.
	ErrUnknownRootHash = errors.New("root hash is not allowed by the policy")

	// ErrVolumeNotMeasured: a creation record's key id is not the digest of
	// a volume-key measurement in its quoted PCR 15.
	ErrVolumeNotMeasured = errors.New("the volume key id is not measured in the quoted pcr 15")

	// ErrTEEReport: the evidence's SEV-SNP/TDX report is missing while the
	// policy requires one, cannot be verified, or does not bind the nonce
	// and attestation key.
	ErrTEEReport = errors.New("tee report refused")
)
