//go:build linux

package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

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
