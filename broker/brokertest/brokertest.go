// Package brokertest holds a test double of the broker's [broker.Verifier]
// so that the broker's handlers (and clients of the broker) can be tested
// without attestation hardware. It does not import package testing, so
// `confidisk serve --verifier insecure-test` can use it for end-to-end tests. It accepts any evidence of the form
// [Evidence] whose nonce matches: it proves nothing and must never verify
// real guests.
package brokertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/store"
	"github.com/confidisk/confidisk/broker/store/bolt"
)

// Evidence is what the double accepts as evidence (JSON).
type Evidence struct {
	// Nonce must equal the nonce the broker checks against.
	Nonce []byte `json:"nonce"`
	// Volume becomes Claims.Volume.
	Volume string `json:"volume"`
	// KeyID becomes Claims.KeyID.
	KeyID string `json:"key_id,omitempty"`
	// Measurements become Claims.Measurements.
	Measurements json.RawMessage `json:"measurements,omitempty"`
	// ReleaseKey becomes Claims.ReleaseKey.
	ReleaseKey []byte `json:"release_key,omitempty"`
	// Reject, when set, makes verification fail with this text.
	Reject string `json:"reject,omitempty"`
}

// Marshal encodes e as evidence bytes. It fails only when Measurements is
// not valid JSON.
func (e Evidence) Marshal() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("marshal test evidence: %w", err)
	}
	return b, nil
}

// Verifier is the test double. The zero value is ready to use.
type Verifier struct{}

var _ broker.Verifier = Verifier{}

// Verify implements [broker.Verifier] for [Evidence].
func (Verifier) Verify(_ context.Context, evidence, nonce []byte) (*api.Claims, error) {
	var e Evidence
	dec := json.NewDecoder(bytes.NewReader(evidence))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("test evidence: %w", err)
	}
	switch {
	case e.Reject != "":
		return nil, errors.New(e.Reject)
	case !bytes.Equal(e.Nonce, nonce):
		return nil, errors.New("test evidence is bound to another nonce")
	}
	return &api.Claims{Volume: e.Volume, KeyID: e.KeyID, Measurements: e.Measurements, ReleaseKey: e.ReleaseKey}, nil
}

// Local is a broker serving TLS on a loopback port, with a bbolt store,
// generated certificates and a key-encryption key in one directory: the
// broker of client tests and of the lab (guests reach it through QEMU's
// user networking).
type Local struct {
	// URL is "https://127.0.0.1:PORT".
	URL string
	// Addr is the listener's address.
	Addr net.Addr
	// TLS are the generated certificates (TLS.ServerCert pins the broker).
	TLS broker.TLSFiles
	// Store is the broker's store.
	Store store.Store

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// StartLocal starts a broker on 127.0.0.1 with its files in dir. Its
// certificate names the extra hosts too; the verifier is [Verifier] unless
// mutate changes it (mutate may change any of the configuration).
func StartLocal(dir string, hosts []string, mutate func(*broker.Config)) (l *Local, err error) {
	st, err := bolt.Open(filepath.Join(dir, "broker.db"), 0)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	files, _, err := broker.EnsureTLS(filepath.Join(dir, "tls"), hosts, time.Now())
	if err != nil {
		return nil, err
	}
	tlsCfg, err := broker.ServerTLSConfig(files.ServerCert, files.ServerKey, files.OperatorCA)
	if err != nil {
		return nil, err
	}
	kek, err := broker.LoadOrCreateKEK(filepath.Join(dir, "kek"))
	if err != nil {
		return nil, err
	}
	cfg := broker.Config{
		Store: st, Verifier: Verifier{}, TLS: tlsCfg, KEK: kek,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := broker.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l = &Local{URL: "https://" + ln.Addr().String(), Addr: ln.Addr(), TLS: files, Store: st, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := srv.Serve(ctx, ln)
		l.done <- errors.Join(err, st.Close())
	}()
	return l, nil
}

// Close stops the broker gracefully and closes its store. Later calls
// return the first one's result.
func (l *Local) Close() error {
	l.once.Do(func() {
		l.cancel()
		l.err = <-l.done
	})
	return l.err
}
