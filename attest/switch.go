package attest

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/confidisk/confidisk/broker/api"
)

// Switch is a verifier whose [Validator] can be replaced while it serves
// (a policy reload: the operator adds a new image's reference values or
// retires an old one without restarting the broker). It implements the
// broker's Verifier and CreationVerifier; before the first [Switch.Set] it
// refuses everything.
type Switch struct{ v atomic.Pointer[Validator] }

// ErrNoPolicy is a [Switch] that has no validator yet.
var ErrNoPolicy = errors.New("no attestation policy loaded")

// Set makes v verify all evidence from now on; requests already being
// verified finish with the validator they started with.
func (s *Switch) Set(v *Validator) { s.v.Store(v) }

// Verify implements the broker's Verifier with the current validator.
func (s *Switch) Verify(ctx context.Context, evidence, nonce []byte) (*api.Claims, error) {
	v := s.v.Load()
	if v == nil {
		return nil, ErrNoPolicy
	}
	return v.Verify(ctx, evidence, nonce)
}

// VerifyCreationRecord implements the broker's CreationVerifier with the
// current validator.
func (s *Switch) VerifyCreationRecord(ctx context.Context, record []byte) (*api.Claims, error) {
	v := s.v.Load()
	if v == nil {
		return nil, ErrNoPolicy
	}
	return v.VerifyCreationRecord(ctx, record)
}
