package broker

import (
	"context"

	"github.com/confidisk/confidisk/broker/api"
)

// Verifier checks attestation evidence and returns what it proves
// ([api.Claims], the one claims type of the broker's API and of verifiers). The real one (TPM quote + event
// logs + SEV-SNP/TDX report against reference values) lives elsewhere;
// broker/brokertest has a test double.
type Verifier interface {
	// Verify checks that evidence is genuine, acceptable under policy and
	// bound to nonce, and returns what it proves. Any error refuses the
	// request (HTTP 403, code "evidence_rejected", with the error text).
	Verify(ctx context.Context, evidence, nonce []byte) (*api.Claims, error)
}

// CreationVerifier is implemented by verifiers that can check a creation
// record (a quote whose qualifying data is the volume key id, made when the
// volume was created) without a broker nonce. With one, POST /v1/volumes
// accepts {"creation_record": …, "volume": …}.
type CreationVerifier interface {
	VerifyCreationRecord(ctx context.Context, record []byte) (*api.Claims, error)
}
