package client_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/broker/client"
)

const (
	volume = "0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90"
	keyID  = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed"
)

func start(t *testing.T) (*brokertest.Local, *client.Client) {
	t.Helper()
	l, err := brokertest.StartLocal(t.TempDir(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("broker: %v", err)
		}
	})
	cfg, err := client.TLSConfig(l.TLS.ServerCert, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(l.URL, client.Options{TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return l, c
}

// evidence returns a fresh nonce and test evidence for the volume.
func evidence(t *testing.T, c *client.Client) ([]byte, []byte) {
	t.Helper()
	nr, err := c.Nonce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := brokertest.Evidence{Nonce: nr.Nonce, Volume: volume, KeyID: keyID}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return nr.Nonce, ev
}

func TestGuestCalls(t *testing.T) {
	l, c := start(t)
	ctx := context.Background()
	if err := c.Healthy(ctx); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	if _, err := c.Epoch(ctx, volume); !client.IsCode(err, "volume_not_found") {
		t.Fatalf("Epoch of an unknown volume: %v, want volume_not_found", err)
	}
	n, ev := evidence(t, c)
	claims, err := c.Verify(ctx, n, ev)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if diff := cmp.Diff(&api.Claims{Volume: volume, KeyID: keyID}, claims); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	if _, err := c.Verify(ctx, n, ev); !client.IsCode(err, "nonce_used") {
		t.Errorf("replayed nonce: %v, want nonce_used", err)
	}
	n, ev = evidence(t, c)
	v, err := c.Register(ctx, api.RegisterRequest{Nonce: n, Evidence: ev, Volume: api.VolumeSpec{UUID: volume, KeyID: keyID}})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if _, err := c.Volume(ctx, volume); !client.IsCode(err, "operator_certificate_required") {
		t.Errorf("Volume without a client certificate: %v, want operator_certificate_required", err)
	}
	got, err := operator(t, l).Volume(ctx, volume)
	if err != nil {
		t.Fatalf("Volume: %v", err)
	}
	if diff := cmp.Diff(v, got); diff != "" {
		t.Errorf("Volume after Register (-registered +read):\n%s", diff)
	}
	n, ev = evidence(t, c)
	_, err = c.Register(ctx, api.RegisterRequest{Nonce: n, Evidence: ev, Volume: api.VolumeSpec{UUID: volume, KeyID: keyID}})
	var re *client.Error
	if !errors.As(err, &re) || re.Code != "volume_exists" || re.KeyID != keyID {
		t.Errorf("Register again: %v, want volume_exists with key id %s", err, keyID)
	}
	n, ev = evidence(t, c)
	if err := c.AdvanceEpoch(ctx, volume, n, ev, 0, 7); err != nil {
		t.Fatalf("AdvanceEpoch 0→7: %v", err)
	}
	if e, err := c.Epoch(ctx, volume); err != nil || e != 7 {
		t.Errorf("Epoch = %d, %v; want 7", e, err)
	}
	n, ev = evidence(t, c)
	err = c.AdvanceEpoch(ctx, volume, n, ev, 3, 8)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != "epoch_conflict" || ce.Current == nil || *ce.Current != 7 || ce.Status != 409 {
		t.Errorf("stale AdvanceEpoch: %#v, want epoch_conflict with current 7", err)
	}
}

func TestRefusesUntrustedBroker(t *testing.T) {
	l, _ := start(t)
	c, err := client.New(l.URL, client.Options{}) // system roots: the generated certificate is not trusted
	if err != nil {
		t.Fatal(err)
	}
	var ue x509.UnknownAuthorityError
	if _, err := c.Nonce(context.Background()); !errors.As(err, &ue) {
		t.Errorf("Nonce from an unpinned broker: %v, want an unknown-authority error", err)
	}
}

func TestNewRefusesBadURL(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8443", "127.0.0.1:8443", "https://", "https://h/?x=1", "::"} {
		if _, err := client.New(u, client.Options{}); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := client.TLSConfig(dir+"/missing.pem", "", ""); err == nil {
		t.Error("missing certificate file accepted")
	}
}

// operator is a client of l with the operator certificate.
func operator(t *testing.T, l *brokertest.Local) *client.Client {
	t.Helper()
	opTLS, err := client.TLSConfig(l.TLS.ServerCert, l.TLS.OperatorCert, l.TLS.OperatorKey)
	if err != nil {
		t.Fatal(err)
	}
	op, err := client.New(l.URL, client.Options{TLS: opTLS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	return op
}

// TestKeyRelease stores a key as an operator, with and without required
// measurements, and has a guest that has not opened the volume yet (its
// evidence names no volume) fetch it, sealed to the release key its
// evidence binds.
func TestKeyRelease(t *testing.T) {
	l, guest := start(t)
	ctx := context.Background()
	opTLS, err := client.TLSConfig(l.TLS.ServerCert, l.TLS.OperatorCert, l.TLS.OperatorKey)
	if err != nil {
		t.Fatal(err)
	}
	op, err := client.New(l.URL, client.Options{TLS: opTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	if _, err := op.Register(ctx, api.RegisterRequest{Volume: api.VolumeSpec{UUID: volume, KeyID: keyID}}); err != nil {
		t.Fatalf("operator Register: %v", err)
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	if err := guest.PutKey(ctx, volume, keyID, key, nil); !client.IsCode(err, "operator_certificate_required") {
		t.Errorf("PutKey without a client certificate: %v, want operator_certificate_required", err)
	}
	if err := op.PutKey(ctx, volume, keyID, key, json.RawMessage(`["not an object"]`)); !client.IsCode(err, "invalid_require") {
		t.Errorf("PutKey with an array as requirement: %v, want invalid_require", err)
	}
	priv, err := api.NewReleaseKey()
	if err != nil {
		t.Fatal(err)
	}
	release := func(measurements string) (*api.ReleasedKey, error) {
		nr, err := guest.Nonce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := brokertest.Evidence{Nonce: nr.Nonce, Measurements: json.RawMessage(measurements), ReleaseKey: priv.PublicKey().Bytes()}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return guest.ReleaseKey(ctx, volume, nr.Nonce, ev)
	}
	for _, tc := range []struct {
		name, require, measurements, wantCode string
	}{
		{"no requirement", "", `{"pcrs":{"7":"00"}}`, ""},
		{"requirement shown", `{"pcrs":{"7":"00"}}`, `{"pcrs":{"7":"00","11":"ff"}}`, ""},
		{"requirement not shown", `{"pcrs":{"7":"00"}}`, `{"pcrs":{"7":"01"}}`, "measurements_mismatch"},
	} {
		if err := op.PutKey(ctx, volume, keyID, key, json.RawMessage(tc.require)); err != nil {
			t.Fatalf("%s: PutKey: %v", tc.name, err)
		}
		rk, err := release(tc.measurements)
		if tc.wantCode != "" {
			if !client.IsCode(err, tc.wantCode) {
				t.Errorf("%s: ReleaseKey: %v, want %s", tc.name, err, tc.wantCode)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: ReleaseKey: %v", tc.name, err)
		}
		got, err := api.OpenKey(priv, volume, *rk)
		if err != nil || string(got) != string(key) {
			t.Errorf("%s: released key %q, %v; want %q", tc.name, got, err, key)
		}
	}
}

// TestRetriesTooManyRequests: a 429 is sent again after its Retry-After,
// unless the client is told not to retry.
func TestRetriesTooManyRequests(t *testing.T) {
	l, err := brokertest.StartLocal(t.TempDir(), nil, func(c *broker.Config) { c.RateLimit, c.RateBurst = 1, 1 })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cfg, err := client.TLSConfig(l.TLS.ServerCert, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		retries int
		want    int // status of the second call, 0 for success
	}{
		{"no retry", -1, http.StatusTooManyRequests},
		{"retry", 0, 0},
	} {
		c, err := client.New(l.URL, client.Options{TLS: cfg, Retries: tc.retries})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(time.Second) // a full bucket
		if _, err := c.Nonce(ctx); err != nil {
			t.Fatalf("%s: first nonce: %v", tc.name, err)
		}
		_, err = c.Nonce(ctx)
		got := 0
		var ce *client.Error
		if errors.As(err, &ce) {
			got = ce.Status
			if ce.RetryAfter != time.Second {
				t.Errorf("%s: RetryAfter %v, want 1s", tc.name, ce.RetryAfter)
			}
		} else if err != nil {
			t.Fatalf("%s: second nonce: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: second nonce answered %d, want %d (%v)", tc.name, got, tc.want, err)
		}
	}
}
