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
//	PUT  /v1/volumes/{uuid}/key      api.PutKeyRequest → 204 (operator); 400 "invalid_require"
//	POST /v1/volumes/{uuid}/key      api.ReleaseKeyRequest → api.ReleasedKey (guest evidence; see Keys)
//
// # Keys
//
// Operator-provided volume keys are stored sealed with AES-256-GCM under the
// broker's key-encryption key ([Config.KEK], a file in the data directory;
// replicas sharing a PostgreSQL store must share it). A key is released only
// HPKE-sealed to the ephemeral P-256 public key the guest bound into its
// evidence ([api.Claims.ReleaseKey]), never in clear.
//
// POST /v1/volumes/{uuid}/key releases the key of volume uuid to evidence,
// in this order of checks (each refusal with its code):
//
//   - the nonce is fresh and the verifier accepts the evidence
//     ("nonce_*", 403 "evidence_rejected");
//   - the evidence names no volume (Claims.Volume empty: a guest booting a
//     pre-encrypted volume for the first time has no volume-key record in
//     PCR 15 yet, as it makes one only once it has the key), and then the
//     path names the volume; or it names this one (another volume is 403
//     "evidence_volume_mismatch": a guest that opened some other state
//     volume gets nothing);
//   - the volume is registered (404 "volume_not_found"), and evidence that
//     names it (or shows a key id at all) shows the registered key id
//     (Claims.KeyID; 409 "key_id_mismatch");
//   - the evidence binds a release key (403 "no_release_key");
//   - a key is stored (404 "key_not_found");
//   - the evidence shows the measurements the key requires (403
//     "measurements_mismatch", naming the first value that differs), checked
//     before the key is unsealed.
//
// The requirement is the key's api.PutKeyRequest.Require, a JSON object:
// every member of it must be present in the verified Claims.Measurements
// (attest.Measurements: {"bank":"sha256","pcrs":{"7":"<hex>",…},"ak":
// "<fingerprint>","root_hash":"verified:<hex>","tee":"sev-snp:verified",…})
// with an equal value. JSON objects are compared member by member,
// recursively, so {"pcrs":{"7":"<hex>"}} requires PCR 7 and says nothing of
// the other PCRs, and members the requirement does not name may have any
// value; a nested object requires an object there. Arrays, strings,
// numbers, booleans and null are compared exactly: arrays element by
// element (objects inside them with the same members), numbers by value (1
// equals 1.0 and 1e0), strings case-sensitively — the validator writes PCR
// values, digests and fingerprints in lowercase hex. Absent, null or {}
// requires nothing (the broker's policy alone decides). Put-key refuses
// with 400 "invalid_require" anything but an object, more than 16 KiB,
// more than 32 levels of nesting or a member name twice in one object, and
// stores the object as compact JSON; a put replaces the key and its
// requirement. The refusal names the value's path (member names joined by
// "."; other names as JSON strings) and both values, truncated, for
// example "evidence does not show the measurements the key requires: pcrs.7
// is 00ab…, the key requires 3f1c…" or "…: ak is missing from the
// evidence". Replicas older than the requirement release keys without
// checking it: upgrade every replica before putting keys with one.
package broker
