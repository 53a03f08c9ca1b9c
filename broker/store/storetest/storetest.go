// Package storetest is the conformance suite every [store.Store]
// implementation passes: the same tests run against store/bolt and
// store/postgres.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/broker/store"
)

// Run runs the suite. newStore returns an empty store; the suite closes it.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	open := func(t *testing.T) store.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return s
	}
	t.Run("Nonces", func(t *testing.T) { testNonces(t, open(t)) })
	t.Run("NonceConsumedOnce", func(t *testing.T) { testNonceConsumedOnce(t, open(t)) })
	t.Run("PruneNonces", func(t *testing.T) { testPruneNonces(t, open(t)) })
	t.Run("Volumes", func(t *testing.T) { testVolumes(t, open(t)) })
	t.Run("Epochs", func(t *testing.T) { testEpochs(t, open(t)) })
	t.Run("EpochConcurrentAdvances", func(t *testing.T) { testEpochConcurrent(t, open(t)) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, open(t)) })
	t.Run("ConsumeNonceAndAdvance", func(t *testing.T) { testNonceAndAdvance(t, open(t)) })
	t.Run("ConsumeNonceAndAdvanceRace", func(t *testing.T) { testNonceAndAdvanceRace(t, open(t)) })
}

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 123456000, time.UTC)

func volume(uuid string) store.Volume {
	return store.Volume{
		UUID:         uuid,
		KeyID:        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Measurements: json.RawMessage(`{"pcr15":"00ff","snp":{"measurement":"abcd"}}`),
		Recovery:     json.RawMessage(`{"type":"confidisk-recovery","keyslots":["0"]}`),
		CreatedAt:    t0,
	}
}

const (
	uuidA = "11111111-2222-4333-8444-555555555555"
	uuidB = "22222222-2222-4333-8444-555555555555"
	uuidC = "33333333-2222-4333-8444-555555555555"
)

func errIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func testNonces(t *testing.T, s store.Store) {
	ctx := context.Background()
	exp := t0.Add(time.Minute)
	tests := []struct {
		name  string
		nonce string
		want  error
	}{
		{"fresh", "n1", nil},
		{"replay", "n1", store.ErrNonceUsed},
		{"replay again", "n1", store.ErrNonceUsed},
		{"another", "n2", nil},
		{"prefix of another", "n", nil},
		{"extension of another", "n22", nil},
	}
	for _, tc := range tests {
		errIs(t, tc.name, s.ConsumeNonce(ctx, []byte(tc.nonce), exp), tc.want)
	}
}

func testNonceConsumedOnce(t *testing.T, s store.Store) {
	ctx := context.Background()
	const rounds, racers = 5, 8
	for r := range rounds {
		nonce := []byte(fmt.Sprintf("race-%d", r))
		exp := time.Now().Add(time.Minute)
		var wg sync.WaitGroup
		errs := make([]error, racers)
		for i := range racers {
			wg.Go(func() { errs[i] = s.ConsumeNonce(ctx, nonce, exp) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, store.ErrNonceUsed):
				t.Fatalf("racing consume: %v, want success or ErrNonceUsed", err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d of %d racing consumes succeeded, want exactly 1", r, ok, racers)
		}
	}
}

func testPruneNonces(t *testing.T, s store.Store) {
	ctx := context.Background()
	used := []struct {
		nonce string
		exp   time.Time
	}{
		{"old", t0.Add(-time.Minute)},
		{"at-now", t0},
		{"fresh", t0.Add(time.Microsecond)},
		{"later", t0.Add(time.Hour)},
	}
	for _, u := range used {
		errIs(t, "consume "+u.nonce, s.ConsumeNonce(ctx, []byte(u.nonce), u.exp), nil)
	}
	n, err := s.PruneNonces(ctx, t0)
	errIs(t, "prune", err, nil)
	if n != 2 {
		t.Errorf("pruned %d nonces, want 2 (expired at or before now)", n)
	}
	errIs(t, "replay fresh", s.ConsumeNonce(ctx, []byte("fresh"), t0.Add(time.Microsecond)), store.ErrNonceUsed)
	errIs(t, "replay later", s.ConsumeNonce(ctx, []byte("later"), t0.Add(time.Hour)), store.ErrNonceUsed)
	n, err = s.PruneNonces(ctx, t0.Add(2*time.Hour))
	errIs(t, "prune all", err, nil)
	if n != 2 {
		t.Errorf("pruned %d nonces later, want 2", n)
	}
	n, err = s.PruneNonces(ctx, t0.Add(2*time.Hour))
	errIs(t, "prune again", err, nil)
	if n != 0 {
		t.Errorf("pruned %d nonces from an empty store, want 0", n)
	}
}

func testVolumes(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.Volume(ctx, uuidA)
	errIs(t, "get unknown", err, store.ErrVolumeNotFound)
	list, err := s.Volumes(ctx)
	errIs(t, "list empty", err, nil)
	if len(list) != 0 {
		t.Fatalf("empty store lists %d volumes", len(list))
	}
	noMeas := volume(uuidA)
	noMeas.Measurements = nil
	for _, v := range []store.Volume{volume(uuidC), noMeas, volume(uuidB)} {
		errIs(t, "register "+v.UUID, s.RegisterVolume(ctx, v), nil)
	}
	dup := volume(uuidB)
	dup.KeyID = "ff"
	errIs(t, "register duplicate", s.RegisterVolume(ctx, dup), store.ErrVolumeExists)
	got, err := s.Volume(ctx, uuidB)
	errIs(t, "get", err, nil)
	if d := cmp.Diff(volume(uuidB), got); d != "" {
		t.Errorf("volume (-want +got):\n%s", d)
	}
	list, err = s.Volumes(ctx)
	errIs(t, "list", err, nil)
	if d := cmp.Diff([]store.Volume{noMeas, volume(uuidB), volume(uuidC)}, list); d != "" {
		t.Errorf("volumes (-want +got):\n%s", d)
	}
}

func testEpochs(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.Epoch(ctx, uuidA)
	errIs(t, "epoch of unknown volume", err, store.ErrVolumeNotFound)
	errIs(t, "advance unknown volume", s.CompareAndSwapEpoch(ctx, uuidA, 0, 1), store.ErrVolumeNotFound)
	errIs(t, "register", s.RegisterVolume(ctx, volume(uuidA)), nil)
	errIs(t, "register B", s.RegisterVolume(ctx, volume(uuidB)), nil)
	tests := []struct {
		name     string
		old, new uint64
		want     error
		conflict uint64 // the current value reported with ErrEpochConflict
		after    uint64
	}{
		{name: "first advance", old: 0, new: 1, after: 1},
		{name: "stale old", old: 0, new: 1, want: store.ErrEpochConflict, conflict: 1, after: 1},
		{name: "old ahead", old: 7, new: 8, want: store.ErrEpochConflict, conflict: 1, after: 1},
		{name: "not increasing", old: 1, new: 1, want: store.ErrEpochNotIncreasing, after: 1},
		{name: "backwards", old: 1, new: 0, want: store.ErrEpochNotIncreasing, after: 1},
		{name: "jump ahead", old: 1, new: 10, after: 10},
		{name: "above MaxEpoch", old: 10, new: store.MaxEpoch + 1, want: store.ErrEpochNotIncreasing, after: 10},
		{name: "to MaxEpoch", old: 10, new: store.MaxEpoch, after: store.MaxEpoch},
		{name: "past MaxEpoch", old: store.MaxEpoch, new: store.MaxEpoch + 1, want: store.ErrEpochNotIncreasing, after: store.MaxEpoch},
	}
	for _, tc := range tests {
		err := s.CompareAndSwapEpoch(ctx, uuidA, tc.old, tc.new)
		errIs(t, tc.name, err, tc.want)
		if tc.want == store.ErrEpochConflict {
			var ce *store.EpochConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("%s: %v is not an *EpochConflictError", tc.name, err)
			}
			if ce.Current != tc.conflict {
				t.Errorf("%s: conflict reports current %d, want %d", tc.name, ce.Current, tc.conflict)
			}
		}
		got, err := s.Epoch(ctx, uuidA)
		errIs(t, tc.name+": epoch", err, nil)
		if got != tc.after {
			t.Errorf("%s: epoch %d, want %d", tc.name, got, tc.after)
		}
	}
	if got, err := s.Epoch(ctx, uuidB); err != nil || got != 0 {
		t.Errorf("other volume's epoch = %d, %v; want 0 (untouched)", got, err)
	}
}

// testEpochConcurrent races clients that each read the epoch and advance it
// by one: every success must be counted exactly once in the final value.
func testEpochConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	errIs(t, "register", s.RegisterVolume(ctx, volume(uuidA)), nil)
	const clients, attempts = 6, 40
	var wg sync.WaitGroup
	wins := make([]int, clients)
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			for range attempts {
				cur, err := s.Epoch(ctx, uuidA)
				if err != nil {
					errs <- err
					return
				}
				err = s.CompareAndSwapEpoch(ctx, uuidA, cur, cur+1)
				switch {
				case err == nil:
					wins[c]++
				case !errors.Is(err, store.ErrEpochConflict):
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent advance: %v", err)
	}
	total := 0
	for _, w := range wins {
		total += w
	}
	got, err := s.Epoch(ctx, uuidA)
	errIs(t, "epoch", err, nil)
	if got != uint64(total) {
		t.Fatalf("epoch %d after %d successful advances", got, total)
	}
	if total == 0 {
		t.Fatal("no advance succeeded")
	}
}

func testKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	k1 := store.WrappedKey{KeyID: "aa", Sealed: []byte{1, 2, 3, 0, 255}, CreatedAt: t0}
	errIs(t, "put for unknown volume", s.PutKey(ctx, uuidA, k1), store.ErrVolumeNotFound)
	errIs(t, "register", s.RegisterVolume(ctx, volume(uuidA)), nil)
	_, err := s.Key(ctx, uuidA)
	errIs(t, "get missing", err, store.ErrKeyNotFound)
	// Each put replaces the whole key, its requirement too: a key put
	// without one after a key with one requires nothing, and reads back nil.
	require := json.RawMessage(`{"pcrs":{"7":"00ff","11":"ab"},"ak":"cd","tee":"sev-snp:verified"}`)
	for _, tc := range []struct {
		name string
		put  store.WrappedKey
		want store.WrappedKey
	}{
		{"put", k1, k1},
		{"replace with a requirement", store.WrappedKey{KeyID: "bb", Sealed: []byte{9}, Require: require, CreatedAt: t0.Add(time.Hour)},
			store.WrappedKey{KeyID: "bb", Sealed: []byte{9}, Require: require, CreatedAt: t0.Add(time.Hour)}},
		{"replace without", k1, k1},
		{"empty requirement", store.WrappedKey{KeyID: "cc", Sealed: []byte{7}, Require: json.RawMessage{}, CreatedAt: t0},
			store.WrappedKey{KeyID: "cc", Sealed: []byte{7}, CreatedAt: t0}},
	} {
		errIs(t, tc.name, s.PutKey(ctx, uuidA, tc.put), nil)
		got, err := s.Key(ctx, uuidA)
		errIs(t, tc.name+": get", err, nil)
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: key (-want +got):\n%s", tc.name, d)
		}
	}
}

func testNonceAndAdvance(t *testing.T, s store.Store) {
	ctx := context.Background()
	errIs(t, "register", s.RegisterVolume(ctx, volume(uuidA)), nil)
	exp := t0.Add(time.Minute)
	tests := []struct {
		name     string
		nonce    string
		uuid     string
		old, new uint64
		want     error
		epoch    uint64 // of uuidA afterwards
		used     bool   // the nonce is consumed afterwards
	}{
		{"fresh", "a1", uuidA, 0, 2, nil, 2, true},
		{"replayed nonce", "a1", uuidA, 2, 3, store.ErrNonceUsed, 2, true},
		{"conflict consumes the nonce", "a2", uuidA, 0, 5, store.ErrEpochConflict, 2, true},
		{"unknown volume consumes the nonce", "a3", uuidB, 0, 1, store.ErrVolumeNotFound, 2, true},
		{"not increasing consumes nothing", "a4", uuidA, 2, 2, store.ErrEpochNotIncreasing, 2, false},
		{"next", "a5", uuidA, 2, 3, nil, 3, true},
	}
	for _, tc := range tests {
		err := s.ConsumeNonceAndAdvance(ctx, []byte(tc.nonce), exp, tc.uuid, tc.old, tc.new)
		errIs(t, tc.name, err, tc.want)
		e, err := s.Epoch(ctx, uuidA)
		errIs(t, tc.name+": epoch", err, nil)
		used := errors.Is(s.ConsumeNonce(ctx, []byte(tc.nonce), exp), store.ErrNonceUsed)
		if d := cmp.Diff([2]any{tc.epoch, tc.used}, [2]any{e, used}); d != "" {
			t.Errorf("%s: epoch, nonce used (-want +got):\n%s", tc.name, d)
		}
	}
	var ce *store.EpochConflictError
	if err := s.ConsumeNonceAndAdvance(ctx, []byte("a6"), exp, uuidA, 1, 4); !errors.As(err, &ce) || ce.Current != 3 {
		t.Errorf("conflict: %v, want the current epoch 3", err)
	}
}

func testNonceAndAdvanceRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	errIs(t, "register", s.RegisterVolume(ctx, volume(uuidC)), nil)
	const racers = 8
	exp := time.Now().Add(time.Minute)
	for round := range uint64(5) {
		var wg sync.WaitGroup
		errs := make([]error, racers)
		for i := range racers {
			wg.Go(func() {
				errs[i] = s.ConsumeNonceAndAdvance(ctx, []byte(fmt.Sprintf("r%d-%d", round, i)), exp, uuidC, round, round+1)
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, store.ErrEpochConflict):
				t.Fatalf("racing advance: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of %d racing advances won, want 1", round, won, racers)
		}
	}
}
