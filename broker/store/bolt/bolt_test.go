package bolt

import (
	"context"
	"path/filepath"
	"testing"
	"time"

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
