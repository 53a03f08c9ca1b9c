package broker

import (
	"context"
	"encoding/json"
)

// Verifier checks attestation evidence. The real one (TPM quote + event
// logs + SEV-SNP/TDX report against reference values) lives elsewhere;
// broker/brokertest has a test double.
type Verifier interface {
	// Verify checks that evidence is genuine, acceptable under policy and
	// bound to nonce, and returns what it proves. Any error refuses the
	// request (HTTP 403, code "evidence_rejected", with the error text).
	Verify(ctx context.Context, evidence, nonce []byte) (*Claims, error)
}

// CreationVerifier is implemented by verifiers that can check a creation
// record (a quote whose qualifying data is the volume key id, made when the
// volume was created) without a broker nonce. With one, POST /v1/volumes
// accepts {"creation_record": …, "volume": …}.
type CreationVerifier interface {
	VerifyCreationRecord(ctx context.Context, record []byte) (*Claims, error)
}

// Claims is what verified evidence proves about the guest.
type Claims struct {
	// Volume is the UUID of the volume the guest attests to (for example the
	// one whose key it measured into PCR 15, or the one it asks a key for).
	Volume string
	// KeyID is the attested volume key identifier (lowercase hex), if the
	// evidence shows one; when set it must match the volume's record.
	KeyID string
	// Measurements are the attested values recorded with a creation proof.
	Measurements json.RawMessage
	// ReleaseKey is an ephemeral HPKE public key (uncompressed P-256 point)
	// the guest generated and bound into the evidence (for example through
	// the report data). Released keys are sealed to it.
	ReleaseKey []byte
}
