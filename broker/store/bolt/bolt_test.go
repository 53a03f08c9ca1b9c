package bolt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/confidisk/confidisk/broker/store"
	"github.com/confidisk/confidisk/broker/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(filepath.Join(t.TempDir(), "broker.db"), 0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestReopenKeepsState(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "broker.db")
	s, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	uuid := "11111111-2222-4333-8444-555555555555"
	if err := s.RegisterVolume(ctx, store.Volume{UUID: uuid, KeyID: "aa", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.CompareAndSwapEpoch(ctx, uuid, 0, 3); err != nil {
		t.Fatal(err)
	}
	// A second opener waits for the lock and gives up.
	if _, err := Open(path, 50*time.Millisecond); err == nil {
		t.Fatal("second Open of a locked file succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if e, err := s.Epoch(ctx, uuid); err != nil || e != 3 {
		t.Fatalf("epoch after reopen = %d, %v; want 3", e, err)
	}
}

// TestOpenCompacts: a file that is mostly free pages (pruned nonces) is
// rewritten smaller on Open, and keeps its records.
func TestOpenCompacts(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "broker.db")
	s, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	uuid := "11111111-2222-4333-8444-555555555555"
	if err := s.RegisterVolume(ctx, store.Volume{UUID: uuid, KeyID: "aa", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketUsedNonces)
		for i := range 40000 {
			if err := b.Put(usedNonceKey(fmt.Appendf(nil, "nonce-%032d", i), t0), []byte{1}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneNonces(ctx, t0); err != nil || n != 40000 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	s.Close()
	before := fileSize(t, path)
	if s, err = Open(path, 0); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if after := fileSize(t, path); after*2 > before || before < compactMinBytes {
		t.Errorf("file of %d bytes is %d after Open, want it compacted to half at most", before, after)
	}
	if e, err := s.Epoch(ctx, uuid); err != nil || e != 0 {
		t.Errorf("epoch after compaction: %d, %v", e, err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
