package attest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/confidisk/confidisk/broker"
	"time"

	"github.com/confidisk/confidisk/tpm"
)

// CreationRecord is the proof of a self-encrypted volume's creation that
// first boot stores: evidence whose Nonce — and whose quote's qualifying
// data, unhashed — is the volume key id (32 bytes: the fixation value,
// HMAC-SHA256(volume key, "cryptsetup:<name>:<uuid>"), the sha256 digest
// systemd extends into PCR 15), taken right after the key was measured.
// This is the shape proposed for systemd-repart in systemd issue 40410
// ("fixate-quote": a TPM quote whose qualifying data is the volume key id),
// so that a record made by systemd could be checked the same way.
//
// The record is not bound to a verifier nonce: it states a fact about the
// past and may be verified any number of times. Its log is not covered by
// the qualifying data, so the UUID it names is authenticated only through
// the key id (an HMAC over the UUID that only the key holder can compute):
// whoever registers (UUID, key id) pairs must compare later evidence's key
// ids with the registered one, as the broker does.
type CreationRecord struct {
	Evidence
}

// ParseCreationRecord decodes a creation record as [ParseEvidence] does.
func ParseCreationRecord(b []byte) (*CreationRecord, error) {
	e, err := ParseEvidence(b)
	if err != nil {
		return nil, fmt.Errorf("creation record: %w", err)
	}
	return &CreationRecord{Evidence: *e}, nil
}

// IssueCreation produces the creation record of a volume whose key id
// (lowercase hex of 32 bytes, as tpm.FixateValue returns it) was just
// measured into PCR 15. The bank must be sha256, whose digest is the key id.
func (i *Issuer) IssueCreation(ctx context.Context, keyID string) (*CreationRecord, error) {
	id, err := hex.DecodeString(keyID)
	if err != nil || len(id) != 32 {
		return nil, fmt.Errorf("issue creation record: key id %q is not 32 bytes of hex", keyID)
	}
	if i.o.Bank != tpm.SHA256 {
		return nil, fmt.Errorf("issue creation record: bank %s (the key id is the sha256 digest, so quote sha256)", i.o.Bank)
	}
	e, err := i.issue(ctx, id, nil, func(_, _, _ []byte) []byte { return id })
	if err != nil {
		return nil, fmt.Errorf("issue creation record: %w", err)
	}
	return &CreationRecord{Evidence: *e}, nil
}

// Creation is what a verified creation record proves: volume UUID (LUKS
// UUID), with key KeyID, was created in a guest whose quoted state was
// Measurements; Time is when the verifier checked it (the TPM's clock in
// the quote is not wall-clock time).
type Creation struct {
	UUID         string          `json:"uuid"`
	Name         string          `json:"name"`
	KeyID        string          `json:"key_id"`
	Measurements json.RawMessage `json:"measurements"`
	Time         time.Time       `json:"time"`
}

// VerifyCreation checks a creation record: every check of [Validator.Verify]
// except the verifier nonce, with the quote's qualifying data being the
// record's key id ([ErrBindingMismatch] otherwise), the bank sha256, and a
// volume-key record in the replayed PCR 15 whose sha256 digest is that key
// id ([ErrVolumeNotMeasured]).
func (v *Validator) VerifyCreation(ctx context.Context, rec *CreationRecord) (*Creation, error) {
	e := &rec.Evidence
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("verify creation record: %w: %w", ErrMalformedEvidence, err)
	}
	if len(e.Nonce) != 32 || e.Bank != tpm.SHA256 {
		return nil, fmt.Errorf("verify creation record: %w: want a 32-byte key id quoted in the sha256 bank, have %d bytes in %s",
			ErrMalformedEvidence, len(e.Nonce), e.Bank)
	}
	c, err := v.check(ctx, e, e.Nonce)
	if err != nil {
		return nil, fmt.Errorf("verify creation record: %w", err)
	}
	keyID := hex.EncodeToString(e.Nonce)
	var found *volumeRecord
	for i := range c.volumes {
		if c.volumes[i].keyID == keyID {
			found = &c.volumes[i]
		}
	}
	if found == nil {
		return nil, fmt.Errorf("verify creation record: %w: key id %s (%d volume-key records)", ErrVolumeNotMeasured, keyID, len(c.volumes))
	}
	m, err := json.Marshal(c.m)
	if err != nil {
		return nil, fmt.Errorf("verify creation record: %w", err)
	}
	return &Creation{UUID: found.uuid, Name: found.name, KeyID: keyID, Measurements: m, Time: v.now().UTC()}, nil
}

// VerifyCreation checks a creation record against a policy at time now; see
// [Validator.VerifyCreation].
func VerifyCreation(ctx context.Context, rec *CreationRecord, p *Policy, now time.Time) (*Creation, error) {
	v, err := NewValidator(p, ValidatorOptions{Now: func() time.Time { return now }})
	if err != nil {
		return nil, err
	}
	return v.VerifyCreation(ctx, rec)
}

// VerifyCreationRecord implements broker.CreationVerifier: it parses and
// checks a creation record and returns the volume it proves was created in
// an attested guest.
func (v *Validator) VerifyCreationRecord(ctx context.Context, record []byte) (*broker.Claims, error) {
	rec, err := ParseCreationRecord(record)
	if err != nil {
		return nil, err
	}
	c, err := v.VerifyCreation(ctx, rec)
	if err != nil {
		return nil, err
	}
	return &broker.Claims{Volume: c.UUID, KeyID: c.KeyID, Measurements: c.Measurements}, nil
}
