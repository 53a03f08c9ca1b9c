// Package bolt is the embedded [store.Store] of the confidisk broker: one
// bbolt file, every write committed with fsync before the call returns.
//
// A bbolt file is locked by the process that opens it, so only one broker
// can use it; run several replicas on store/postgres instead.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/confidisk/confidisk/broker/store"
)

var (
	bucketNonces  = []byte("nonces")
	bucketVolumes = []byte("volumes")
	bucketEpochs  = []byte("epochs")
	bucketKeys    = []byte("keys")
)

// Store is a [store.Store] on one bbolt file.
type Store struct {
	db *bbolt.DB
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the bbolt file at path with mode 0600.
// It waits at most lockTimeout for another process to release the file
// lock (0 means one second).
func Open(path string, lockTimeout time.Duration) (*Store, error) {
	if lockTimeout <= 0 {
		lockTimeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open bolt store: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketNonces, bucketVolumes, bucketEpochs, bucketKeys} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open bolt store %s: create buckets: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// nonce record: 8 bytes expiry (unix nanoseconds, big endian) + 1 byte used flag.
func encodeNonce(expires time.Time, used bool) []byte {
	b := make([]byte, 9)
	binary.BigEndian.PutUint64(b, uint64(expires.UnixNano()))
	if used {
		b[8] = 1
	}
	return b
}

func decodeNonce(b []byte) (time.Time, bool, error) {
	if len(b) != 9 {
		return time.Time{}, false, fmt.Errorf("corrupt nonce record of %d bytes", len(b))
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))), b[8] == 1, nil
}

// PutNonce implements [store.Store].
func (s *Store) PutNonce(_ context.Context, nonce []byte, expires time.Time) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketNonces)
		if b.Get(nonce) != nil {
			return store.ErrNonceExists
		}
		return b.Put(nonce, encodeNonce(expires, false))
	})
	if err != nil {
		return fmt.Errorf("put nonce: %w", err)
	}
	return nil
}

// ConsumeNonce implements [store.Store].
func (s *Store) ConsumeNonce(_ context.Context, nonce []byte, now time.Time) error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketNonces)
		v := b.Get(nonce)
		if v == nil {
			return store.ErrNonceUnknown
		}
		exp, used, err := decodeNonce(v)
		if err != nil {
			return err
		}
		switch {
		case used:
			return store.ErrNonceUsed
		case !now.Before(exp):
			return store.ErrNonceExpired
		}
		return b.Put(nonce, encodeNonce(exp, true))
	})
	if err != nil {
		return fmt.Errorf("consume nonce: %w", err)
	}
	return nil
}

// PruneNonces implements [store.Store].
func (s *Store) PruneNonces(_ context.Context, now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketNonces)
		var expired [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if exp, _, err := decodeNonce(v); err != nil || !now.Before(exp) {
				expired = append(expired, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(expired)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune nonces: %w", err)
	}
	return n, nil
}

// RegisterVolume implements [store.Store].
func (s *Store) RegisterVolume(_ context.Context, v store.Volume) error {
	v.CreatedAt = v.CreatedAt.UTC().Truncate(time.Microsecond)
	rec, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("register volume %s: %w", v.UUID, err)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		vb := tx.Bucket(bucketVolumes)
		if vb.Get([]byte(v.UUID)) != nil {
			return store.ErrVolumeExists
		}
		if err := vb.Put([]byte(v.UUID), rec); err != nil {
			return err
		}
		return tx.Bucket(bucketEpochs).Put([]byte(v.UUID), encodeEpoch(0))
	})
	if err != nil {
		return fmt.Errorf("register volume %s: %w", v.UUID, err)
	}
	return nil
}

// Volume implements [store.Store].
func (s *Store) Volume(_ context.Context, uuid string) (store.Volume, error) {
	var v store.Volume
	err := s.db.View(func(tx *bbolt.Tx) error {
		rec := tx.Bucket(bucketVolumes).Get([]byte(uuid))
		if rec == nil {
			return store.ErrVolumeNotFound
		}
		return json.Unmarshal(rec, &v)
	})
	if err != nil {
		return store.Volume{}, fmt.Errorf("get volume %s: %w", uuid, err)
	}
	return v, nil
}

// Volumes implements [store.Store].
func (s *Store) Volumes(_ context.Context) ([]store.Volume, error) {
	var out []store.Volume
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketVolumes).ForEach(func(k, rec []byte) error {
			var v store.Volume
			if err := json.Unmarshal(rec, &v); err != nil {
				return fmt.Errorf("volume %s: %w", k, err)
			}
			out = append(out, v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	return out, nil
}

func encodeEpoch(e uint64) []byte { return binary.BigEndian.AppendUint64(nil, e) }

func decodeEpoch(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("corrupt epoch record of %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// Epoch implements [store.Store].
func (s *Store) Epoch(_ context.Context, uuid string) (uint64, error) {
	var e uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		rec := tx.Bucket(bucketEpochs).Get([]byte(uuid))
		if rec == nil {
			return store.ErrVolumeNotFound
		}
		var err error
		e, err = decodeEpoch(rec)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("get epoch of %s: %w", uuid, err)
	}
	return e, nil
}

// CompareAndSwapEpoch implements [store.Store]. bbolt serialises writers,
// so the read and the write happen in one exclusive transaction.
func (s *Store) CompareAndSwapEpoch(_ context.Context, uuid string, old, new uint64) error {
	if err := store.CheckAdvance(old, new); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketEpochs)
		rec := b.Get([]byte(uuid))
		if rec == nil {
			return store.ErrVolumeNotFound
		}
		cur, err := decodeEpoch(rec)
		if err != nil {
			return err
		}
		if cur != old {
			return &store.EpochConflictError{Current: cur}
		}
		return b.Put([]byte(uuid), encodeEpoch(new))
	})
	if err != nil {
		return fmt.Errorf("advance epoch of %s: %w", uuid, err)
	}
	return nil
}

type keyRecord struct {
	KeyID     string    `json:"key_id"`
	Sealed    []byte    `json:"sealed"`
	CreatedAt time.Time `json:"created_at"`
}

// PutKey implements [store.Store].
func (s *Store) PutKey(_ context.Context, uuid string, k store.WrappedKey) error {
	k.CreatedAt = k.CreatedAt.UTC().Truncate(time.Microsecond)
	rec, err := json.Marshal(keyRecord(k))
	if err != nil {
		return fmt.Errorf("put key of %s: %w", uuid, err)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketVolumes).Get([]byte(uuid)) == nil {
			return store.ErrVolumeNotFound
		}
		return tx.Bucket(bucketKeys).Put([]byte(uuid), rec)
	})
	if err != nil {
		return fmt.Errorf("put key of %s: %w", uuid, err)
	}
	return nil
}

// Key implements [store.Store].
func (s *Store) Key(_ context.Context, uuid string) (store.WrappedKey, error) {
	var k keyRecord
	err := s.db.View(func(tx *bbolt.Tx) error {
		rec := tx.Bucket(bucketKeys).Get([]byte(uuid))
		if rec == nil {
			return store.ErrKeyNotFound
		}
		return json.Unmarshal(rec, &k)
	})
	if err != nil {
		return store.WrappedKey{}, fmt.Errorf("get key of %s: %w", uuid, err)
	}
	return store.WrappedKey(k), nil
}
