// Command brokerload is a bounded load generator for `confidisk serve
// --verifier insecure-test` on loopback (see bench/broker.sh).
//
// One operation ("verification") is POST /v1/nonce followed by POST
// /v1/evidence with test-double evidence (brokertest.Evidence) bound to that
// nonce; with -epochs the second call is instead POST
// /v1/volumes/{uuid}/epoch advancing the epoch of a volume each worker
// registered beforehand (evidence-verified compare-and-swap). The latency of
// an operation covers both calls.
//
// It runs -n operations with -c workers and stops by itself after -t (or
// after -max-errors failed operations, or on SIGINT/SIGTERM). The
// broker's self-signed certificate is pinned (DATA/tls/server.crt or
// -cert); there is no InsecureSkipVerify. It prints one line of key=value
// (starting with "brokerload ") and a table for people, and exits 1 if any
// operation failed.
//
// The insecure-test verifier accepts forged evidence: this measures the
// broker's HTTP, TLS, nonce and store path, not real attestation. With
// -evidence FILE (written by bench/brokerevidence before the timing: real
// vTPM quotes over nonces minted from the broker's KEK, one
// api.EvidenceRequest per line) one operation is POST /v1/evidence of the
// next prepared document, checked by `confidisk serve --policy` in full.
//
// -url may list several brokers (replicas), comma-separated: the workers
// are spread over them.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/broker/client"
)

type options struct {
	url, data, cert, label string
	evidence               string
	n, c, maxErrors        int
	limit                  time.Duration
	epochs                 bool
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "", "broker base URL, e.g. https://127.0.0.1:8443 (required)")
	flag.StringVar(&o.data, "data", "", "broker data directory; the pinned certificate is DATA/tls/server.crt")
	flag.StringVar(&o.cert, "cert", "", "broker server certificate (PEM) to pin, instead of -data")
	flag.StringVar(&o.label, "label", "", "label of this run in the output (e.g. the store)")
	flag.IntVar(&o.n, "n", 2000, "number of operations")
	flag.IntVar(&o.c, "c", 8, "concurrent workers")
	flag.IntVar(&o.maxErrors, "max-errors", 100, "give up after this many failed operations")
	flag.DurationVar(&o.limit, "t", 60*time.Second, "overall time limit; the run stops by itself")
	flag.BoolVar(&o.epochs, "epochs", false, "advance the epoch of a registered volume (one per worker) instead of POST /v1/evidence")
	flag.StringVar(&o.evidence, "evidence", "", "prepared real evidence (bench/brokerevidence): POST /v1/evidence of each line")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "brokerload:", err)
		os.Exit(1)
	}
}

func (o options) check() error {
	switch {
	case flag.NArg() != 0:
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	case o.url == "":
		return errors.New("-url is required")
	case !strings.HasPrefix(o.url, "https://"):
		return fmt.Errorf("-url %q: want https://HOST:PORT", o.url)
	case (o.cert == "") == (o.data == ""):
		return errors.New("give exactly one of -data and -cert")
	case o.n < 1 || o.c < 1 || o.limit <= 0 || o.maxErrors < 1:
		return errors.New("-n, -c, -t and -max-errors must be positive")
	case o.epochs && o.evidence != "":
		return errors.New("-epochs and -evidence exclude each other")
	}
	return nil
}

// client talks to the broker.
// evidence gets a nonce and returns it with test evidence for volume.
func evidence(ctx context.Context, c *client.Client, volume, keyID string) (nonce, ev []byte, err error) {
	nr, err := c.Nonce(ctx)
	if err != nil {
		return nil, nil, err
	}
	ev, err = brokertest.Evidence{Nonce: nr.Nonce, Volume: volume, KeyID: keyID}.Marshal()
	if err != nil {
		return nil, nil, err
	}
	return nr.Nonce, ev, nil
}

// worker is one concurrent client with its own volume.
type worker struct {
	c           *client.Client
	volume, key string
	epoch       uint64
	epochs      bool
	prepared    *prepared // with -evidence
}

// prepared is the real evidence of -evidence, handed out once each.
type prepared struct {
	reqs []api.EvidenceRequest
	next atomic.Int64
}

func loadPrepared(path string) (*prepared, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := &prepared{}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r api.EvidenceRequest
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
		}
		p.reqs = append(p.reqs, r)
	}
	return p, nil
}

func newUUID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random volume uuid: %w", err)
	}
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// setup opens the worker's connection (untimed) and, for -epochs, registers
// its volume with a creation proof.
func (w *worker) setup(ctx context.Context) error {
	var err error
	if w.volume, err = newUUID(); err != nil {
		return err
	}
	w.key = strings.ReplaceAll(w.volume, "-", "")
	if w.prepared != nil {
		return w.c.Healthy(ctx)
	}
	if !w.epochs {
		// Warm the connection so the first timed operation does not pay
		// for the TLS handshake.
		_, _, err := evidence(ctx, w.c, w.volume, w.key)
		return err
	}
	nonce, ev, err := evidence(ctx, w.c, w.volume, w.key)
	if err != nil {
		return err
	}
	reg := api.RegisterRequest{Nonce: nonce, Evidence: ev, Volume: api.VolumeSpec{UUID: w.volume, KeyID: w.key}}
	if _, err := w.c.Register(ctx, reg); err != nil {
		return fmt.Errorf("register volume: %w", err)
	}
	return nil
}

// op is one timed operation.
func (w *worker) op(ctx context.Context) error {
	if w.prepared != nil {
		i := w.prepared.next.Add(1) - 1
		if int(i) >= len(w.prepared.reqs) {
			return errors.New("no prepared evidence left")
		}
		r := w.prepared.reqs[i]
		_, err := w.c.Verify(ctx, r.Nonce, r.Evidence)
		return err
	}
	nonce, ev, err := evidence(ctx, w.c, w.volume, w.key)
	if err != nil {
		return err
	}
	if !w.epochs {
		claims, err := w.c.Verify(ctx, nonce, ev)
		if err != nil {
			return err
		}
		if claims.Volume != w.volume {
			return fmt.Errorf("POST /v1/evidence: claims for volume %q, want %q", claims.Volume, w.volume)
		}
		return nil
	}
	if err := w.c.AdvanceEpoch(ctx, w.volume, nonce, ev, w.epoch, w.epoch+1); err != nil {
		return err
	}
	w.epoch++
	return nil
}

type result struct {
	lat      []time.Duration // successful operations
	errs     int
	firstErr error
	elapsed  time.Duration
	stopped  bool // the time limit ended the run
}

func run(o options) error {
	if err := o.check(); err != nil {
		return err
	}
	certFile := o.cert
	if certFile == "" {
		certFile = filepath.Join(o.data, "tls", "server.crt")
	}
	tlsCfg, err := client.TLSConfig(certFile, "", "")
	if err != nil {
		return fmt.Errorf("pin broker certificate: %w", err)
	}
	var clients []*client.Client
	for _, u := range strings.Split(o.url, ",") {
		c, err := client.New(u, client.Options{TLS: tlsCfg, Conns: o.c, Retries: -1})
		if err != nil {
			return err
		}
		defer c.Close()
		clients = append(clients, c)
	}
	var prep *prepared
	if o.evidence != "" {
		if prep, err = loadPrepared(o.evidence); err != nil {
			return err
		}
		o.n = min(o.n, len(prep.reqs))
	}

	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sigCtx, o.limit)
	defer cancel()

	workers := make([]*worker, min(o.c, o.n))
	for i := range workers {
		workers[i] = &worker{c: clients[i%len(clients)], epochs: o.epochs, prepared: prep}
	}
	// Set up concurrently so that each worker has its own connection.
	var setupErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			if err := w.setup(ctx); err != nil {
				mu.Lock()
				setupErr = errors.Join(setupErr, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if setupErr != nil {
		return fmt.Errorf("setup: %w", setupErr)
	}

	res := load(ctx, workers, o.n, o.maxErrors)
	report(os.Stdout, o, res)
	if sigCtx.Err() != nil {
		return errors.New("interrupted")
	}
	if res.errs > 0 {
		return fmt.Errorf("%d of %d operations failed; first: %w", res.errs, res.errs+len(res.lat), res.firstErr)
	}
	if res.stopped {
		return fmt.Errorf("time limit %s reached after %d of %d operations", o.limit, len(res.lat), o.n)
	}
	return nil
}

// load runs up to n operations over the workers until ctx ends or more than
// maxErrors operations failed.
func load(ctx context.Context, workers []*worker, n, maxErrors int) result {
	ctx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	var next atomic.Int64
	lats := make([][]time.Duration, len(workers))
	errs := make([]int, len(workers))
	var (
		mu       sync.Mutex
		firstErr error
		nerrs    int
		stopped  atomic.Bool
	)
	start := time.Now()
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if ctx.Err() != nil {
					stopped.Store(errors.Is(context.Cause(ctx), context.DeadlineExceeded))
					return
				}
				t0 := time.Now()
				err := w.op(ctx)
				d := time.Since(t0)
				if err == nil {
					lats[i] = append(lats[i], d)
					continue
				}
				if ctx.Err() != nil {
					// Cut off by the time limit (or given up):
					// not this operation's fault.
					stopped.Store(errors.Is(context.Cause(ctx), context.DeadlineExceeded))
					return
				}
				errs[i]++
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				if nerrs++; nerrs >= maxErrors {
					giveUp()
				}
				mu.Unlock()
				if w.epochs {
					// The epoch may or may not have moved; a
					// conflict would repeat, so stop this worker.
					return
				}
			}
		})
	}
	wg.Wait()
	r := result{elapsed: time.Since(start), firstErr: firstErr, stopped: stopped.Load()}
	for i := range workers {
		r.lat = append(r.lat, lats[i]...)
		r.errs += errs[i]
	}
	slices.Sort(r.lat)
	return r
}

// pct is the nearest-rank percentile p (0 < p <= 100) of sorted durations.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[max(0, min(k, len(sorted)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func report(w io.Writer, o options, r result) {
	mode, what := "verify", "nonce + evidence"
	switch {
	case o.epochs:
		mode, what = "epoch", "nonce + epoch advance"
	case o.evidence != "":
		mode, what = "real", "real evidence, nonce prepared"
	}
	label := o.label
	if label == "" {
		label = "-"
	}
	ok := len(r.lat)
	rate := 0.0
	if r.elapsed > 0 {
		rate = float64(ok) / r.elapsed.Seconds()
	}
	p50, p90, p99 := pct(r.lat, 50), pct(r.lat, 90), pct(r.lat, 99)
	var maxLat time.Duration
	if ok > 0 {
		maxLat = r.lat[ok-1]
	}
	fmt.Fprintf(w, "brokerload label=%s mode=%s concurrency=%d requests=%d ok=%d errors=%d stopped_by_limit=%t elapsed_s=%.3f verifications_per_s=%.1f p50_ms=%s p90_ms=%s p99_ms=%s max_ms=%s\n",
		label, mode, o.c, ok+r.errs, ok, r.errs, r.stopped, r.elapsed.Seconds(), rate, ms(p50), ms(p90), ms(p99), ms(maxLat))
	fmt.Fprintf(w, "  %s, mode %s (%s), %d workers\n", label, mode, what, o.c)
	fmt.Fprintf(w, "  %-22s %d (%d ok, %d errors)%s\n", "requests", ok+r.errs, ok, r.errs, map[bool]string{true: ", stopped by the time limit"}[r.stopped])
	fmt.Fprintf(w, "  %-22s %.3f s\n", "elapsed", r.elapsed.Seconds())
	fmt.Fprintf(w, "  %-22s %.1f\n", "verifications/s", rate)
	for _, l := range []struct {
		name string
		d    time.Duration
	}{{"latency p50", p50}, {"latency p90", p90}, {"latency p99", p99}, {"latency max", maxLat}} {
		fmt.Fprintf(w, "  %-22s %s ms\n", l.name, ms(l.d))
	}
}
