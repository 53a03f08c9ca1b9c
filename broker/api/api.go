// Package api holds the wire types of the confidisk broker's HTTP API (JSON
// bodies; []byte fields are standard base64) and the key-release
// encryption both sides use. Guests and operators import it without pulling
// in the server.
package api

import (
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/json"
	"fmt"
	"time"
)

// NonceResponse answers POST /v1/nonce.
type NonceResponse struct {
	// Nonce is 32 random bytes to bind into the next evidence.
	Nonce []byte `json:"nonce"`
	// Expires is when the broker stops accepting the nonce.
	Expires time.Time `json:"expires"`
}

// EvidenceRequest is the body of POST /v1/evidence.
type EvidenceRequest struct {
	// Nonce is a nonce from POST /v1/nonce; it is consumed by this request.
	Nonce []byte `json:"nonce"`
	// Evidence is the guest's attestation evidence, bound to Nonce.
	Evidence []byte `json:"evidence"`
}

// Claims is what the broker learnt from verified evidence (the answer of
// POST /v1/evidence).
type Claims struct {
	// Volume is the UUID of the volume the guest attests to (for example the
	// one whose key it measured into PCR 15, or the one it asks a key for).
	Volume string `json:"volume,omitempty"`
	// KeyID is the attested volume key identifier (lowercase hex), if the
	// evidence shows one; when set it must match the volume's record.
	KeyID string `json:"key_id,omitempty"`
	// Measurements are the attested values, opaque JSON, recorded with a
	// creation proof.
	Measurements json.RawMessage `json:"measurements,omitempty"`
	// ReleaseKey is an ephemeral HPKE public key (uncompressed P-256 point)
	// the guest generated and bound into the evidence (for example through
	// the report data). Released keys are sealed to it.
	ReleaseKey []byte `json:"release_key,omitempty"`
}

// VolumeSpec describes a volume to register.
type VolumeSpec struct {
	// UUID is the LUKS2 UUID (8-4-4-4-12 hex, any case; stored lowercase).
	UUID string `json:"uuid"`
	// KeyID identifies the volume key (hex; stored lowercase).
	KeyID string `json:"key_id"`
	// Measurements are accepted from operators only; for guests the broker
	// records the verifier's measurements.
	Measurements json.RawMessage `json:"measurements,omitempty"`
	// Recovery is the volume's confidisk-recovery token (its recovery
	// passphrase sealed to the operator's key), escrowed at registration.
	Recovery json.RawMessage `json:"recovery,omitempty"`
}

// RegisterRequest is the body of POST /v1/volumes: a creation proof
// (Nonce + Evidence from the guest that created the volume) or, with an
// operator client certificate, just the volume.
type RegisterRequest struct {
	Nonce    []byte     `json:"nonce,omitempty"`
	Evidence []byte     `json:"evidence,omitempty"`
	Volume   VolumeSpec `json:"volume"`
	// CreationRecord, instead of nonce and evidence, is the record first
	// boot stored with the volume (a vTPM quote whose qualifying data is the
	// volume key id; attest.CreationRecord JSON). Anyone may submit it: it
	// proves by itself where the volume was created.
	CreationRecord json.RawMessage `json:"creation_record,omitempty"`
}

// Volume is a creation record (GET /v1/volumes/{uuid}, POST /v1/volumes).
type Volume struct {
	UUID         string          `json:"uuid"`
	KeyID        string          `json:"key_id"`
	Measurements json.RawMessage `json:"measurements,omitempty"`
	// Recovery is the escrowed recovery token; answered to operators only.
	Recovery  json.RawMessage `json:"recovery,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

// VolumeList answers GET /v1/volumes (operators).
type VolumeList struct {
	Volumes []Volume `json:"volumes"`
}

// Epoch answers GET and POST /v1/volumes/{uuid}/epoch.
type Epoch struct {
	Epoch uint64 `json:"epoch"`
}

// AdvanceEpochRequest is the body of POST /v1/volumes/{uuid}/epoch: move
// the epoch from Old to New (New > Old) if it still is Old.
type AdvanceEpochRequest struct {
	Nonce    []byte `json:"nonce"`
	Evidence []byte `json:"evidence"`
	Old      uint64 `json:"old"`
	New      uint64 `json:"new"`
}

// PutKeyRequest is the body of PUT /v1/volumes/{uuid}/key (operators): the
// key of a pre-encrypted volume, protected in transit by mutual TLS. A put
// replaces the volume's key and its requirement.
type PutKeyRequest struct {
	KeyID string `json:"key_id"`
	Key   []byte `json:"key"`
	// Require is a JSON object of measurements the evidence of a release
	// must show, for example
	// {"pcrs":{"7":"<hex>","11":"<hex>"},"root_hash":"verified:<hex>","tee":"sev-snp:verified"}.
	// Every member of Require must be present in the verified
	// [Claims.Measurements] (attest.Measurements) with an equal value.
	// Objects are compared member by member, recursively: {"pcrs":{"7":…}}
	// requires PCR 7 and says nothing of the others, and members Require
	// does not name may have any value. Arrays, strings, numbers, booleans
	// and null must be equal exactly: arrays element by element (objects in
	// them with the same members), numbers by value (1 equals 1.0),
	// strings case-sensitively — the verifier writes PCR values, digests
	// and fingerprints in lowercase hex. Absent, null or {} requires
	// nothing. At most 16 KiB, 32 levels deep, no member name twice in an
	// object; the broker stores it as compact JSON. Evidence that does not
	// satisfy it is refused with code "measurements_mismatch".
	Require json.RawMessage `json:"require,omitempty"`
}

// ReleaseKeyRequest is the body of POST /v1/volumes/{uuid}/key: evidence
// that binds the guest's ephemeral public key (see [Claims.ReleaseKey]).
type ReleaseKeyRequest struct {
	Nonce    []byte `json:"nonce"`
	Evidence []byte `json:"evidence"`
}

// ReleasedKey answers POST /v1/volumes/{uuid}/key: the volume key sealed
// with HPKE to the guest's ephemeral key; open it with [OpenKey].
type ReleasedKey struct {
	KeyID string `json:"key_id"`
	// Suite names the HPKE suite, [KeySuite].
	Suite string `json:"suite"`
	// Sealed is the HPKE encapsulated key followed by the ciphertext.
	Sealed []byte `json:"sealed"`
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	// Error says what is wrong, for people.
	Error string `json:"error"`
	// Code is a stable identifier for programs (for example "nonce_used").
	Code string `json:"code"`
	// Current is the stored epoch, with Code "epoch_conflict".
	Current *uint64 `json:"current,omitempty"`
	// KeyID is the registered key id, with Code "volume_exists" (answered
	// only after the creation record or evidence verified).
	KeyID string `json:"key_id,omitempty"`
}

// KeySuite is the HPKE suite of released keys. The guest's release key is
// an uncompressed P-256 point (65 bytes).
const KeySuite = "DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM"

func keyInfo(uuid, keyID string) []byte {
	return []byte("confidisk key release v1\x00" + uuid + "\x00" + keyID)
}

// NewReleaseKey generates the guest's ephemeral key pair; bind
// priv.PublicKey().Bytes() into the evidence.
func NewReleaseKey() (hpke.PrivateKey, error) {
	k, err := hpke.DHKEM(ecdh.P256()).GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate release key: %w", err)
	}
	return k, nil
}

// SealKey seals a volume key to the guest's release public key (the
// broker's side), bound to the volume UUID and key id.
func SealKey(releaseKey []byte, uuid, keyID string, key []byte) ([]byte, error) {
	pk, err := hpke.DHKEM(ecdh.P256()).NewPublicKey(releaseKey)
	if err != nil {
		return nil, fmt.Errorf("release key is not a P-256 public key: %w", err)
	}
	sealed, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), keyInfo(uuid, keyID), key)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	return sealed, nil
}

// OpenKey opens a released key with the guest's ephemeral private key.
func OpenKey(priv hpke.PrivateKey, uuid string, r ReleasedKey) ([]byte, error) {
	if r.Suite != KeySuite {
		return nil, fmt.Errorf("open released key: unknown suite %q", r.Suite)
	}
	key, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), keyInfo(uuid, r.KeyID), r.Sealed)
	if err != nil {
		return nil, fmt.Errorf("open released key: %w", err)
	}
	return key, nil
}
