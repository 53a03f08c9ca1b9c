package broker_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/broker/store"
	"github.com/confidisk/confidisk/recovery"
)

const (
	volA = "11111111-2222-4333-8444-555555555555"
	volB = "22222222-2222-4333-8444-555555555555"
	kid  = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
)

// clock is a settable time source for Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// env is a broker serving TLS on loopback with a guest client (no
// certificate) and an operator client.
type env struct {
	url      string
	addr     string
	guest    *http.Client
	operator *http.Client
	files    broker.TLSFiles
	clock    *clock
	store    store.Store
}

func newEnv(t *testing.T, mutate func(*broker.Config)) *env {
	t.Helper()
	clk := &clock{now: time.Now()}
	l, err := brokertest.StartLocal(t.TempDir(), nil, func(c *broker.Config) {
		c.Now = clk.Now
		if mutate != nil {
			mutate(c)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	httpClient := func(cert, key string) *http.Client {
		c, err := client.TLSConfig(l.TLS.ServerCert, cert, key)
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{TLSClientConfig: c}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	return &env{
		url:      l.URL,
		addr:     l.Addr.String(),
		guest:    httpClient("", ""),
		operator: httpClient(l.TLS.OperatorCert, l.TLS.OperatorKey),
		files:    l.TLS,
		clock:    clk,
		store:    l.Store,
	}
}

// do sends a request with a JSON body (a string is sent as is) and decodes
// the answer into out (unless nil); it returns the status and the api.Error.
func (e *env) do(t *testing.T, c *http.Client, method, path string, body, out any) (int, api.Error) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var ae api.Error
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &ae); err != nil {
			t.Fatalf("%s %s: %d with a body that is not api.Error: %q", method, path, resp.StatusCode, raw)
		}
		if ae.Error == "" || ae.Code == "" {
			t.Errorf("%s %s: error answer without a reason: %q", method, path, raw)
		}
		return resp.StatusCode, ae
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, ae
}

func (e *env) nonce(t *testing.T) []byte {
	t.Helper()
	var n api.NonceResponse
	if code, ae := e.do(t, e.guest, "POST", "/v1/nonce", nil, &n); code != 200 {
		t.Fatalf("POST /v1/nonce: %d %+v", code, ae)
	}
	if len(n.Nonce) != 32 {
		t.Fatalf("nonce of %d bytes", len(n.Nonce))
	}
	return n.Nonce
}

// evidence returns a fresh nonce and test evidence for volume over it.
func (e *env) evidence(t *testing.T, ev brokertest.Evidence) ([]byte, []byte) {
	t.Helper()
	n := e.nonce(t)
	ev.Nonce = n
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return n, b
}

func (e *env) register(t *testing.T, uuid string) {
	t.Helper()
	n, ev := e.evidence(t, brokertest.Evidence{Volume: uuid, Measurements: json.RawMessage(`{"pcr": "15"}`)})
	req := api.RegisterRequest{Nonce: n, Evidence: ev, Volume: api.VolumeSpec{UUID: uuid, KeyID: kid}}
	if code, ae := e.do(t, e.guest, "POST", "/v1/volumes", req, nil); code != http.StatusCreated {
		t.Fatalf("register %s: %d %+v", uuid, code, ae)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t, nil)
	var h map[string]string
	if code, _ := e.do(t, e.guest, "GET", "/healthz", nil, &h); code != 200 || h["status"] != "ok" {
		t.Fatalf("GET /healthz: %d %v", code, h)
	}
	e.do(t, e.guest, "GET", "/nowhere", nil, nil)
	e.nonce(t)
	if code, ae := e.do(t, e.guest, "GET", "/metrics", nil, nil); code != 401 || ae.Code != "operator_certificate_required" {
		t.Errorf("guest GET /metrics: %d %+v, want 401 operator_certificate_required", code, ae)
	}
	resp, err := e.operator.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"# TYPE confidisk_broker_requests_total counter\n",
		`confidisk_broker_requests_total{endpoint="GET /healthz",code="200"} 1` + "\n",
		`confidisk_broker_requests_total{endpoint="other",code="404"} 1` + "\n",
		`confidisk_broker_requests_total{endpoint="POST /v1/nonce",code="200"} 1` + "\n",
		`confidisk_broker_request_duration_seconds_bucket{endpoint="POST /v1/nonce",le="+Inf"} 1` + "\n",
		`confidisk_broker_request_duration_seconds_count{endpoint="GET /healthz"} 1` + "\n",
		"confidisk_broker_nonces_issued_total 1\n",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("metrics Content-Type %q", ct)
	}
}

func TestNonces(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.NonceTTL = time.Minute })
	n, ev := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	var claims api.Claims
	if code, ae := e.do(t, e.guest, "POST", "/v1/evidence", api.EvidenceRequest{Nonce: n, Evidence: ev}, &claims); code != 200 {
		t.Fatalf("evidence: %d %+v", code, ae)
	}
	if claims.Volume != volA {
		t.Errorf("claims %+v", claims)
	}
	expired, evExpired := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	other, _ := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	_, rejected := e.evidence(t, brokertest.Evidence{Volume: volA, Reject: "PCR 7 is not the expected value"})
	tests := []struct {
		name     string
		req      api.EvidenceRequest
		advance  time.Duration
		wantCode int
		want     string
	}{
		{"replay", api.EvidenceRequest{Nonce: n, Evidence: ev}, 0, 403, "nonce_used"},
		{"unknown", api.EvidenceRequest{Nonce: bytes.Repeat([]byte{7}, 32), Evidence: ev}, 0, 403, "nonce_unknown"},
		{"evidence over another nonce", api.EvidenceRequest{Nonce: other, Evidence: ev}, 0, 403, "evidence_rejected"},
		{"rejected by verifier", api.EvidenceRequest{Nonce: other, Evidence: rejected}, 0, 403, "nonce_used"},
		{"expired", api.EvidenceRequest{Nonce: expired, Evidence: evExpired}, 2 * time.Minute, 403, "nonce_expired"},
	}
	for _, tc := range tests {
		e.clock.Add(tc.advance)
		code, ae := e.do(t, e.guest, "POST", "/v1/evidence", tc.req, nil)
		if d := cmp.Diff([2]any{tc.wantCode, tc.want}, [2]any{code, ae.Code}); d != "" {
			t.Errorf("%s: (-want +got):\n%s (%s)", tc.name, d, ae.Error)
		}
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.MaxBodyBytes = 4096 })
	e.register(t, volA)
	n := `"` + strings.Repeat("A", 43) + `="`
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		want                     string
	}{
		{"unknown field", "POST", "/v1/evidence", `{"nonce":` + n + `,"evidence":"eA==","extra":1}`, 400, "unknown_field"},
		{"malformed", "POST", "/v1/evidence", `{"nonce":`, 400, "malformed_json"},
		{"syntax error", "POST", "/v1/evidence", `{"nonce" 1}`, 400, "malformed_json"},
		{"empty body", "POST", "/v1/evidence", ``, 400, "empty_body"},
		{"not an object", "POST", "/v1/evidence", `[1,2]`, 400, "malformed_json"},
		{"trailing data", "POST", "/v1/evidence", `{"nonce":` + n + `,"evidence":"eA=="} {}`, 400, "trailing_data"},
		{"trailing garbage", "POST", "/v1/evidence", `{"nonce":` + n + `,"evidence":"eA=="}x`, 400, "trailing_data"},
		{"wrong type", "POST", "/v1/evidence", `{"nonce":5,"evidence":"eA=="}`, 400, "invalid_field"},
		{"bad base64", "POST", "/v1/evidence", `{"nonce":"!!!","evidence":"eA=="}`, 400, "invalid_field"},
		{"short nonce", "POST", "/v1/evidence", `{"nonce":"AAAA","evidence":"eA=="}`, 400, "invalid_nonce"},
		{"no evidence", "POST", "/v1/evidence", `{"nonce":` + n + `}`, 400, "invalid_evidence"},
		{"oversized", "POST", "/v1/evidence", `{"nonce":"` + strings.Repeat("A", 8192) + `"}`, 413, "body_too_large"},
		{"negative epoch", "POST", "/v1/volumes/" + volA + "/epoch", `{"nonce":` + n + `,"evidence":"eA==","old":-1,"new":1}`, 400, "invalid_field"},
		{"epoch not increasing", "POST", "/v1/volumes/" + volA + "/epoch", `{"nonce":` + n + `,"evidence":"eA==","old":3,"new":3}`, 400, "epoch_not_increasing"},
		{"epoch too large", "POST", "/v1/volumes/" + volA + "/epoch", `{"nonce":` + n + `,"evidence":"eA==","old":3,"new":18446744073709551615}`, 400, "epoch_not_increasing"},
		{"bad uuid in path", "GET", "/v1/volumes/not-a-uuid/epoch", ``, 400, "invalid_uuid"},
		{"bad uuid in body", "POST", "/v1/volumes", `{"nonce":` + n + `,"evidence":"eA==","volume":{"uuid":"x","key_id":"aa"}}`, 400, "invalid_uuid"},
		{"bad key id", "POST", "/v1/volumes", `{"nonce":` + n + `,"evidence":"eA==","volume":{"uuid":"` + volB + `","key_id":"xyz"}}`, 400, "invalid_key_id"},
		{"unknown volume", "GET", "/v1/volumes/" + volB + "/epoch", ``, 404, "volume_not_found"},
		{"volume read by a guest", "GET", "/v1/volumes/" + volA, ``, 401, "operator_certificate_required"},
		{"nonce with body", "POST", "/v1/nonce", `{}`, 400, "unexpected_body"},
	}
	for _, tc := range tests {
		code, ae := e.do(t, e.guest, tc.method, tc.path, tc.body, nil)
		if d := cmp.Diff([2]any{tc.wantCode, tc.want}, [2]any{code, ae.Code}); d != "" {
			t.Errorf("%s: (-want +got):\n%s (%s)", tc.name, d, ae.Error)
		}
	}
	// Nothing above changed the volume.
	var ep api.Epoch
	if code, _ := e.do(t, e.guest, "GET", "/v1/volumes/"+volA+"/epoch", nil, &ep); code != 200 || ep.Epoch != 0 {
		t.Errorf("epoch after bad input: %d %+v", code, ep)
	}
}

func TestRegisterAndEpochs(t *testing.T) {
	e := newEnv(t, nil)
	e.register(t, volA)
	var v api.Volume
	if code, ae := e.do(t, e.operator, "GET", "/v1/volumes/"+strings.ToUpper(volA), nil, &v); code != 200 {
		t.Fatalf("get volume: %d %+v", code, ae)
	}
	want := api.Volume{UUID: volA, KeyID: kid, Measurements: json.RawMessage(`{"pcr":"15"}`), CreatedAt: v.CreatedAt}
	if d := cmp.Diff(want, v); d != "" {
		t.Errorf("volume (-want +got):\n%s", d)
	}

	// Registering again is refused, and so is a proof about another volume.
	n, ev := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	code, ae := e.do(t, e.guest, "POST", "/v1/volumes", api.RegisterRequest{Nonce: n, Evidence: ev, Volume: api.VolumeSpec{UUID: volA, KeyID: kid}}, nil)
	if code != 409 || ae.Code != "volume_exists" || ae.KeyID != kid {
		t.Errorf("second registration: %d %+v, want 409 volume_exists with the registered key id", code, ae)
	}
	n, ev = e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	code, ae = e.do(t, e.guest, "POST", "/v1/volumes", api.RegisterRequest{Nonce: n, Evidence: ev, Volume: api.VolumeSpec{UUID: volB, KeyID: kid}}, nil)
	if code != 403 || ae.Code != "evidence_volume_mismatch" {
		t.Errorf("registration with evidence about another volume: %d %+v", code, ae)
	}
	n, ev = e.evidence(t, brokertest.Evidence{Volume: volB, KeyID: "ff"})
	code, ae = e.do(t, e.guest, "POST", "/v1/volumes", api.RegisterRequest{Nonce: n, Evidence: ev, Volume: api.VolumeSpec{UUID: volB, KeyID: kid}}, nil)
	if code != 403 || ae.Code != "evidence_key_mismatch" {
		t.Errorf("registration with another attested key id: %d %+v", code, ae)
	}

	advance := func(vol string, old, new uint64, evVol string) (int, api.Error, api.Epoch) {
		n, ev := e.evidence(t, brokertest.Evidence{Volume: evVol, KeyID: kid})
		var out api.Epoch
		code, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+vol+"/epoch", api.AdvanceEpochRequest{Nonce: n, Evidence: ev, Old: old, New: new}, &out)
		return code, ae, out
	}
	u := func(v uint64) *uint64 { return &v }
	tests := []struct {
		name     string
		vol      string
		old, new uint64
		evVol    string
		wantCode int
		wantErr  api.Error
		want     uint64 // the epoch afterwards
	}{
		{name: "first", vol: volA, old: 0, new: 1, evVol: volA, wantCode: 200, want: 1},
		{name: "stale", vol: volA, old: 0, new: 1, evVol: volA, wantCode: 409, wantErr: api.Error{Code: "epoch_conflict", Current: u(1)}, want: 1},
		{name: "jump", vol: volA, old: 1, new: 5, evVol: volA, wantCode: 200, want: 5},
		{name: "evidence about another volume", vol: volA, old: 5, new: 6, evVol: volB, wantCode: 403, wantErr: api.Error{Code: "evidence_volume_mismatch"}, want: 5},
		{name: "unregistered", vol: volB, old: 0, new: 1, evVol: volB, wantCode: 404, wantErr: api.Error{Code: "volume_not_found"}, want: 5},
	}
	// Evidence about another key under the registered UUID (a volume the
	// host made and named like the guest's) moves nothing.
	n, ev = e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: strings.Repeat("ee", 32)})
	if code, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+volA+"/epoch", api.AdvanceEpochRequest{Nonce: n, Evidence: ev, Old: 0, New: 1}, nil); code != 409 || ae.Code != "key_id_mismatch" {
		t.Errorf("advance with another key id: %d %+v, want 409 key_id_mismatch", code, ae)
	}
	n, ev = e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: strings.Repeat("ee", 32)})
	if code, ae := e.do(t, e.guest, "POST", "/v1/evidence", api.EvidenceRequest{Nonce: n, Evidence: ev}, nil); code != 409 || ae.Code != "key_id_mismatch" {
		t.Errorf("evidence with another key id: %d %+v, want 409 key_id_mismatch", code, ae)
	}
	for _, tc := range tests {
		code, ae, out := advance(tc.vol, tc.old, tc.new, tc.evVol)
		ae.Error = ""
		if d := cmp.Diff(tc.wantErr, ae); code != tc.wantCode || d != "" {
			t.Errorf("%s: status %d, want %d; error (-want +got):\n%s", tc.name, code, tc.wantCode, d)
		}
		if code == 200 && out.Epoch != tc.new {
			t.Errorf("%s: answer %d, want %d", tc.name, out.Epoch, tc.new)
		}
		var ep api.Epoch
		e.do(t, e.guest, "GET", "/v1/volumes/"+volA+"/epoch", nil, &ep)
		if ep.Epoch != tc.want {
			t.Errorf("%s: epoch %d, want %d", tc.name, ep.Epoch, tc.want)
		}
	}
}

func TestOperatorAndKeyRelease(t *testing.T) {
	e := newEnv(t, nil)
	key := bytes.Repeat([]byte{0x5a}, 64)
	put := api.PutKeyRequest{KeyID: kid, Key: key}
	reg := api.RegisterRequest{Volume: api.VolumeSpec{UUID: volA, KeyID: kid, Measurements: json.RawMessage(`{"image":"v1"}`)}}
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/volumes", reg},
		{"GET", "/v1/volumes", nil},
		{"PUT", "/v1/volumes/" + volA + "/key", put},
	} {
		code, ae := e.do(t, e.guest, tc.method, tc.path, tc.body, nil)
		if code != 401 || ae.Code != "operator_certificate_required" {
			t.Errorf("guest %s %s: %d %+v, want 401 operator_certificate_required", tc.method, tc.path, code, ae)
		}
	}

	// A client certificate from another CA does not get through the handshake.
	other, _, err := broker.EnsureTLS(filepath.Join(t.TempDir(), "other"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := client.TLSConfig(e.files.ServerCert, other.OperatorCert, other.OperatorKey)
	if err != nil {
		t.Fatal(err)
	}
	stranger := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	if resp, err := stranger.Get(e.url + "/v1/volumes"); err == nil {
		resp.Body.Close()
		t.Errorf("certificate of a foreign CA: %s, want a handshake failure", resp.Status)
	}

	if code, ae := e.do(t, e.operator, "POST", "/v1/volumes", reg, nil); code != 201 {
		t.Fatalf("operator registration: %d %+v", code, ae)
	}
	if code, ae := e.do(t, e.operator, "PUT", "/v1/volumes/"+volA+"/key", api.PutKeyRequest{KeyID: "ab", Key: key}, nil); code != 409 || ae.Code != "key_id_mismatch" {
		t.Errorf("put key with another key id: %d %+v", code, ae)
	}
	if code, ae := e.do(t, e.operator, "PUT", "/v1/volumes/"+volA+"/key", put, nil); code != 204 {
		t.Fatalf("put key: %d %+v", code, ae)
	}
	var list api.VolumeList
	if code, ae := e.do(t, e.operator, "GET", "/v1/volumes", nil, &list); code != 200 || len(list.Volumes) != 1 {
		t.Fatalf("list: %d %+v %+v", code, ae, list)
	}

	priv, err := api.NewReleaseKey()
	if err != nil {
		t.Fatal(err)
	}
	n, ev := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	if code, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+volA+"/key", api.ReleaseKeyRequest{Nonce: n, Evidence: ev}, nil); code != 403 || ae.Code != "no_release_key" {
		t.Errorf("release without a bound key: %d %+v", code, ae)
	}
	n, ev = e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid, ReleaseKey: []byte("not a point")})
	if code, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+volA+"/key", api.ReleaseKeyRequest{Nonce: n, Evidence: ev}, nil); code != 403 || ae.Code != "bad_release_key" {
		t.Errorf("release to a malformed key: %d %+v", code, ae)
	}
	n, ev = e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: strings.Repeat("ee", 32), ReleaseKey: priv.PublicKey().Bytes()})
	if code, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+volA+"/key", api.ReleaseKeyRequest{Nonce: n, Evidence: ev}, nil); code != 409 || ae.Code != "key_id_mismatch" {
		t.Errorf("release to evidence of another key id: %d %+v, want 409 key_id_mismatch", code, ae)
	}
	n, ev = e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid, ReleaseKey: priv.PublicKey().Bytes()})
	var rel api.ReleasedKey
	if code, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+volA+"/key", api.ReleaseKeyRequest{Nonce: n, Evidence: ev}, &rel); code != 200 {
		t.Fatalf("release: %d %+v", code, ae)
	}
	if bytes.Contains(rel.Sealed, key) {
		t.Fatal("released key travels in clear")
	}
	got, err := api.OpenKey(priv, volA, rel)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, key) {
		t.Fatalf("released key %x, want %x", got, key)
	}
	if _, err := api.OpenKey(priv, volB, rel); err == nil {
		t.Error("released key opens under another volume UUID")
	}
}

// TestReleaseRules: which evidence gets a key, with and without required
// measurements. Each case first puts the key with its requirement (a put
// replaces the requirement too).
func TestReleaseRules(t *testing.T) {
	e := newEnv(t, nil)
	const (
		volC = "33333333-2222-4333-8444-555555555555" // registered, no key
		volD = "44444444-2222-4333-8444-555555555555" // not registered
	)
	for _, u := range []string{volA, volB, volC} {
		reg := api.RegisterRequest{Volume: api.VolumeSpec{UUID: u, KeyID: kid}}
		if code, ae := e.do(t, e.operator, "POST", "/v1/volumes", reg, nil); code != 201 {
			t.Fatalf("register %s: %d %+v", u, code, ae)
		}
	}
	key := bytes.Repeat([]byte{0xa5}, 64)
	priv, err := api.NewReleaseKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.PublicKey().Bytes()
	pcr7, pcr11, ak := strings.Repeat("3f", 32), strings.Repeat("1c", 32), strings.Repeat("ab", 32)
	shown := json.RawMessage(`{"bank":"sha256","pcrs":{"7":"` + pcr7 + `","11":"` + pcr11 + `","15":"00"},"ak":"` + ak +
		`","root_hash":"verified:beef","tee":"sev-snp:verified","tpm_reset_count":2}`)
	required := `{"pcrs":{"7":"` + pcr7 + `","11":"` + pcr11 + `"},"ak":"` + ak + `","tee":"sev-snp:verified"}`
	for _, tc := range []struct {
		name     string
		require  string // put with the key; "" for none
		uuid     string // released; volA when empty
		ev       brokertest.Evidence
		wantCode int
		want     string // the api.Error code
		wantMsg  string // in the api.Error message
	}{
		{name: "evidence of no volume: a guest that has not opened it", ev: brokertest.Evidence{Measurements: shown}, wantCode: 200},
		{name: "evidence of this volume and its key id", ev: brokertest.Evidence{Volume: volA, KeyID: kid}, wantCode: 200},
		{name: "evidence of another volume", ev: brokertest.Evidence{Volume: volB, KeyID: kid},
			wantCode: 403, want: "evidence_volume_mismatch", wantMsg: "evidence is about volume " + volB},
		{name: "evidence of this volume with another key id", ev: brokertest.Evidence{Volume: volA, KeyID: strings.Repeat("ee", 32)},
			wantCode: 409, want: "key_id_mismatch"},
		{name: "no volume, unregistered", uuid: volD, ev: brokertest.Evidence{}, wantCode: 404, want: "volume_not_found"},
		{name: "no volume, no key stored", uuid: volC, ev: brokertest.Evidence{}, wantCode: 404, want: "key_not_found"},
		{name: "no volume, no release key", ev: brokertest.Evidence{}, wantCode: 403, want: "no_release_key"},
		{name: "empty requirement", require: `{}`, ev: brokertest.Evidence{}, wantCode: 200},
		{name: "requirement shown", require: required, ev: brokertest.Evidence{Measurements: shown}, wantCode: 200},
		{name: "requirement shown by evidence of this volume", require: required, ev: brokertest.Evidence{Volume: volA, KeyID: kid, Measurements: shown}, wantCode: 200},
		{name: "wrong pcr", require: `{"pcrs":{"7":"` + pcr11 + `"}}`, ev: brokertest.Evidence{Measurements: shown},
			wantCode: 403, want: "measurements_mismatch",
			wantMsg: "evidence does not show the measurements the key requires: pcrs.7 is " + pcr7 + ", the key requires " + pcr11},
		{name: "pcr not quoted", require: `{"pcrs":{"4":"` + pcr7 + `"}}`, ev: brokertest.Evidence{Measurements: shown},
			wantCode: 403, want: "measurements_mismatch", wantMsg: "pcrs.4 is missing from the evidence"},
		{name: "missing ak", require: required, ev: brokertest.Evidence{Measurements: json.RawMessage(`{"pcrs":{"7":"` + pcr7 + `","11":"` + pcr11 + `"}}`)},
			wantCode: 403, want: "measurements_mismatch", wantMsg: "ak is missing from the evidence"},
		{name: "no measurements at all", require: required, ev: brokertest.Evidence{},
			wantCode: 403, want: "measurements_mismatch", wantMsg: "pcrs is missing from the evidence"},
		{name: "another volume is refused before the requirement", require: required, ev: brokertest.Evidence{Volume: volB, KeyID: kid, Measurements: shown},
			wantCode: 403, want: "evidence_volume_mismatch"},
		{name: "a put without a requirement drops it", ev: brokertest.Evidence{}, wantCode: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			put := api.PutKeyRequest{KeyID: kid, Key: key, Require: json.RawMessage(tc.require)}
			if code, ae := e.do(t, e.operator, "PUT", "/v1/volumes/"+volA+"/key", put, nil); code != 204 {
				t.Fatalf("put key: %d %+v", code, ae)
			}
			uuid := tc.uuid
			if uuid == "" {
				uuid = volA
			}
			if tc.want != "no_release_key" {
				tc.ev.ReleaseKey = pub
			}
			n, ev := e.evidence(t, tc.ev)
			var rel api.ReleasedKey
			code, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+uuid+"/key", api.ReleaseKeyRequest{Nonce: n, Evidence: ev}, &rel)
			if d := cmp.Diff([2]any{tc.wantCode, tc.want}, [2]any{code, ae.Code}); d != "" {
				t.Fatalf("release (-want +got):\n%s (%s)", d, ae.Error)
			}
			if !strings.Contains(ae.Error, tc.wantMsg) {
				t.Errorf("refusal %q, want one with %q", ae.Error, tc.wantMsg)
			}
			if code != 200 {
				return
			}
			if got, err := api.OpenKey(priv, volA, rel); err != nil || !bytes.Equal(got, key) {
				t.Errorf("released key %x, %v; want %x", got, err, key)
			}
		})
	}

	// The requirement is checked before the key is unsealed: a key the
	// broker could not unseal is never reached by evidence that fails it.
	ctx := t.Context()
	if err := e.store.PutKey(ctx, volC, store.WrappedKey{KeyID: kid, Sealed: []byte("not sealed"), Require: json.RawMessage(`{"ak":"` + ak + `"}`)}); err != nil {
		t.Fatal(err)
	}
	n, ev := e.evidence(t, brokertest.Evidence{ReleaseKey: pub})
	if code, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+volC+"/key", api.ReleaseKeyRequest{Nonce: n, Evidence: ev}, nil); code != 403 || ae.Code != "measurements_mismatch" {
		t.Errorf("release of an unsealable key to evidence without its ak: %d %+v, want 403 measurements_mismatch", code, ae)
	}
}

// TestPutKeyRequire: put-key takes a JSON object of measurements, or none.
func TestPutKeyRequire(t *testing.T) {
	e := newEnv(t, nil)
	reg := api.RegisterRequest{Volume: api.VolumeSpec{UUID: volA, KeyID: kid}}
	if code, ae := e.do(t, e.operator, "POST", "/v1/volumes", reg, nil); code != 201 {
		t.Fatalf("register: %d %+v", code, ae)
	}
	k := `"` + strings.Repeat("A", 43) + `="`
	for _, tc := range []struct {
		name, require string
		wantCode      int
		want          string
	}{
		{"object", `{"pcrs":{"7":"ab"},"tee":"sev-snp:verified"}`, 204, ""},
		{"null", `null`, 204, ""},
		{"empty object", `{}`, 204, ""},
		{"array", `[{"pcrs":{"7":"ab"}}]`, 400, "invalid_require"},
		{"string", `"pcrs.7=ab"`, 400, "invalid_require"},
		{"number", `7`, 400, "invalid_require"},
		{"duplicate member", `{"ak":"ab","ak":"cd"}`, 400, "invalid_require"},
		{"too deep", strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40), 400, "invalid_require"},
	} {
		body := `{"key_id":"` + kid + `","key":` + k + `,"require":` + tc.require + `}`
		code, ae := e.do(t, e.operator, "PUT", "/v1/volumes/"+volA+"/key", body, nil)
		if d := cmp.Diff([2]any{tc.wantCode, tc.want}, [2]any{code, ae.Code}); d != "" {
			t.Errorf("%s: (-want +got):\n%s (%s)", tc.name, d, ae.Error)
		}
	}
	wk, err := e.store.Key(t.Context(), volA)
	if err != nil || wk.Require != nil {
		t.Errorf("after a put with {}: stored requirement %q, %v; want none", wk.Require, err)
	}
}

func TestKeysDisabledWithoutKEK(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.KEK = nil })
	n, ev := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	if code, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+volA+"/key", api.ReleaseKeyRequest{Nonce: n, Evidence: ev}, nil); code != 503 || ae.Code != "keys_disabled" {
		t.Errorf("release without KEK: %d %+v", code, ae)
	}
}

// TestSlowClients checks that a client that stops sending is cut off: a
// stalled body gets 408 (or a closed connection), stalled headers a closed
// connection, and the server stays healthy.
func TestSlowClients(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) {
		c.ReadHeaderTimeout = 300 * time.Millisecond
		c.ReadTimeout = 500 * time.Millisecond
	})
	dial := func() *tls.Conn {
		cfg, err := client.TLSConfig(e.files.ServerCert, "", "")
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", e.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second)) // a safety net, not an assertion
		return c
	}

	body := dial()
	fmt.Fprintf(body, "POST /v1/evidence HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"nonce\":")
	resp, err := http.ReadResponse(bufio.NewReader(body), nil)
	switch {
	case err == nil:
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("stalled body: %s, want 408", resp.Status)
		}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
	default:
		t.Errorf("stalled body: %v, want 408 or a closed connection", err)
	}

	header := dial()
	fmt.Fprintf(header, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(header), nil); err == nil {
		t.Error("stalled headers got an answer, want a closed connection")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("stalled headers: the server did not close the connection")
	}

	if code, _ := e.do(t, e.guest, "GET", "/healthz", nil, nil); code != 200 {
		t.Errorf("healthz after slow clients: %d", code)
	}
}

// TestConcurrentAdvances races guests advancing one volume's epoch through
// the API: every 200 is counted exactly once.
func TestConcurrentAdvances(t *testing.T) {
	e := newEnv(t, func(c *broker.Config) { c.RateLimit = -1 })
	e.register(t, volA)
	const guests, tries = 4, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for range guests {
		wg.Go(func() {
			for range tries {
				var ep api.Epoch
				e.do(t, e.guest, "GET", "/v1/volumes/"+volA+"/epoch", nil, &ep)
				n, ev := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
				code, ae := e.do(t, e.guest, "POST", "/v1/volumes/"+volA+"/epoch",
					api.AdvanceEpochRequest{Nonce: n, Evidence: ev, Old: ep.Epoch, New: ep.Epoch + 1}, nil)
				switch {
				case code == 200:
					mu.Lock()
					acked++
					mu.Unlock()
				case code == 409 && ae.Code == "epoch_conflict" && ae.Current != nil:
				default:
					t.Errorf("advance: %d %+v", code, ae)
				}
			}
		})
	}
	wg.Wait()
	var ep api.Epoch
	e.do(t, e.guest, "GET", "/v1/volumes/"+volA+"/epoch", nil, &ep)
	if ep.Epoch != uint64(acked) || acked == 0 {
		t.Fatalf("epoch %d after %d acknowledged advances", ep.Epoch, acked)
	}
}

func TestNewRequiresParts(t *testing.T) {
	st := &nopStore{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name string
		cfg  broker.Config
	}{
		{"no store", broker.Config{Verifier: brokertest.Verifier{}, Logger: log}},
		{"no verifier", broker.Config{Store: st, Logger: log}},
		{"no logger", broker.Config{Store: st, Verifier: brokertest.Verifier{}}},
		{"short KEK", broker.Config{Store: st, Verifier: brokertest.Verifier{}, Logger: log, KEK: []byte{1}}},
	}
	for _, tc := range tests {
		if _, err := broker.New(tc.cfg); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

// nopStore satisfies store.Store for constructor tests.
type nopStore struct{ store.Store }

// TestRecoveryEscrow: a guest escrows its recovery token at registration;
// operators read it back, guests do not; a malformed token is refused.
func TestRecoveryEscrow(t *testing.T) {
	e := newEnv(t, nil)
	tok, err := (&recovery.Token{Keyslot: 0, Recipient: strings.Repeat("ab", 32), Sealed: make([]byte, 64)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	n, ev := e.evidence(t, brokertest.Evidence{Volume: volA, KeyID: kid})
	req := api.RegisterRequest{Nonce: n, Evidence: ev, Volume: api.VolumeSpec{UUID: volA, KeyID: kid, Recovery: tok}}
	var reg api.Volume
	if code, ae := e.do(t, e.guest, "POST", "/v1/volumes", req, &reg); code != http.StatusCreated || reg.Recovery != nil {
		t.Fatalf("register with escrow: %d %+v, recovery in the answer %s", code, ae, reg.Recovery)
	}
	var v api.Volume
	if code, _ := e.do(t, e.operator, "GET", "/v1/volumes/"+volA, nil, &v); code != 200 || string(v.Recovery) != string(tok) {
		t.Errorf("operator: %d, recovery %s, want %s", code, v.Recovery, tok)
	}
	if code, ae := e.do(t, e.guest, "GET", "/v1/volumes/"+volA, nil, nil); code != 401 {
		t.Errorf("guest read: %d %+v, want 401", code, ae)
	}
	n, ev = e.evidence(t, brokertest.Evidence{Volume: volB, KeyID: kid})
	req = api.RegisterRequest{Nonce: n, Evidence: ev, Volume: api.VolumeSpec{UUID: volB, KeyID: kid, Recovery: json.RawMessage(`{"type":"systemd-tpm2"}`)}}
	if code, ae := e.do(t, e.guest, "POST", "/v1/volumes", req, nil); code != 400 || ae.Code != "invalid_recovery" {
		t.Errorf("malformed escrow: %d %+v, want 400 invalid_recovery", code, ae)
	}
}
