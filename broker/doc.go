// Package broker is the confidisk verifier and key broker (`confidisk
// serve`): an HTTPS API through which guests of Confidential VMs prove
// what they run with fresh attestation evidence, register creation proofs
// of self-encrypted volumes, keep each volume's freshness epoch (roll-back
// protection) and receive the keys of pre-encrypted volumes, and through
// which operators (authenticated by mutual TLS) provision those keys.
//
// # Authentication
//
// Guests authenticate every state-changing request with evidence bound to a
// server nonce: POST /v1/nonce issues a 32-byte nonce (valid for
// [Config.NonceTTL]); the next request carries it with evidence over it; the
// broker consumes the nonce (once — a replay is refused with code
// "nonce_used") and then asks the [Verifier]. Nonces are stateless (expiry,
// random bytes and a MAC under [Config.NonceKey]): issuing one writes
// nothing, replicas sharing the key accept each other's, and the store keeps
// only used nonces until they expire.
//
// # Abuse
//
// Each client address has a token bucket ([Config.RateLimit],
// [Config.RateBurst]); at most [Config.MaxInFlight] requests are answered at
// once; beyond either the answer is 429 with Retry-After (codes
// "rate_limited", "busy"). [Server.Serve] keeps at most
// [Config.MaxConnections] connections open. GET /metrics and GET
// /v1/volumes/{uuid} answer operators only on the API's address;
// [Server.MetricsHandler] serves metrics on a separate one. Operators present a client
// certificate issued by the operator CA; the listener asks for one
// (tls.VerifyClientCertIfGiven) and operator handlers require a verified
// chain.
//
// # Endpoints
//
// All bodies are JSON ([]byte as base64), at most [Config.MaxBodyBytes],
// decoded strictly (unknown fields and trailing data are errors). Errors are
// api.Error {"error", "code", "current"?, "key_id"?}.
//
//	GET  /healthz                    200 {"status":"ok"} when ready, 503 while shutting down
//	GET  /metrics                    Prometheus text format (operator)
//	POST /v1/nonce                   → api.NonceResponse
//	POST /v1/evidence                api.EvidenceRequest → api.Claims
//	POST /v1/volumes                 api.RegisterRequest → 201 api.Volume (guest evidence or operator); 409 "volume_exists" with key_id
//	GET  /v1/volumes                 → api.VolumeList (operator)
//	GET  /v1/volumes/{uuid}          → api.Volume (operator)
//	GET  /v1/volumes/{uuid}/epoch    → api.Epoch; 404 "volume_not_found" when not registered
//	POST /v1/volumes/{uuid}/epoch    api.AdvanceEpochRequest → api.Epoch; 409 "epoch_conflict" with current
//	PUT  /v1/volumes/{uuid}/key      api.PutKeyRequest → 204 (operator)
//	POST /v1/volumes/{uuid}/key      api.ReleaseKeyRequest → api.ReleasedKey (guest evidence)
//
// # Keys
//
// Operator-provided volume keys are stored sealed with AES-256-GCM under the
// broker's key-encryption key ([Config.KEK], a file in the data directory;
// replicas sharing a PostgreSQL store must share it). A key is released only
// HPKE-sealed to the ephemeral P-256 public key the guest bound into its
// evidence ([api.Claims.ReleaseKey]), never in clear.
package broker
