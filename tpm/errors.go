package tpm

import "errors"

// Sentinel errors; test with errors.Is.
var (
	// ErrUnsupported marks a bank, algorithm or token feature this package
	// does not implement.
	ErrUnsupported = errors.New("unsupported")

	// ErrPCRMismatch is returned by [Unseal] when the PCRs no longer hold
	// the values the secret was sealed to (the policy check failed: the boot
	// chain or configuration changed).
	ErrPCRMismatch = errors.New("pcr values do not match the sealing policy")

	// ErrVolumeKeyMeasured is returned by [Unseal] when the policy binds
	// PCR 15 to its reset value and PCR 15 was already extended (a volume
	// key was measured this boot): the one change that explains the policy
	// failure. It wraps [ErrPCRMismatch].
	ErrVolumeKeyMeasured = errors.New("pcr 15 was already extended this boot (a volume key was measured)")

	// ErrWrongPIN is returned by [Unseal] when the PIN is wrong (or missing).
	ErrWrongPIN = errors.New("wrong tpm pin")

	// ErrPINRequired is returned when a blob sealed with a PIN is unsealed without one.
	ErrPINRequired = errors.New("a pin is required to unseal")

	// ErrLockout is returned when the TPM refuses authorisation because of
	// its dictionary-attack lockout.
	ErrLockout = errors.New("tpm is in dictionary-attack lockout")

	// ErrBadBlob is returned when a sealed blob or token does not parse.
	ErrBadBlob = errors.New("malformed sealed blob")

	// ErrSRKMismatch is returned when the storage root key at 0x81000001 is
	// not the one a blob was sealed under, or is not an SRK of the expected
	// template.
	ErrSRKMismatch = errors.New("storage root key does not match")

	// ErrBadSignature is returned when a signed PCR policy has no valid
	// signature for the current PCR values.
	ErrBadSignature = errors.New("no valid signature for the pcr policy")
)

// Errors of [ParseSRKPublic] and [SealOffline].
var (
	// ErrNotStorageKey is returned for a public key that cannot be the
	// parent of a sealed object: not restricted and decrypt, a signing key,
	// or without AES-128-CFB for its children.
	ErrNotStorageKey = errors.New("not a storage parent key")

	// ErrBadPublicKey is returned when a public key's bytes do not parse as
	// a TPM2B_PUBLIC, TPMT_PUBLIC or PEM public key, or its point is not on
	// its curve.
	ErrBadPublicKey = errors.New("malformed public key")
)
