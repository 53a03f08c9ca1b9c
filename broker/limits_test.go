package broker_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/brokertest"
)

// answer is what a request got: status, error code and Retry-After.
type answer struct {
	Code       int
	Err        string
	RetryAfter string
}

func (e *env) answer(t *testing.T, c *http.Client, method, path string) answer {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	a := answer{Code: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode == http.StatusTooManyRequests {
		a.Err = "429"
	}
	return a
}

// TestRateLimit: a client address gets its burst, then 429 with
// Retry-After until its bucket refills; operators and /healthz pass.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.RateLimit, c.RateBurst = 1, 2 })
	ok := answer{Code: 200}
	limited := answer{Code: 429, Err: "429", RetryAfter: "1"}
	tests := []struct {
		name    string
		client  *http.Client
		method  string
		path    string
		advance time.Duration
		want    answer
	}{
		{"first", e.guest, "POST", "/v1/nonce", 0, ok},
		{"second", e.guest, "POST", "/v1/nonce", 0, ok},
		{"over the burst", e.guest, "POST", "/v1/nonce", 0, limited},
		{"epoch read too", e.guest, "GET", "/v1/volumes/" + volA + "/epoch", 0, limited},
		{"health passes", e.guest, "GET", "/healthz", 0, ok},
		{"operator passes", e.operator, "POST", "/v1/nonce", 0, ok},
		{"refilled", e.guest, "POST", "/v1/nonce", time.Second, ok},
		{"empty again", e.guest, "POST", "/v1/nonce", 0, limited},
	}
	for _, tc := range tests {
		e.clock.Add(tc.advance)
		if d := cmp.Diff(tc.want, e.answer(t, tc.client, tc.method, tc.path)); d != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.name, d)
		}
	}
}

// blockingVerifier holds every verification until release is closed.
type blockingVerifier struct {
	entered chan struct{}
	release chan struct{}
}

func (v blockingVerifier) Verify(ctx context.Context, ev, nonce []byte) (*api.Claims, error) {
	v.entered <- struct{}{}
	<-v.release
	return brokertest.Verifier{}.Verify(ctx, ev, nonce)
}

// TestInFlightCap: with MaxInFlight requests being answered, the next one
// is 429 "busy" with Retry-After; once they finish, requests pass again.
func TestInFlightCap(t *testing.T) {
	v := blockingVerifier{entered: make(chan struct{}, 1), release: make(chan struct{})}
	e := newEnv(t, func(c *broker.Config) { c.MaxInFlight, c.Verifier = 1, v })
	n, ev := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	done := make(chan int, 1)
	go func() {
		code, _ := e.do(t, e.guest, "POST", "/v1/evidence", api.EvidenceRequest{Nonce: n, Evidence: ev}, nil)
		done <- code
	}()
	<-v.entered
	if d := cmp.Diff(answer{Code: 429, Err: "429", RetryAfter: "1"}, e.answer(t, e.guest, "POST", "/v1/nonce")); d != "" {
		t.Errorf("while one is in flight (-want +got):\n%s", d)
	}
	if code, ae := e.do(t, e.guest, "POST", "/v1/nonce", nil, nil); code != 429 || ae.Code != "busy" {
		t.Errorf("while one is in flight: %d %+v, want 429 busy", code, ae)
	}
	close(v.release)
	if code := <-done; code != 200 {
		t.Errorf("the request in flight: %d", code)
	}
	if a := e.answer(t, e.guest, "POST", "/v1/nonce"); a.Code != 200 {
		t.Errorf("after it finished: %+v", a)
	}
}

// TestLimitListener: a second connection is not accepted while the first
// is open, and is once it closes.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := broker.LimitListener(inner, 1)
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	select {
	case <-accepted:
		t.Fatal("a second connection was accepted while the first is open")
	case <-time.After(100 * time.Millisecond):
	}
	first.Close()
	if c := <-accepted; c == nil {
		t.Fatal("the second connection was not accepted after the first closed")
	} else {
		c.Close()
	}
	ln.Close()
	for range accepted {
	}
}

// TestMintNonce: a nonce minted offline from the KEK is accepted once.
func TestMintNonce(t *testing.T) {
	kek := make([]byte, 32)
	e := newEnv(t, func(c *broker.Config) { c.KEK = kek })
	n, err := broker.MintNonce(kek, e.clock.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := brokertest.Evidence{Nonce: n, Volume: volA, KeyID: kid}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"", "nonce_used"} {
		if code, ae := e.do(t, e.guest, "POST", "/v1/evidence", api.EvidenceRequest{Nonce: n, Evidence: ev}, nil); ae.Code != want {
			t.Errorf("use %d: %d %+v, want %q", i, code, ae, want)
		}
	}
	if _, err := broker.MintNonce(kek[:5], time.Now()); err == nil {
		t.Error("MintNonce with a short KEK succeeded")
	}
}

// TestAdvanceReplay: an epoch advance consumes its nonce in the same commit
// as the swap: replaying it is nonce_used and changes nothing, and a
// conflict consumes it too.
func TestAdvanceReplay(t *testing.T) {
	e := newEnv(t, nil)
	e.register(t, volA)
	n, ev := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	n2, ev2 := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	tests := []struct {
		name     string
		nonce    []byte
		ev       []byte
		old, new uint64
		want     string
		epoch    uint64
	}{
		{"advance", n, ev, 0, 1, "", 1},
		{"replay", n, ev, 1, 2, "nonce_used", 1},
		{"conflict", n2, ev2, 0, 5, "epoch_conflict", 1},
		{"after a conflict the nonce is used", n2, ev2, 1, 2, "nonce_used", 1},
	}
	for _, tc := range tests {
		_, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+volA+"/epoch", api.AdvanceEpochRequest{Nonce: tc.nonce, Evidence: tc.ev, Old: tc.old, New: tc.new}, nil)
		var ep api.Epoch
		e.do(t, e.guest, "GET", "/v1/volumes/"+volA+"/epoch", nil, &ep)
		if d := cmp.Diff([2]any{tc.want, tc.epoch}, [2]any{ae.Code, ep.Epoch}); d != "" {
			t.Errorf("%s: code, epoch (-want +got):\n%s", tc.name, d)
		}
	}
}
