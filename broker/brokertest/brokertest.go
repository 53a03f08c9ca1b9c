// Package brokertest holds a test double of the broker's [broker.Verifier]
// so that the broker's handlers (and clients of the broker) can be tested
// without attestation hardware. It does not import package testing, so
// `confidisk serve --verifier insecure-test` can use it for end-to-end tests. It accepts any evidence of the form
// [Evidence] whose nonce matches: it proves nothing and must never verify
// real guests.
package brokertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/confidisk/confidisk/broker"
)

// Evidence is what the double accepts as evidence (JSON).
type Evidence struct {
	// Nonce must equal the nonce the broker checks against.
	Nonce []byte `json:"nonce"`
	// Volume becomes Claims.Volume.
	Volume string `json:"volume"`
	// KeyID becomes Claims.KeyID.
	KeyID string `json:"key_id,omitempty"`
	// Measurements become Claims.Measurements.
	Measurements json.RawMessage `json:"measurements,omitempty"`
	// ReleaseKey becomes Claims.ReleaseKey.
	ReleaseKey []byte `json:"release_key,omitempty"`
	// Reject, when set, makes verification fail with this text.
	Reject string `json:"reject,omitempty"`
}

// Marshal encodes e as evidence bytes. It fails only when Measurements is
// not valid JSON.
func (e Evidence) Marshal() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("marshal test evidence: %w", err)
	}
	return b, nil
}

// Verifier is the test double. The zero value is ready to use.
type Verifier struct{}

var _ broker.Verifier = Verifier{}

// Verify implements [broker.Verifier] for [Evidence].
func (Verifier) Verify(_ context.Context, evidence, nonce []byte) (*broker.Claims, error) {
	var e Evidence
	dec := json.NewDecoder(bytes.NewReader(evidence))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("test evidence: %w", err)
	}
	switch {
	case e.Reject != "":
		return nil, errors.New(e.Reject)
	case !bytes.Equal(e.Nonce, nonce):
		return nil, errors.New("test evidence is bound to another nonce")
	}
	return &broker.Claims{Volume: e.Volume, KeyID: e.KeyID, Measurements: e.Measurements, ReleaseKey: e.ReleaseKey}, nil
}
