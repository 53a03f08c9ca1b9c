// Package postgres is the [store.Store] of the confidisk broker on
// PostgreSQL (through pgx's connection pool), for several stateless broker
// replicas sharing one database.
//
// The schema is created on [Open] (idempotently, under an advisory lock so
// that replicas starting together do not race). Epoch compare-and-swap is a
// single `UPDATE ... WHERE uuid = $1 AND epoch = $old`: PostgreSQL re-checks
// the WHERE clause after waiting for a concurrent writer's row lock, so of
// two racing advances from the same old value exactly one succeeds. Nonces
// are stateless (the broker checks their MAC and lifetime); a used nonce is
// an `INSERT ... ON CONFLICT DO NOTHING` into confidisk_used_nonces, which
// inserts for exactly one of any number of racing replicas, and stays until
// it expires.
//
// Migrations only add (CREATE ... IF NOT EXISTS, ADD COLUMN IF NOT EXISTS),
// under the advisory lock, so any number of replicas of any version may run
// them at once, and older replicas keep working during a rolling upgrade
// (but a replica older than confidisk_keys.require releases keys without
// checking their required measurements, and its puts leave the column as
// it was: upgrade every replica before storing a key with a requirement);
// confidisk_nonces (issued nonces, before they were stateless) is no longer
// used and may be dropped once every replica is upgraded.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/confidisk/confidisk/broker/store"
)

// schemaLockID is the pg_advisory_xact_lock key held while creating the schema.
const schemaLockID = 0x636f6e666964 // "confid"

const schema = `
CREATE TABLE IF NOT EXISTS confidisk_used_nonces (
	nonce   BYTEA PRIMARY KEY,
	expires TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS confidisk_used_nonces_expires ON confidisk_used_nonces (expires);
CREATE TABLE IF NOT EXISTS confidisk_volumes (
	uuid         TEXT PRIMARY KEY,
	key_id       TEXT NOT NULL,
	measurements BYTEA,
	created_at   TIMESTAMPTZ NOT NULL,
	epoch        BIGINT NOT NULL DEFAULT 0 CHECK (epoch >= 0)
);
ALTER TABLE confidisk_volumes ADD COLUMN IF NOT EXISTS recovery BYTEA;
CREATE TABLE IF NOT EXISTS confidisk_keys (
	uuid       TEXT PRIMARY KEY REFERENCES confidisk_volumes (uuid),
	key_id     TEXT NOT NULL,
	sealed     BYTEA NOT NULL,
	created_at TIMESTAMPTZ NOT NULL
);
ALTER TABLE confidisk_keys ADD COLUMN IF NOT EXISTS require BYTEA;`

// Store is a [store.Store] on a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string) and creates the schema if it is missing.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLockID)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres store: create schema: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes every connection of the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// ConsumeNonce implements [store.Store].
func (s *Store) ConsumeNonce(ctx context.Context, nonce []byte, expires time.Time) error {
	tag, err := s.pool.Exec(ctx,
		`INSERT INTO confidisk_used_nonces (nonce, expires) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING`, nonce, expires)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNonceUsed
	}
	if err != nil {
		return fmt.Errorf("consume nonce: %w", err)
	}
	return nil
}

// PruneNonces implements [store.Store].
func (s *Store) PruneNonces(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM confidisk_used_nonces WHERE expires <= $1`, now)
	if err != nil {
		return 0, fmt.Errorf("prune nonces: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// RegisterVolume implements [store.Store].
func (s *Store) RegisterVolume(ctx context.Context, v store.Volume) error {
	var meas, rec []byte
	if v.Measurements != nil {
		meas = v.Measurements
	}
	if v.Recovery != nil {
		rec = v.Recovery
	}
	_, err := s.pool.Exec(ctx,
		`INSERT INTO confidisk_volumes (uuid, key_id, measurements, recovery, created_at) VALUES ($1, $2, $3, $4, $5)`,
		v.UUID, v.KeyID, meas, rec, v.CreatedAt.UTC().Truncate(time.Microsecond))
	if isUniqueViolation(err) {
		err = store.ErrVolumeExists
	}
	if err != nil {
		return fmt.Errorf("register volume %s: %w", v.UUID, err)
	}
	return nil
}

func scanVolume(row pgx.Row) (store.Volume, error) {
	var v store.Volume
	var meas, rec []byte
	if err := row.Scan(&v.UUID, &v.KeyID, &meas, &rec, &v.CreatedAt); err != nil {
		return store.Volume{}, err
	}
	if meas != nil {
		v.Measurements = meas
	}
	if rec != nil {
		v.Recovery = rec
	}
	v.CreatedAt = v.CreatedAt.UTC()
	return v, nil
}

// Volume implements [store.Store].
func (s *Store) Volume(ctx context.Context, uuid string) (store.Volume, error) {
	v, err := scanVolume(s.pool.QueryRow(ctx,
		`SELECT uuid, key_id, measurements, recovery, created_at FROM confidisk_volumes WHERE uuid = $1`, uuid))
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrVolumeNotFound
	}
	if err != nil {
		return store.Volume{}, fmt.Errorf("get volume %s: %w", uuid, err)
	}
	return v, nil
}

// Volumes implements [store.Store].
func (s *Store) Volumes(ctx context.Context) ([]store.Volume, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT uuid, key_id, measurements, recovery, created_at FROM confidisk_volumes ORDER BY uuid COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	defer rows.Close()
	var out []store.Volume
	for rows.Next() {
		v, err := scanVolume(rows)
		if err != nil {
			return nil, fmt.Errorf("list volumes: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	return out, nil
}

// Epoch implements [store.Store].
func (s *Store) Epoch(ctx context.Context, uuid string) (uint64, error) {
	e, err := s.epoch(ctx, uuid)
	if err != nil {
		return 0, fmt.Errorf("get epoch of %s: %w", uuid, err)
	}
	return e, nil
}

func (s *Store) epoch(ctx context.Context, uuid string) (uint64, error) {
	var e int64
	err := s.pool.QueryRow(ctx, `SELECT epoch FROM confidisk_volumes WHERE uuid = $1`, uuid).Scan(&e)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrVolumeNotFound
	}
	if err != nil {
		return 0, err
	}
	return uint64(e), nil
}

// CompareAndSwapEpoch implements [store.Store].
func (s *Store) CompareAndSwapEpoch(ctx context.Context, uuid string, old, new uint64) error {
	if err := store.CheckAdvance(old, new); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx,
		`UPDATE confidisk_volumes SET epoch = $3 WHERE uuid = $1 AND epoch = $2`, uuid, int64(old), int64(new))
	if err == nil && tag.RowsAffected() == 1 {
		return nil
	}
	if err == nil {
		var cur uint64
		cur, err = s.epoch(ctx, uuid)
		if err == nil {
			err = &store.EpochConflictError{Current: cur}
		}
	}
	return fmt.Errorf("advance epoch of %s: %w", uuid, err)
}

// ConsumeNonceAndAdvance implements [store.Store]: one transaction, one
// commit.
func (s *Store) ConsumeNonceAndAdvance(ctx context.Context, nonce []byte, expires time.Time, uuid string, old, new uint64) error {
	if err := store.CheckAdvance(old, new); err != nil {
		return err
	}
	var refusal error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		refusal = nil
		tag, err := tx.Exec(ctx,
			`INSERT INTO confidisk_used_nonces (nonce, expires) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING`, nonce, expires)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			refusal = store.ErrNonceUsed
			return nil
		}
		refusal, err = swapEpoch(ctx, tx, uuid, old, new)
		return err
	})
	if err == nil {
		err = refusal
	}
	if err != nil {
		return fmt.Errorf("consume nonce and advance epoch of %s: %w", uuid, err)
	}
	return nil
}

// swapEpoch is the compare-and-swap in tx; a conflict or an unknown volume
// is a refusal (the transaction still commits).
func swapEpoch(ctx context.Context, tx pgx.Tx, uuid string, old, new uint64) (refusal, err error) {
	tag, err := tx.Exec(ctx,
		`UPDATE confidisk_volumes SET epoch = $3 WHERE uuid = $1 AND epoch = $2`, uuid, int64(old), int64(new))
	if err != nil || tag.RowsAffected() == 1 {
		return nil, err
	}
	var cur int64
	err = tx.QueryRow(ctx, `SELECT epoch FROM confidisk_volumes WHERE uuid = $1`, uuid).Scan(&cur)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.ErrVolumeNotFound, nil
	case err != nil:
		return nil, err
	}
	return &store.EpochConflictError{Current: uint64(cur)}, nil
}

// PutKey implements [store.Store].
func (s *Store) PutKey(ctx context.Context, uuid string, k store.WrappedKey) error {
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO confidisk_keys (uuid, key_id, sealed, require, created_at)
		SELECT uuid, $2, $3, $4, $5 FROM confidisk_volumes WHERE uuid = $1
		ON CONFLICT (uuid) DO UPDATE SET key_id = EXCLUDED.key_id, sealed = EXCLUDED.sealed,
			require = EXCLUDED.require, created_at = EXCLUDED.created_at`,
		uuid, k.KeyID, k.Sealed, nilIfEmpty(k.Require), k.CreatedAt.UTC().Truncate(time.Microsecond))
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrVolumeNotFound
	}
	if err != nil {
		return fmt.Errorf("put key of %s: %w", uuid, err)
	}
	return nil
}

// Key implements [store.Store].
func (s *Store) Key(ctx context.Context, uuid string) (store.WrappedKey, error) {
	var k store.WrappedKey
	var require []byte
	err := s.pool.QueryRow(ctx, `SELECT key_id, sealed, require, created_at FROM confidisk_keys WHERE uuid = $1`, uuid).
		Scan(&k.KeyID, &k.Sealed, &require, &k.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrKeyNotFound
	}
	if err != nil {
		return store.WrappedKey{}, fmt.Errorf("get key of %s: %w", uuid, err)
	}
	if require != nil {
		k.Require = require
	}
	k.CreatedAt = k.CreatedAt.UTC()
	return k, nil
}

// nilIfEmpty stores an empty value as NULL, so that it reads back nil.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
