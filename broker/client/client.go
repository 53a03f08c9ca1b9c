// Package client talks to a confidisk broker (`confidisk serve`, package
// broker) over HTTPS: the guest side of the API — nonces, evidence,
// creation-record registration and freshness epochs — for `confidisk boot`,
// and the same calls for tools and tests. The wire types are those of
// package broker/api; the endpoints are listed in the broker package
// documentation.
//
// Every answer other than 2xx becomes an [*Error] with the broker's stable
// code, so callers can tell a refused nonce from an epoch conflict:
//
//	var e *client.Error
//	if errors.As(err, &e) && e.Code == "epoch_conflict" { … e.Current … }
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/confidisk/confidisk/broker/api"
)

// MaxAnswerBytes bounds how much of an answer the client reads.
const MaxAnswerBytes = 1 << 20

// DefaultTimeout bounds one request when [Options.Timeout] is 0.
const DefaultTimeout = 30 * time.Second

// Options tune a [Client].
type Options struct {
	// TLS is the client's TLS configuration (see [TLSConfig]); nil means
	// the system roots, which a broker with a generated certificate does
	// not chain to.
	TLS *tls.Config
	// Timeout bounds each request; 0 means [DefaultTimeout].
	Timeout time.Duration
	// Conns, when not 0, is how many connections the client keeps open
	// to the broker at most (for concurrent callers, e.g. a load test).
	Conns int
	// Retries is how many times a request refused with 429 (rate limit,
	// broker busy) is sent again after the answer's Retry-After (at most
	// [MaxRetryWait]); 0 means [DefaultRetries], negative never.
	Retries int
}

// DefaultRetries is [Options.Retries] when 0.
const DefaultRetries = 3

// MaxRetryWait caps the wait a Retry-After asks for.
const MaxRetryWait = 5 * time.Second

// Client calls one broker. It is safe for concurrent use.
type Client struct {
	base    string
	http    *http.Client
	retries int
}

// New returns a client of the broker at baseURL ("https://host:port", with
// no path or a path prefix).
func New(baseURL string, o Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("broker url: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("broker url %q: want https://HOST[:PORT] (the broker speaks only TLS)", baseURL)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a guest's broker is reached directly
	if o.TLS != nil {
		tr.TLSClientConfig = o.TLS.Clone()
	}
	if o.Conns > 0 {
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = o.Conns, o.Conns, o.Conns
	}
	if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	return &Client{
		base:    strings.TrimSuffix(u.String(), "/"),
		http:    &http.Client{Transport: tr, Timeout: o.Timeout},
		retries: max(0, o.Retries),
	}, nil
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// TLSConfig is the configuration of a client of the broker: it trusts only
// the certificates in serverCAFile (for a generated broker, its self-signed
// server.crt) and, when certFile is set, presents that client certificate
// (an operator).
func TLSConfig(serverCAFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(serverCAFile)
	if err != nil {
		return nil, fmt.Errorf("load broker certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("load broker certificate: no PEM certificate in %s", serverCAFile)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Error is a refusal by the broker: a non-2xx answer.
type Error struct {
	// Method and Path name the request.
	Method, Path string
	// Status is the HTTP status code.
	Status int
	// Code is the broker's stable error code ("nonce_used",
	// "epoch_conflict", "volume_not_found", ...); "" when the answer was not
	// an api.Error.
	Code string
	// Message is the broker's explanation.
	Message string
	// Current is the stored epoch with Code "epoch_conflict".
	Current *uint64
	// KeyID is the registered key id with Code "volume_exists".
	KeyID string
	// RetryAfter is the wait the broker asked for with status 429.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("broker: %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("broker: %s %s: %s (%s)", e.Method, e.Path, e.Message, e.Code)
}

// IsCode reports whether err is an [*Error] with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// call sends body (JSON; none when nil) and decodes a 2xx answer into out
// (ignored when nil). A 429 is sent again after its Retry-After: the broker
// refused it before doing anything.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var raw []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("broker: %s %s: %w", method, path, err)
		}
		raw = b
	}
	for try := 0; ; try++ {
		err := c.once(ctx, method, path, raw, out)
		var e *Error
		if try >= c.retries || !errors.As(err, &e) || e.Status != http.StatusTooManyRequests {
			return err
		}
		t := time.NewTimer(min(max(e.RetryAfter, 100*time.Millisecond), MaxRetryWait))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

func (c *Client) once(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("broker: %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("broker: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes))
	if err != nil {
		return fmt.Errorf("broker: %s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Method: method, Path: path, Status: resp.StatusCode}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
		var ae api.Error
		if json.Unmarshal(raw, &ae) == nil && ae.Code != "" {
			e.Code, e.Message, e.Current, e.KeyID = ae.Code, ae.Error, ae.Current, ae.KeyID
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("broker: %s %s: decode the answer: %w", method, path, err)
		}
	}
	return nil
}

// Healthy returns nil when GET /healthz answers 200.
func (c *Client) Healthy(ctx context.Context) error {
	return c.call(ctx, http.MethodGet, "/healthz", nil, nil)
}

// Nonce gets a fresh nonce to bind into the next evidence.
func (c *Client) Nonce(ctx context.Context) (*api.NonceResponse, error) {
	var nr api.NonceResponse
	if err := c.call(ctx, http.MethodPost, "/v1/nonce", nil, &nr); err != nil {
		return nil, err
	}
	return &nr, nil
}

// Verify presents evidence bound to nonce and returns what the broker
// learnt from it.
func (c *Client) Verify(ctx context.Context, nonce, evidence []byte) (*api.Claims, error) {
	var cl api.Claims
	if err := c.call(ctx, http.MethodPost, "/v1/evidence", api.EvidenceRequest{Nonce: nonce, Evidence: evidence}, &cl); err != nil {
		return nil, err
	}
	return &cl, nil
}

// Register registers a volume (POST /v1/volumes): with a creation record
// (req.CreationRecord), with guest evidence (req.Nonce, req.Evidence), or as
// an operator.
func (c *Client) Register(ctx context.Context, req api.RegisterRequest) (*api.Volume, error) {
	var v api.Volume
	if err := c.call(ctx, http.MethodPost, "/v1/volumes", req, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Volume returns the creation record the broker holds for a volume
// (operators: the client needs the operator certificate). A guest tells
// whether its volume is registered from [Client.Epoch] (an [*Error] with
// Code "volume_not_found" when not), and which key id it is registered
// with from the [*Error] of [Client.Register] (Code "volume_exists", KeyID).
func (c *Client) Volume(ctx context.Context, uuid string) (*api.Volume, error) {
	var v api.Volume
	if err := c.call(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(uuid), nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Epoch returns a volume's freshness epoch; anyone may read it. An
// unregistered volume is an [*Error] with Code "volume_not_found".
func (c *Client) Epoch(ctx context.Context, uuid string) (uint64, error) {
	var e api.Epoch
	if err := c.call(ctx, http.MethodGet, "/v1/volumes/"+url.PathEscape(uuid)+"/epoch", nil, &e); err != nil {
		return 0, err
	}
	return e.Epoch, nil
}

// AdvanceEpoch moves a volume's epoch from old to new (compare-and-swap)
// with evidence bound to nonce. A conflict is an [*Error] with Code
// "epoch_conflict" and the stored epoch in Current.
func (c *Client) AdvanceEpoch(ctx context.Context, uuid string, nonce, evidence []byte, old, new uint64) error {
	req := api.AdvanceEpochRequest{Nonce: nonce, Evidence: evidence, Old: old, New: new}
	return c.call(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(uuid)+"/epoch", req, nil)
}

// PutKey stores the key of a pre-encrypted volume (operators: the client
// needs the operator certificate in its TLS configuration), replacing any
// stored one. require, a JSON object of measurements the evidence of a
// release must show (see [api.PutKeyRequest.Require]), may be nil: then
// the key is released to any evidence the broker's policy accepts.
func (c *Client) PutKey(ctx context.Context, uuid, keyID string, key []byte, require json.RawMessage) error {
	req := api.PutKeyRequest{KeyID: keyID, Key: key, Require: require}
	return c.call(ctx, http.MethodPut, "/v1/volumes/"+url.PathEscape(uuid)+"/key", req, nil)
}

// ReleaseKey asks for a volume's key with evidence bound to nonce that
// binds the guest's release key (see api.NewReleaseKey); open the answer
// with api.OpenKey.
func (c *Client) ReleaseKey(ctx context.Context, uuid string, nonce, evidence []byte) (*api.ReleasedKey, error) {
	var rk api.ReleasedKey
	req := api.ReleaseKeyRequest{Nonce: nonce, Evidence: evidence}
	if err := c.call(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(uuid)+"/key", req, &rk); err != nil {
		return nil, err
	}
	return &rk, nil
}

// Volumes lists every registered volume (operators).
func (c *Client) Volumes(ctx context.Context) ([]api.Volume, error) {
	var vl api.VolumeList
	if err := c.call(ctx, http.MethodGet, "/v1/volumes", nil, &vl); err != nil {
		return nil, err
	}
	return vl.Volumes, nil
}
