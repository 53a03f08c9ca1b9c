package broker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/store"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("POST /v1/nonce", s.handleNonce)
	mux.HandleFunc("POST /v1/evidence", s.handleEvidence)
	mux.HandleFunc("POST /v1/volumes", s.handleRegister)
	mux.HandleFunc("GET /v1/volumes", s.handleList)
	mux.HandleFunc("GET /v1/volumes/{uuid}", s.handleVolume)
	mux.HandleFunc("GET /v1/volumes/{uuid}/epoch", s.handleEpoch)
	mux.HandleFunc("POST /v1/volumes/{uuid}/epoch", s.handleAdvance)
	mux.HandleFunc("PUT /v1/volumes/{uuid}/key", s.handlePutKey)
	mux.HandleFunc("POST /v1/volumes/{uuid}/key", s.handleRelease)
	mux.HandleFunc("/", s.handleNotFound)
	return s.instrument(s.limit(mux))
}

// MetricsHandler serves GET /metrics and GET /healthz to anyone, for a
// separate listen address that only the monitoring network reaches
// (`confidisk serve --metrics-listen`); on the API's address /metrics is
// for operators.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /metrics", s.writeMetrics)
	return mux
}

// limit answers 429 with Retry-After to a client over its rate and to
// everyone while MaxInFlight requests are being answered. GET /healthz
// passes (load balancers probe it); operators pass the per-client limit.
func (s *Server) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		if s.limiter != nil && !isOperator(r) {
			if ok, wait := s.limiter.allow(clientAddr(r), s.cfg.Now()); !ok {
				s.tooMany(w, r, wait, "rate_limited", "too many requests from this address")
				return
			}
		}
		select {
		case s.inFlight <- struct{}{}:
		default:
			s.tooMany(w, r, time.Second, "busy", "the broker is answering as many requests as it takes")
			return
		}
		defer func() { <-s.inFlight }()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) tooMany(w http.ResponseWriter, r *http.Request, wait time.Duration, code, msg string) {
	w.Header().Set("Retry-After", retryAfter(wait))
	s.fail(w, r, &apiError{status: http.StatusTooManyRequests, code: code, msg: msg + ": retry after " + retryAfter(wait) + " s"})
}

// statusWriter remembers the status code for logs and metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument logs every request and counts it in the metrics under its
// route pattern ("other" when no route matched).
func (s *Server) instrument(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		mux.ServeHTTP(sw, r)
		d := time.Since(start)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		endpoint := r.Pattern
		if endpoint == "" || endpoint == "/" {
			endpoint = "other"
		}
		s.metrics.observe(endpoint, sw.code, d)
		level := slog.LevelInfo
		if endpoint == "GET /healthz" || endpoint == "GET /metrics" || sw.code == http.StatusTooManyRequests {
			level = slog.LevelDebug
		}
		s.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path,
			"endpoint", endpoint, "status", sw.code, "duration", d, "remote", r.RemoteAddr,
			"operator", operatorName(r))
	})
}

func operatorName(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return r.TLS.VerifiedChains[0][0].Subject.CommonName
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Debug("write response", "err", err)
	}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, e *apiError) {
	s.metrics.refused(e.code)
	if e.status >= 500 {
		s.log.Error("request failed", "endpoint", r.Pattern, "code", e.code, "err", e.msg)
		e = &apiError{status: e.status, code: e.code, msg: publicMessage(e)}
	}
	if e.status == http.StatusRequestEntityTooLarge || e.status == http.StatusRequestTimeout {
		// The rest of the body is not read: do not keep the connection.
		w.Header().Set("Connection", "close")
	}
	s.writeJSON(w, e.status, e.body())
}

func publicMessage(e *apiError) string {
	if e.code == "internal" {
		return "internal error (logged by the broker)"
	}
	return e.msg
}

func internal(what string, err error) *apiError {
	return &apiError{status: http.StatusInternalServerError, code: "internal", msg: what + ": " + err.Error()}
}

// storeError maps the store's errors to answers.
func storeError(what string, err error) *apiError {
	var ce *store.EpochConflictError
	switch {
	case errors.As(err, &ce):
		cur := ce.Current
		return &apiError{status: http.StatusConflict, code: "epoch_conflict", current: &cur,
			msg: "epoch conflict: the volume's epoch is " + uitoa(cur) + "; read it again and retry"}
	case errors.Is(err, store.ErrVolumeNotFound):
		return &apiError{status: http.StatusNotFound, code: "volume_not_found", msg: "volume is not registered"}
	case errors.Is(err, store.ErrVolumeExists):
		return &apiError{status: http.StatusConflict, code: "volume_exists", msg: "volume is already registered"}
	case errors.Is(err, store.ErrKeyNotFound):
		return &apiError{status: http.StatusNotFound, code: "key_not_found", msg: "no key is stored for this volume"}
	case errors.Is(err, store.ErrEpochNotIncreasing):
		return badRequest("epoch_not_increasing", "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, code: "store_timeout", msg: what + ": store did not answer in time"}
	}
	return internal(what, err)
}

func uitoa(u uint64) string {
	b, _ := json.Marshal(u)
	return string(b)
}

// decode reads the body of r into a T under the size limit.
func decode[T any](s *Server, w http.ResponseWriter, r *http.Request, validate func(*T) *apiError) (T, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	v, e := decodeBody(r.Body, validate)
	if e != nil {
		s.fail(w, r, e)
		return v, false
	}
	return v, true
}

func (s *Server) pathUUID(w http.ResponseWriter, r *http.Request) (string, bool) {
	u, e := canonicalUUID(r.PathValue("uuid"))
	if e != nil {
		s.fail(w, r, e)
		return "", false
	}
	return u, true
}

// requireOperator answers 401 unless the client presented a certificate
// that verified against the operator CA.
// isOperator reports a client certificate issued by the operator CA.
func isOperator(r *http.Request) bool { return r.TLS != nil && len(r.TLS.VerifiedChains) > 0 }

func (s *Server) requireOperator(w http.ResponseWriter, r *http.Request) bool {
	if isOperator(r) {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Mutual-TLS realm="confidisk operators"`)
	s.fail(w, r, &apiError{status: http.StatusUnauthorized, code: "operator_certificate_required",
		msg: "this endpoint is for operators: present a client certificate issued by the operator CA"})
	return false
}

// checkNonce verifies the nonce's MAC and lifetime and returns its expiry.
func (s *Server) checkNonce(nonce []byte) (time.Time, *apiError) {
	expires, err := s.nonces.check(nonce, s.cfg.Now())
	switch {
	case errors.Is(err, errNonceExpired):
		return expires, &apiError{status: http.StatusForbidden, code: "nonce_expired",
			msg: "nonce expired: get a fresh one from POST /v1/nonce"}
	case err != nil:
		return expires, &apiError{status: http.StatusForbidden, code: "nonce_unknown",
			msg: "nonce was not issued by this broker: get one from POST /v1/nonce"}
	}
	return expires, nil
}

// nonceError maps the store's refusal of a nonce.
func nonceError(what string, err error) *apiError {
	if errors.Is(err, store.ErrNonceUsed) {
		return &apiError{status: http.StatusForbidden, code: "nonce_used",
			msg: "nonce was already used (replay refused): get a fresh one from POST /v1/nonce"}
	}
	return storeError(what, err)
}

// attest checks and consumes the nonce and verifies the evidence bound to it.
func (s *Server) attest(ctx context.Context, nonce, evidence []byte) (*api.Claims, *apiError) {
	expires, e := s.checkNonce(nonce)
	if e != nil {
		return nil, e
	}
	if err := s.cfg.Store.ConsumeNonce(ctx, nonce, expires); err != nil {
		return nil, nonceError("consume nonce", err)
	}
	return s.verify(ctx, nonce, evidence)
}

// verify asks the verifier about evidence bound to nonce.
func (s *Server) verify(ctx context.Context, nonce, evidence []byte) (*api.Claims, *apiError) {
	claims, err := s.cfg.Verifier.Verify(ctx, evidence, nonce)
	if err != nil {
		return nil, &apiError{status: http.StatusForbidden, code: "evidence_rejected", msg: "evidence rejected: " + err.Error()}
	}
	if claims == nil {
		return nil, internal("verify", errors.New("verifier returned no claims"))
	}
	return claims, nil
}

// matchRegistered compares the key id the evidence shows with the one
// registered for volume uuid: evidence about another key under a registered
// UUID (another volume made under a squatted UUID, or a forged one) is
// key_id_mismatch. An unregistered volume is volume_not_found when
// mustExist, else accepted.
func (s *Server) matchRegistered(ctx context.Context, c *api.Claims, uuid string, mustExist bool) *apiError {
	v, err := s.cfg.Store.Volume(ctx, uuid)
	switch {
	case errors.Is(err, store.ErrVolumeNotFound) && !mustExist:
		return nil
	case err != nil:
		return storeError("volume", err)
	case c.KeyID != v.KeyID:
		return &apiError{status: http.StatusConflict, code: "key_id_mismatch",
			msg: "evidence shows key id " + truncate(c.KeyID) + " for volume " + uuid + ", registered " + truncate(v.KeyID)}
	}
	return nil
}

func claimsFor(c *api.Claims, uuid string) *apiError {
	if c.Volume != uuid {
		return &apiError{status: http.StatusForbidden, code: "evidence_volume_mismatch",
			msg: "evidence is about volume " + truncate(c.Volume) + ", not " + uuid}
	}
	return nil
}

func (s *Server) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.cfg.StoreTimeout)
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, &apiError{status: http.StatusNotFound, code: "no_endpoint",
		msg: "no endpoint " + r.Method + " " + truncate(r.URL.Path) + " (the API is under /v1; see the broker package documentation)"})
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		s.writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.requireOperator(w, r) {
		s.writeMetrics(w, r)
	}
}

func (s *Server) writeMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := s.metrics.write(w); err != nil {
		s.log.Debug("write metrics", "err", err)
	}
}

func (s *Server) handleNonce(w http.ResponseWriter, r *http.Request) {
	// The request has no body; refuse one rather than read it.
	if r.ContentLength > 0 {
		s.fail(w, r, badRequest("unexpected_body", "POST /v1/nonce takes no body"))
		return
	}
	nonce, expires := s.nonces.mint(s.cfg.Now())
	s.metrics.nonceIssued()
	s.writeJSON(w, http.StatusOK, api.NonceResponse{Nonce: nonce, Expires: expires})
}

func (s *Server) handleEvidence(w http.ResponseWriter, r *http.Request) {
	req, ok := decode(s, w, r, validateEvidence)
	if !ok {
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	c, e := s.attest(ctx, req.Nonce, req.Evidence)
	if e == nil && c.Volume != "" {
		e = s.matchRegistered(ctx, c, c.Volume, false)
	}
	if e != nil {
		s.fail(w, r, e)
		return
	}
	s.writeJSON(w, http.StatusOK, *c)
}

// toAPI is the volume as answered; the escrowed recovery token only to
// operators (it is sealed to the operator's key, but nobody else needs it).
func toAPI(v store.Volume, operator bool) api.Volume {
	out := api.Volume{UUID: v.UUID, KeyID: v.KeyID, Measurements: v.Measurements, CreatedAt: v.CreatedAt}
	if operator {
		out.Recovery = v.Recovery
	}
	return out
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	req, ok := decode(s, w, r, validateRegister)
	if !ok {
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	// Stores keep microseconds (PostgreSQL's timestamptz): answer what is stored.
	v := store.Volume{UUID: req.Volume.UUID, KeyID: req.Volume.KeyID, Recovery: req.Volume.Recovery,
		CreatedAt: s.cfg.Now().UTC().Truncate(time.Microsecond)}
	switch {
	case req.CreationRecord != nil:
		cv, ok := s.cfg.Verifier.(CreationVerifier)
		if !ok {
			s.fail(w, r, &apiError{status: http.StatusNotImplemented, code: "creation_records_unsupported",
				msg: "this broker's verifier cannot check creation records"})
			return
		}
		c, err := cv.VerifyCreationRecord(ctx, req.CreationRecord)
		var e *apiError
		if err != nil {
			e = &apiError{status: http.StatusForbidden, code: "evidence_rejected", msg: err.Error()}
		} else if req.Volume.Measurements != nil {
			e = badRequest("unexpected_measurements", "a creation record brings its own measurements")
		} else if c.Volume != v.UUID || c.KeyID != v.KeyID {
			e = &apiError{status: http.StatusForbidden, code: "evidence_key_mismatch",
				msg: "the creation record is of volume " + c.Volume + " key " + truncate(c.KeyID) + ", not " + v.UUID + " key " + truncate(v.KeyID)}
		}
		if e != nil {
			s.fail(w, r, e)
			return
		}
		if v.Measurements, e = compactMeasurements(c.Measurements); e != nil {
			s.fail(w, r, internal("verifier measurements", e))
			return
		}
	case req.Nonce == nil:
		// Operator registration (a pre-encrypted volume).
		if !s.requireOperator(w, r) {
			return
		}
		v.Measurements = req.Volume.Measurements
	default:
		c, e := s.attest(ctx, req.Nonce, req.Evidence)
		if e == nil {
			e = claimsFor(c, v.UUID)
		}
		if e == nil && c.KeyID != "" && c.KeyID != v.KeyID {
			e = &apiError{status: http.StatusForbidden, code: "evidence_key_mismatch",
				msg: "evidence shows key id " + truncate(c.KeyID) + ", not " + v.KeyID}
		}
		if e == nil && req.Volume.Measurements != nil {
			e = badRequest("unexpected_measurements", "guests do not send measurements: the broker records what the evidence proves")
		}
		if e != nil {
			s.fail(w, r, e)
			return
		}
		var ae *apiError
		if v.Measurements, ae = compactMeasurements(c.Measurements); ae != nil {
			s.fail(w, r, internal("verifier measurements", ae))
			return
		}
	}
	if err := s.cfg.Store.RegisterVolume(ctx, v); err != nil {
		s.fail(w, r, s.registerError(ctx, v.UUID, err))
		return
	}
	s.log.Info("volume registered", "uuid", v.UUID, "key_id", v.KeyID,
		"by_operator", req.Nonce == nil && req.CreationRecord == nil, "from_creation_record", req.CreationRecord != nil)
	s.writeJSON(w, http.StatusCreated, toAPI(v, false))
}

// registerError is storeError, with the registered key id in a
// volume_exists answer: the requester proved (creation record, evidence or
// operator certificate) a volume of this UUID, and needs to tell its own
// volume registered from a squatted UUID.
func (s *Server) registerError(ctx context.Context, uuid string, err error) *apiError {
	e := storeError("register volume", err)
	if errors.Is(err, store.ErrVolumeExists) {
		if v, verr := s.cfg.Store.Volume(ctx, uuid); verr == nil {
			e.keyID = v.KeyID
		}
	}
	return e
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	if !s.requireOperator(w, r) {
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	vs, err := s.cfg.Store.Volumes(ctx)
	if err != nil {
		s.fail(w, r, storeError("list volumes", err))
		return
	}
	out := api.VolumeList{Volumes: make([]api.Volume, 0, len(vs))}
	for _, v := range vs {
		out.Volumes = append(out.Volumes, toAPI(v, true))
	}
	s.writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleVolume(w http.ResponseWriter, r *http.Request) {
	if !s.requireOperator(w, r) {
		return
	}
	uuid, ok := s.pathUUID(w, r)
	if !ok {
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	v, err := s.cfg.Store.Volume(ctx, uuid)
	if err != nil {
		s.fail(w, r, storeError("get volume", err))
		return
	}
	s.writeJSON(w, http.StatusOK, toAPI(v, true))
}

func (s *Server) handleEpoch(w http.ResponseWriter, r *http.Request) {
	uuid, ok := s.pathUUID(w, r)
	if !ok {
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	e, err := s.cfg.Store.Epoch(ctx, uuid)
	if err != nil {
		s.fail(w, r, storeError("get epoch", err))
		return
	}
	s.writeJSON(w, http.StatusOK, api.Epoch{Epoch: e})
}

// handleAdvance verifies the evidence first and then, in one store commit,
// consumes its nonce and swaps the epoch: a replay is refused by the
// commit, and an advance costs one durable write instead of two.
func (s *Server) handleAdvance(w http.ResponseWriter, r *http.Request) {
	uuid, ok := s.pathUUID(w, r)
	if !ok {
		return
	}
	req, ok := decode(s, w, r, validateAdvance)
	if !ok {
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	expires, e := s.checkNonce(req.Nonce)
	var c *api.Claims
	if e == nil {
		c, e = s.verify(ctx, req.Nonce, req.Evidence)
	}
	if e == nil {
		e = claimsFor(c, uuid)
	}
	if e == nil {
		e = s.matchRegistered(ctx, c, uuid, true)
	}
	if e != nil {
		s.fail(w, r, e)
		return
	}
	if err := s.cfg.Store.ConsumeNonceAndAdvance(ctx, req.Nonce, expires, uuid, req.Old, req.New); err != nil {
		s.fail(w, r, nonceError("advance epoch", err))
		return
	}
	s.log.Info("epoch advanced", "uuid", uuid, "old", req.Old, "new", req.New)
	s.writeJSON(w, http.StatusOK, api.Epoch{Epoch: req.New})
}

func (s *Server) keysEnabled(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.KEK == nil {
		s.fail(w, r, &apiError{status: http.StatusServiceUnavailable, code: "keys_disabled",
			msg: "this broker has no key-encryption key configured: key storage and release are off"})
		return false
	}
	return true
}

func (s *Server) handlePutKey(w http.ResponseWriter, r *http.Request) {
	if !s.requireOperator(w, r) || !s.keysEnabled(w, r) {
		return
	}
	uuid, ok := s.pathUUID(w, r)
	if !ok {
		return
	}
	req, ok := decode(s, w, r, validatePutKey)
	if !ok {
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	v, err := s.cfg.Store.Volume(ctx, uuid)
	if err != nil {
		s.fail(w, r, storeError("put key", err))
		return
	}
	if v.KeyID != req.KeyID {
		s.fail(w, r, &apiError{status: http.StatusConflict, code: "key_id_mismatch",
			msg: "key_id " + req.KeyID + " differs from the volume's registered key id " + v.KeyID})
		return
	}
	sealed, err := sealAtRest(s.cfg.KEK, uuid, req.KeyID, req.Key)
	clear(req.Key)
	if err != nil {
		s.fail(w, r, internal("seal key", err))
		return
	}
	wk := store.WrappedKey{KeyID: req.KeyID, Sealed: sealed, Require: req.Require, CreatedAt: s.cfg.Now().UTC()}
	if err := s.cfg.Store.PutKey(ctx, uuid, wk); err != nil {
		s.fail(w, r, storeError("put key", err))
		return
	}
	s.log.Info("volume key stored", "uuid", uuid, "key_id", req.KeyID, "operator", operatorName(r),
		"require", string(req.Require))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	uuid, ok := s.pathUUID(w, r)
	if !ok || !s.keysEnabled(w, r) {
		return
	}
	req, ok := decode(s, w, r, validateRelease)
	if !ok {
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	c, e := s.attest(ctx, req.Nonce, req.Evidence)
	if e == nil {
		e = s.releasable(ctx, c, uuid)
	}
	if e != nil {
		s.fail(w, r, e)
		return
	}
	wk, err := s.cfg.Store.Key(ctx, uuid)
	if err != nil {
		s.fail(w, r, storeError("release key", err))
		return
	}
	// Before the key is unsealed: refused evidence never gets near it.
	if e := checkRequired(wk, c); e != nil {
		s.fail(w, r, e)
		return
	}
	key, err := openAtRest(s.cfg.KEK, uuid, wk.KeyID, wk.Sealed)
	if err != nil {
		s.fail(w, r, internal("release key", err))
		return
	}
	sealed, err := api.SealKey(c.ReleaseKey, uuid, wk.KeyID, key)
	clear(key)
	if err != nil {
		s.fail(w, r, &apiError{status: http.StatusForbidden, code: "bad_release_key", msg: err.Error()})
		return
	}
	s.log.Info("volume key released", "uuid", uuid, "key_id", wk.KeyID,
		"evidence_volume", c.Volume != "", "required", len(wk.Require) > 0)
	s.writeJSON(w, http.StatusOK, api.ReleasedKey{KeyID: wk.KeyID, Suite: api.KeySuite, Sealed: sealed})
}

// releasable checks the claims of a key release for volume uuid. Evidence
// that names no volume comes from a guest that has not opened it yet (the
// volume-key record in PCR 15 follows the unlock): the path names the
// volume, which must be registered. Evidence that names a volume must name
// this one (a guest that opened another state volume gets nothing), with
// the registered key id. The evidence must bind a release key.
func (s *Server) releasable(ctx context.Context, c *api.Claims, uuid string) *apiError {
	if c.Volume != "" {
		if e := claimsFor(c, uuid); e != nil {
			return e
		}
	}
	var e *apiError
	if c.Volume == "" && c.KeyID == "" {
		if _, err := s.cfg.Store.Volume(ctx, uuid); err != nil {
			e = storeError("volume", err)
		}
	} else {
		e = s.matchRegistered(ctx, c, uuid, true)
	}
	if e == nil && len(c.ReleaseKey) == 0 {
		e = &apiError{status: http.StatusForbidden, code: "no_release_key",
			msg: "evidence binds no release key: generate an ephemeral P-256 key and bind it into the evidence"}
	}
	return e
}

// checkRequired refuses evidence whose measurements do not show what the
// key requires (store.WrappedKey.Require).
func checkRequired(wk store.WrappedKey, c *api.Claims) *apiError {
	mm, err := checkRequire(wk.Require, c.Measurements)
	if err != nil {
		return internal("check required measurements", err)
	}
	if mm != nil {
		return &apiError{status: http.StatusForbidden, code: "measurements_mismatch",
			msg: "evidence does not show the measurements the key requires: " + mm.String()}
	}
	return nil
}
