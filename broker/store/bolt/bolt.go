// Package bolt is the embedded [store.Store] of the confidisk broker: one
// bbolt file, every write committed with fsync before the call returns.
// Concurrent writes are grouped into one commit (bbolt's Batch), so one
// fsync serves every request waiting at that moment. Used nonces are keyed
// by expiry and pruned from the front; [Open] rewrites (compacts) a file
// that is mostly free pages, since bbolt never shrinks a file by itself.
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
	bucketUsedNonces = []byte("used-nonces")
	bucketVolumes    = []byte("volumes")
	bucketEpochs     = []byte("epochs")
	bucketKeys       = []byte("keys")
	// bucketOldNonces held issued nonces before they became stateless;
	// Open deletes it.
	bucketOldNonces = []byte("nonces")
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
		if tx.Bucket(bucketOldNonces) != nil {
			if err := tx.DeleteBucket(bucketOldNonces); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketUsedNonces, bucketVolumes, bucketEpochs, bucketKeys} {
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
	if db, err = compactIfSparse(db, path, lockTimeout); err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	db.MaxBatchDelay = batchDelay
	return &Store{db: db}, nil
}

// compactMinBytes is the smallest file [Open] compacts.
const compactMinBytes = 1 << 20

// compactIfSparse rewrites the file when at least half of it is free pages
// (pruned nonces): bbolt reuses free pages but never shrinks the file. The
// copy is written next to it, synced, and renamed over it.
func compactIfSparse(db *bbolt.DB, path string, lockTimeout time.Duration) (*bbolt.DB, error) {
	st, err := os.Stat(path)
	if err != nil {
		db.Close()
		return nil, err
	}
	stats := db.Stats()
	free := int64(stats.FreePageN+stats.PendingPageN) * int64(db.Info().PageSize)
	if st.Size() < compactMinBytes || 2*free < st.Size() {
		return db, nil
	}
	tmp := path + ".compact"
	err = compactTo(db, tmp)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("compact: %w", err)
	}
	return bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout})
}

func compactTo(src *bbolt.DB, tmp string) error {
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	dst, err := bbolt.Open(tmp, 0o600, nil)
	if err != nil {
		return err
	}
	err = bbolt.Compact(dst, src, 64<<20)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// batchDelay is how long a write waits for others to share its commit.
const batchDelay = 2 * time.Millisecond

// batch runs fn in a grouped write transaction. fn returns a refusal (a
// store error such as ErrVolumeExists, after writing nothing) or a failure;
// a refusal does not roll back the other writes of the batch.
func (s *Store) batch(fn func(tx *bbolt.Tx) (refusal, err error)) error {
	var refusal error
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		var err error
		refusal, err = fn(tx)
		return err
	})
	if err != nil {
		return err
	}
	return refusal
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// usedNonceKey orders used nonces by expiry: 8 bytes of Unix nanoseconds
// (big endian), then the nonce; pruning walks from the first key.
func usedNonceKey(nonce []byte, expires time.Time) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(expires.UnixNano())), nonce...)
}

// ConsumeNonce implements [store.Store].
func (s *Store) ConsumeNonce(_ context.Context, nonce []byte, expires time.Time) error {
	k := usedNonceKey(nonce, expires)
	err := s.batch(func(tx *bbolt.Tx) (error, error) {
		b := tx.Bucket(bucketUsedNonces)
		if b.Get(k) != nil {
			return store.ErrNonceUsed, nil
		}
		return nil, b.Put(k, []byte{1})
	})
	if err != nil {
		return fmt.Errorf("consume nonce: %w", err)
	}
	return nil
}

// PruneNonces implements [store.Store].
func (s *Store) PruneNonces(_ context.Context, now time.Time) (int, error) {
	limit := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	n := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketUsedNonces).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:min(8, len(k))], limit) <= 0; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
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
	err = s.batch(func(tx *bbolt.Tx) (error, error) {
		vb := tx.Bucket(bucketVolumes)
		if vb.Get([]byte(v.UUID)) != nil {
			return store.ErrVolumeExists, nil
		}
		if err := vb.Put([]byte(v.UUID), rec); err != nil {
			return nil, err
		}
		return nil, tx.Bucket(bucketEpochs).Put([]byte(v.UUID), encodeEpoch(0))
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
// so the read and the write happen in one exclusive transaction (shared
// with other writes of the same batch, which run one after another in it).
func (s *Store) CompareAndSwapEpoch(_ context.Context, uuid string, old, new uint64) error {
	if err := store.CheckAdvance(old, new); err != nil {
		return err
	}
	err := s.batch(func(tx *bbolt.Tx) (error, error) { return swapEpoch(tx, uuid, old, new) })
	if err != nil {
		return fmt.Errorf("advance epoch of %s: %w", uuid, err)
	}
	return nil
}

// swapEpoch is the compare-and-swap inside a write transaction.
func swapEpoch(tx *bbolt.Tx, uuid string, old, new uint64) (refusal, err error) {
	b := tx.Bucket(bucketEpochs)
	rec := b.Get([]byte(uuid))
	if rec == nil {
		return store.ErrVolumeNotFound, nil
	}
	cur, err := decodeEpoch(rec)
	if err != nil {
		return nil, err
	}
	if cur != old {
		return &store.EpochConflictError{Current: cur}, nil
	}
	return nil, b.Put([]byte(uuid), encodeEpoch(new))
}

// ConsumeNonceAndAdvance implements [store.Store]: one transaction (and
// one commit, shared with the batch).
func (s *Store) ConsumeNonceAndAdvance(_ context.Context, nonce []byte, expires time.Time, uuid string, old, new uint64) error {
	if err := store.CheckAdvance(old, new); err != nil {
		return err
	}
	k := usedNonceKey(nonce, expires)
	err := s.batch(func(tx *bbolt.Tx) (error, error) {
		b := tx.Bucket(bucketUsedNonces)
		if b.Get(k) != nil {
			return store.ErrNonceUsed, nil
		}
		if err := b.Put(k, []byte{1}); err != nil {
			return nil, err
		}
		return swapEpoch(tx, uuid, old, new)
	})
	if err != nil {
		return fmt.Errorf("consume nonce and advance epoch of %s: %w", uuid, err)
	}
	return nil
}

type keyRecord struct {
	KeyID     string          `json:"key_id"`
	Sealed    []byte          `json:"sealed"`
	Require   json.RawMessage `json:"require,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

// PutKey implements [store.Store].
func (s *Store) PutKey(_ context.Context, uuid string, k store.WrappedKey) error {
	k.CreatedAt = k.CreatedAt.UTC().Truncate(time.Microsecond)
	rec, err := json.Marshal(keyRecord(k))
	if err != nil {
		return fmt.Errorf("put key of %s: %w", uuid, err)
	}
	err = s.batch(func(tx *bbolt.Tx) (error, error) {
		if tx.Bucket(bucketVolumes).Get([]byte(uuid)) == nil {
			return store.ErrVolumeNotFound, nil
		}
		return nil, tx.Bucket(bucketKeys).Put([]byte(uuid), rec)
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
