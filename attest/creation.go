package attest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/tpm"
)

// CreationRecord is the proof of a self-encrypted volume's creation that
// first boot stores: evidence whose Nonce is the volume key id (32 bytes:
// the fixation value, HMAC-SHA256(volume key, "cryptsetup:<name>:<uuid>"),
// the sha256 digest systemd extends into PCR 15), taken right after the key
// was measured, and whose quote's qualifying data is [CreationBinding] of
// that key id with the volume's UUID and name. (systemd issue 40410 proposes
// the key id alone as qualifying data; that leaves the UUID, which the log
// names in clear text next to the digest, unauthenticated: anyone holding a
// record could register it under another UUID.)
//
// The record is not bound to a verifier nonce: it states a fact about the
// past and may be verified any number of times. Whoever registers (UUID,
// key id) pairs must still compare later evidence's key ids with the
// registered one, as the broker does.
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

// CreationBinding is a creation record's qualifying data:
//
//	SHA-256("confidisk attest v2 creation\x00" ‖ lp(key id) ‖ lp(uuid) ‖ lp(name))
//
// with lp as in [Binding] and the key id as its 32 bytes.
func CreationBinding(keyID []byte, uuid, name string) []byte {
	return lpHash(sha256.New(), "confidisk attest v2 creation", keyID, []byte(uuid), []byte(name))
}

// IssueCreation produces the creation record of the volume uuid, measured
// under name, whose key id (lowercase hex of 32 bytes, as tpm.FixateValue
// returns it) was just measured into PCR 15. The bank must be sha256, whose
// digest is the key id.
func (i *Issuer) IssueCreation(ctx context.Context, keyID, uuid, name string) (*CreationRecord, error) {
	id, err := hex.DecodeString(keyID)
	if err != nil || len(id) != 32 {
		return nil, fmt.Errorf("issue creation record: key id %q is not 32 bytes of hex", keyID)
	}
	if i.o.Bank != tpm.SHA256 {
		return nil, fmt.Errorf("issue creation record: bank %s (the key id is the sha256 digest, so quote sha256)", i.o.Bank)
	}
	q := CreationBinding(id, uuid, name)
	e, err := i.issue(ctx, id, nil, func(_, _, _ []byte) []byte { return q })
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
// except the verifier nonce; the bank sha256; a volume-key record in the
// replayed PCR 15 whose sha256 digest is the record's key id
// ([ErrVolumeNotMeasured]); and the quote's qualifying data being
// [CreationBinding] of that key id with the UUID and name the record names
// ([ErrBindingMismatch] otherwise: an edited UUID is refused).
func (v *Validator) VerifyCreation(ctx context.Context, rec *CreationRecord) (*Creation, error) {
	e := &rec.Evidence
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("verify creation record: %w: %w", ErrMalformedEvidence, err)
	}
	if len(e.Nonce) != 32 || e.Bank != tpm.SHA256 {
		return nil, fmt.Errorf("verify creation record: %w: want a 32-byte key id quoted in the sha256 bank, have %d bytes in %s",
			ErrMalformedEvidence, len(e.Nonce), e.Bank)
	}
	keyID := hex.EncodeToString(e.Nonce)
	var found *volumeRecord
	c, err := v.check(ctx, e, func(recs []volumeRecord) ([]byte, error) {
		for i := range recs {
			if recs[i].keyID == keyID {
				found = &recs[i]
			}
		}
		if found == nil {
			return nil, fmt.Errorf("%w: key id %s (%d volume-key records)", ErrVolumeNotMeasured, keyID, len(recs))
		}
		return CreationBinding(e.Nonce, found.uuid, found.name), nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify creation record: %w", err)
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

// VerifyCreationRecord implements the broker's CreationVerifier: it parses and
// checks a creation record and returns the volume it proves was created in
// an attested guest.
func (v *Validator) VerifyCreationRecord(ctx context.Context, record []byte) (*api.Claims, error) {
	rec, err := ParseCreationRecord(record)
	if err != nil {
		return nil, err
	}
	c, err := v.VerifyCreation(ctx, rec)
	if err != nil {
		return nil, err
	}
	return &api.Claims{Volume: c.UUID, KeyID: c.KeyID, Measurements: c.Measurements}, nil
}
