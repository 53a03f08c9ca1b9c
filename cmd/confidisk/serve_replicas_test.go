//go:build linux && !confidisk_guest

package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/broker/store/pgtest"
)

// replicas are `confidisk serve` processes on one PostgreSQL database, each
// with its own data directory holding copies of the first one's
// certificates and key-encryption key (as a deployment shares them).
type replicas struct {
	t       *testing.T
	bin     string
	env     []string
	data    []string
	args    [][]string
	procs   []*serveProc
	clients []*client.Client
}

func startReplicas(t *testing.T, n int) *replicas {
	url := pgtest.Start(t).NewDatabase(t)
	r := &replicas{t: t, bin: buildServeBinary(t), env: []string{insecureTestEnv + "=1"}}
	for i := range n {
		d := t.TempDir()
		if i > 0 {
			copyTree(t, r.data[0], d, "tls", "kek")
		}
		r.data = append(r.data, d)
		r.args = append(r.args, []string{"--listen", "127.0.0.1:0", "--data", d, "--store", "postgres",
			"--postgres-url", url, "--verifier", "insecure-test", "--rate-limit", "0"})
		r.procs = append(r.procs, nil)
		r.clients = append(r.clients, nil)
		r.start(i)
	}
	return r
}

// start (re)starts replica i and connects its client.
func (r *replicas) start(i int) {
	r.procs[i] = startServe(r.t, r.bin, r.env, r.args[i]...)
	r.clients[i] = serveClient(r.t, r.data[i], r.procs[i].url)
}

// copyTree copies the named files and directories of src into dst.
func copyTree(t *testing.T, src, dst string, names ...string) {
	t.Helper()
	for _, name := range names {
		err := filepath.Walk(filepath.Join(src, name), func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			if fi.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o700)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, rel), b, fi.Mode().Perm())
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestServeReplicasPostgres runs three `confidisk serve` on one real
// PostgreSQL: a nonce one replica issued is accepted exactly once by any
// replica (also when racing); then clients spread over the replicas storm
// one volume's epoch with compare-and-swaps while one replica is killed
// with SIGKILL, and every answer is checked against the final epoch.
func TestServeReplicasPostgres(t *testing.T) {
	const vol = "11111111-2222-4333-8444-555555555555"
	r := startReplicas(t, 3)
	ctx := context.Background()
	n, ev, err := evidenceFor(ctx, r.clients[0], vol)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.clients[1].Register(ctx, api.RegisterRequest{Nonce: n, Evidence: ev, Volume: api.VolumeSpec{UUID: vol, KeyID: "abcd"}}); err != nil {
		t.Fatalf("register on replica 1 with a nonce of replica 0: %v", err)
	}
	checkNonceOnce(t, r.clients, vol)
	checkNonceRace(t, r.clients, vol)

	outcomes := epochStorm(t, r, vol, 1)
	r.start(1)
	final := make([]uint64, len(r.clients))
	for i, c := range r.clients {
		if final[i], err = c.Epoch(ctx, vol); err != nil {
			t.Fatalf("epoch on replica %d: %v", i, err)
		}
	}
	if final[0] != final[1] || final[1] != final[2] {
		t.Fatalf("replicas disagree on the epoch: %v", final)
	}
	checkStorm(t, outcomes, final[0])
	checkNonceOnce(t, []*client.Client{r.clients[2], r.clients[1], r.clients[0]}, vol)
}

// checkNonceOnce issues a nonce on cs[0] and presents it to every replica
// in turn: the first accepts, the others answer nonce_used.
func checkNonceOnce(t *testing.T, cs []*client.Client, vol string) {
	t.Helper()
	ctx := context.Background()
	n, ev, err := evidenceFor(ctx, cs[0], vol)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cs {
		_, err := cs[(i+1)%len(cs)].Verify(ctx, n, ev)
		switch {
		case i == 0 && err != nil:
			t.Fatalf("nonce of one replica on another: %v", err)
		case i > 0 && !client.IsCode(err, "nonce_used"):
			t.Fatalf("replay %d on another replica: %v, want nonce_used", i, err)
		}
	}
}

// checkNonceRace presents one nonce to every replica at once, a few times
// per replica: exactly one is accepted.
func checkNonceRace(t *testing.T, cs []*client.Client, vol string) {
	t.Helper()
	ctx := context.Background()
	for round := range 5 {
		n, ev, err := evidenceFor(ctx, cs[round%len(cs)], vol)
		if err != nil {
			t.Fatal(err)
		}
		var ok, used atomic.Int32
		var wg sync.WaitGroup
		for i := range 3 * len(cs) {
			wg.Go(func() {
				_, err := cs[i%len(cs)].Verify(ctx, n, ev)
				switch {
				case err == nil:
					ok.Add(1)
				case client.IsCode(err, "nonce_used"):
					used.Add(1)
				default:
					t.Errorf("racing nonce: %v", err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != 1 {
			t.Fatalf("round %d: one nonce accepted %d times over %d replicas, want once", round, ok.Load(), len(cs))
		}
	}
}

// casOutcome is what a client was told about one compare-and-swap old→old+1.
type casOutcome struct {
	old     uint64
	result  string  // "won", "lost" (epoch_conflict) or "retry" (no answer, 5xx)
	current *uint64 // with "lost"
	err     error
	// afterKill: the attempt started after the replica was killed.
	afterKill bool
}

// epochStorm runs workers that each read the epoch, get a nonce and try to
// advance it by one, on the replicas in turn, a bounded number of times;
// after some advances replica kill is killed with SIGKILL.
func epochStorm(t *testing.T, r *replicas, vol string, kill int) []casOutcome {
	const workers, attempts, killAfter = 9, 30, 40
	var won atomic.Int32
	var isKilled atomic.Bool
	var mu sync.Mutex
	var out []casOutcome
	killed, stormDone := make(chan bool, 1), make(chan struct{})
	go func() {
		for won.Load() < killAfter {
			select {
			case <-stormDone:
				killed <- false
				return
			case <-time.After(time.Millisecond):
			}
		}
		r.procs[kill].cmd.Process.Signal(syscall.SIGKILL)
		r.procs[kill].wait()
		isKilled.Store(true)
		killed <- true
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for a := range attempts {
				after := isKilled.Load()
				o, ok := casAttempt(r.clients[(w+a)%len(r.clients)], vol)
				o.afterKill = after
				if !ok {
					continue
				}
				if o.result == "won" {
					won.Add(1)
				}
				mu.Lock()
				out = append(out, o)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stormDone)
	if !<-killed {
		t.Fatalf("only %d advances won in the storm, want %d before the kill", won.Load(), killAfter)
	}
	return out
}

// casAttempt reads the epoch and tries old→old+1; ok is false when it did
// not get as far as asking (the replica was down for the read or nonce).
func casAttempt(c *client.Client, vol string) (casOutcome, bool) {
	ctx := context.Background()
	old, err := c.Epoch(ctx, vol)
	if err != nil {
		return casOutcome{}, false
	}
	n, ev, err := evidenceFor(ctx, c, vol)
	if err != nil {
		return casOutcome{}, false
	}
	o := casOutcome{old: old}
	err = c.AdvanceEpoch(ctx, vol, n, ev, old, old+1)
	var ce *client.Error
	switch {
	case err == nil:
		o.result = "won"
	case errors.As(err, &ce) && ce.Code == "epoch_conflict" && ce.Current != nil:
		o.result, o.current = "lost", ce.Current
	case errors.As(err, &ce) && ce.Status < 500:
		o.result, o.err = "refused", err
	default:
		o.result, o.err = "retry", err
	}
	return o, true
}

// checkStorm checks the outcomes against the final epoch: every step
// 0→1→…→final was won by exactly one client, or (with no winner) was in
// flight with a client told to retry; nobody won a step beyond final; every
// loser was told an epoch other than its old one and at most final.
func checkStorm(t *testing.T, outcomes []casOutcome, final uint64) {
	t.Helper()
	won := map[uint64]int{}
	retry := map[uint64]int{}
	counts := map[string]int{}
	for _, o := range outcomes {
		counts[o.result]++
		if o.afterKill && o.result == "won" {
			counts["won after the kill"]++
		}
		switch o.result {
		case "won":
			won[o.old]++
			if o.old >= final {
				t.Errorf("a client was told it advanced %d→%d, but the epoch is %d (lost advance)", o.old, o.old+1, final)
			}
		case "lost":
			if *o.current == o.old || *o.current > final {
				t.Errorf("a client lost %d→%d told the epoch is %d (final %d)", o.old, o.old+1, *o.current, final)
			}
		case "retry":
			retry[o.old]++
		default:
			t.Errorf("advance %d→%d refused: %v", o.old, o.old+1, o.err)
		}
	}
	for k := range final {
		switch {
		case won[k] > 1:
			t.Errorf("%d clients were told they advanced %d→%d (duplicated advance)", won[k], k, k+1)
		case won[k] == 0 && retry[k] == 0:
			t.Errorf("the epoch went %d→%d but no client won or was told to retry it", k, k+1)
		}
	}
	if counts["won after the kill"] == 0 {
		t.Error("no advance won after the kill: the other replicas did not carry on")
	}
	t.Logf("final epoch %d; outcomes %v", final, counts)
}
