//go:build linux

package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confidisk/confidisk/broker/store"
	"github.com/confidisk/confidisk/broker/store/pgtest"
	"github.com/confidisk/confidisk/broker/store/storetest"
)

func TestConformance(t *testing.T) {
	c := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(context.Background(), c.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestReplicas opens several stores on one database at once, as replicas
// starting together do, and checks they share state.
func TestReplicas(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Start(t).NewDatabase(t)
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(ctx, url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	if err := stores[1].ConsumeNonce(ctx, []byte("n"), t0()); err != nil {
		t.Fatalf("consume on one replica: %v", err)
	}
	if err := stores[2].ConsumeNonce(ctx, []byte("n"), t0()); !errors.Is(err, store.ErrNonceUsed) {
		t.Fatalf("replay on another replica: %v, want ErrNonceUsed", err)
	}
}

func t0() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }

// TestUpgradeAddsRequire opens a database whose confidisk_keys predates the
// require column, as a replica of the previous version left it: Open adds
// the column, the old key reads back without a requirement, and a new put
// keeps one.
func TestUpgradeAddsRequire(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Start(t).NewDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const uuid = "11111111-2222-4333-8444-555555555555"
	_, err = conn.Exec(ctx, `
		CREATE TABLE confidisk_volumes (uuid TEXT PRIMARY KEY, key_id TEXT NOT NULL, measurements BYTEA,
			created_at TIMESTAMPTZ NOT NULL, epoch BIGINT NOT NULL DEFAULT 0 CHECK (epoch >= 0));
		CREATE TABLE confidisk_keys (uuid TEXT PRIMARY KEY REFERENCES confidisk_volumes (uuid),
			key_id TEXT NOT NULL, sealed BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL);
		INSERT INTO confidisk_volumes (uuid, key_id, created_at) VALUES ('`+uuid+`', 'aa', now());
		INSERT INTO confidisk_keys (uuid, key_id, sealed, created_at) VALUES ('`+uuid+`', 'aa', '\x0102', now());`)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, err := s.Key(ctx, uuid)
	if err != nil || k.KeyID != "aa" || k.Require != nil {
		t.Fatalf("key written before the upgrade: %+v %v, want key id aa and no requirement", k, err)
	}
	k.Require = json.RawMessage(`{"ak":"cd"}`)
	if err := s.PutKey(ctx, uuid, k); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Key(ctx, uuid); err != nil || string(got.Require) != `{"ak":"cd"}` {
		t.Fatalf("key put after the upgrade: %+v %v", got, err)
	}
}
