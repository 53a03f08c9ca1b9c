// Package store defines what the confidisk broker keeps: the nonces that
// were used (until they expire), volume creation records, each volume's freshness epoch and the wrapped keys
// of pre-encrypted volumes.
//
// The [Store] interface is implemented by store/bolt (one embedded file, the
// default) and store/postgres (shared by several stateless broker replicas).
// Both pass the same conformance suite, store/storetest.
//
// Semantics every implementation guarantees:
//
//   - A nonce is consumed at most once: of any number of concurrent
//     [Store.ConsumeNonce] calls for one nonce, on one broker or on several
//     replicas sharing the store, exactly one succeeds; the others get
//     [ErrNonceUsed]. Nonces are stateless (the broker checks their MAC and
//     lifetime): issuing one stores nothing, and a used nonce is remembered
//     only until it expires.
//   - Epochs only move forward, by compare-and-swap: [Store.CompareAndSwapEpoch]
//     succeeds only if the stored epoch equals old, and new must be greater
//     than old (by any amount, so that a guest whose TPM counter ran ahead
//     after a crash can catch up in one step). Epochs are limited to
//     [MaxEpoch] because PostgreSQL's BIGINT is signed.
//   - Every write is durable when the call returns (fsync on commit).
//   - Times come back in UTC with microsecond precision (PostgreSQL's).
//   - Measurements and a key's Require are returned as stored, an empty
//     Require as nil; the broker stores compact JSON.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Errors reported by every [Store]. Test them with errors.Is.
var (
	// ErrNonceUsed: the nonce was already consumed (a replay).
	ErrNonceUsed = errors.New("nonce already used")
	// ErrVolumeNotFound: no creation record for this volume UUID.
	ErrVolumeNotFound = errors.New("volume not registered")
	// ErrVolumeExists: a creation record for this volume UUID already exists.
	ErrVolumeExists = errors.New("volume already registered")
	// ErrEpochConflict: the stored epoch is not the expected old value; the
	// error is an [*EpochConflictError] carrying the current value.
	ErrEpochConflict = errors.New("epoch conflict")
	// ErrEpochNotIncreasing: new is not greater than old, or above [MaxEpoch].
	ErrEpochNotIncreasing = errors.New("new epoch must be greater than old and at most 2^63-1")
	// ErrKeyNotFound: no wrapped key is stored for this volume.
	ErrKeyNotFound = errors.New("no key stored for volume")
)

// MaxEpoch is the largest epoch a store accepts (PostgreSQL BIGINT).
const MaxEpoch = math.MaxInt64

// EpochConflictError is returned by [Store.CompareAndSwapEpoch] when the stored
// epoch differs from the expected one. It matches [ErrEpochConflict].
type EpochConflictError struct {
	// Current is the epoch stored at the time of the attempt.
	Current uint64
}

func (e *EpochConflictError) Error() string {
	return fmt.Sprintf("epoch conflict: current epoch is %d", e.Current)
}

// Is makes errors.Is(err, ErrEpochConflict) true.
func (e *EpochConflictError) Is(target error) bool { return target == ErrEpochConflict }

// Volume is the creation record of a volume: proof that it was created (and
// its key generated) inside an attested guest, or registered by an operator.
type Volume struct {
	// UUID is the LUKS2 UUID in canonical lowercase 8-4-4-4-12 form.
	UUID string `json:"uuid"`
	// KeyID identifies the volume key (lowercase hex, e.g. the PCR 15
	// digest systemd measures); it never reveals the key.
	KeyID string `json:"key_id"`
	// Measurements are the attested values at creation, opaque to the store.
	Measurements json.RawMessage `json:"measurements,omitempty"`
	// Recovery is the volume's recovery passphrase sealed to the operator's
	// key (a confidisk-recovery token), escrowed by the guest at
	// registration; opaque to the store, readable by the operator only.
	Recovery json.RawMessage `json:"recovery,omitempty"`
	// CreatedAt is when the broker recorded the creation (UTC).
	CreatedAt time.Time `json:"created_at"`
}

// WrappedKey is the key of a pre-encrypted volume as the broker stores it:
// sealed under the broker's key-encryption key, never in clear. The store
// treats Sealed as opaque bytes.
type WrappedKey struct {
	// KeyID identifies the volume key (lowercase hex).
	KeyID string
	// Sealed is the key encrypted by the broker (nonce || AEAD ciphertext).
	Sealed []byte
	// Require is the JSON object of measurements the evidence of a release
	// must show (api.PutKeyRequest.Require, compacted by the broker), nil
	// when the key requires none; opaque to the store, returned as stored.
	Require json.RawMessage
	// CreatedAt is when the key was stored (UTC).
	CreatedAt time.Time
}

// Store is what the broker needs from its storage. Implementations are safe
// for concurrent use, and by several processes where the backend allows it
// (PostgreSQL).
type Store interface {
	// ConsumeNonce records the nonce as used until expires (the broker has
	// checked that it is genuine and alive; expires is the one the nonce
	// carries), at most once: ErrNonceUsed when it already is.
	ConsumeNonce(ctx context.Context, nonce []byte, expires time.Time) error
	// PruneNonces forgets used nonces that expired at or before now and
	// returns how many were removed.
	PruneNonces(ctx context.Context, now time.Time) (int, error)

	// RegisterVolume stores a creation record with epoch 0; ErrVolumeExists
	// if the UUID is taken.
	RegisterVolume(ctx context.Context, v Volume) error
	// Volume returns the record for uuid, or ErrVolumeNotFound.
	Volume(ctx context.Context, uuid string) (Volume, error)
	// Volumes lists every record ordered by UUID.
	Volumes(ctx context.Context) ([]Volume, error)

	// Epoch returns the freshness epoch of a registered volume.
	Epoch(ctx context.Context, uuid string) (uint64, error)
	// CompareAndSwapEpoch sets the epoch to new if it currently is old (atomic
	// compare-and-swap). new must satisfy old < new <= MaxEpoch. On a
	// mismatch it returns an *EpochConflictError with the current value.
	CompareAndSwapEpoch(ctx context.Context, uuid string, old, new uint64) error
	// ConsumeNonceAndAdvance is ConsumeNonce and then, unless the nonce was
	// used, CompareAndSwapEpoch, in one durable commit: the nonce stays
	// consumed whatever the swap's outcome (conflict, unknown volume).
	// Invalid arguments (CheckAdvance) consume nothing.
	ConsumeNonceAndAdvance(ctx context.Context, nonce []byte, expires time.Time, uuid string, old, new uint64) error

	// PutKey stores (or replaces) the wrapped key of a registered volume.
	PutKey(ctx context.Context, uuid string, k WrappedKey) error
	// Key returns the wrapped key of a volume, or ErrKeyNotFound.
	Key(ctx context.Context, uuid string) (WrappedKey, error)

	// Close releases the store.
	Close() error
}

// CheckAdvance validates the arguments of CompareAndSwapEpoch; implementations
// call it before touching storage.
func CheckAdvance(old, new uint64) error {
	if new <= old || new > MaxEpoch {
		return fmt.Errorf("advance epoch %d to %d: %w", old, new, ErrEpochNotIncreasing)
	}
	return nil
}
