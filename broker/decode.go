package broker

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/store"
	"github.com/confidisk/confidisk/recovery"
)

// Limits on request fields.
const (
	// DefaultMaxBodyBytes is the default limit of a request body.
	DefaultMaxBodyBytes = 1 << 20
	maxKeyIDHex         = 128 // 64 bytes
	maxMeasurements     = 64 << 10
	maxRequire          = 16 << 10 // a key's required measurements (api.PutKeyRequest.Require)
	maxRequireDepth     = 32       // nested objects and arrays in them
	minVolumeKey        = 16
	maxVolumeKey        = 512
)

// apiError is a refusal with its HTTP status and the stable code of api.Error.
type apiError struct {
	status  int
	code    string
	msg     string
	current *uint64
	keyID   string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

func (e *apiError) body() api.Error {
	return api.Error{Error: e.msg, Code: e.code, Current: e.current, KeyID: e.keyID}
}

// decodeBody reads one JSON value of type T from r strictly (no unknown
// fields, nothing after it) and validates it. r is expected to be limited
// by http.MaxBytesReader.
func decodeBody[T any](r io.Reader, validate func(*T) *apiError) (T, *apiError) {
	var v T
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, decodeError(err)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil && !isSyntax(err):
		return v, decodeError(err)
	default:
		return v, badRequest("trailing_data", "request body has data after the JSON object")
	}
	if validate != nil {
		if e := validate(&v); e != nil {
			return v, e
		}
	}
	return v, nil
}

func isSyntax(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se)
}

func decodeError(err error) *apiError {
	var (
		maxErr  *http.MaxBytesError
		netErr  net.Error
		synErr  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
		b64Err  base64.CorruptInputError
	)
	switch {
	case errors.As(err, &maxErr):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "body_too_large",
			msg: fmt.Sprintf("request body is larger than %d bytes", maxErr.Limit)}
	case errors.As(err, &netErr) && netErr.Timeout():
		return &apiError{status: http.StatusRequestTimeout, code: "body_timeout",
			msg: "request body was not received in time"}
	case errors.Is(err, io.EOF):
		return badRequest("empty_body", "request body is empty: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed_json", "request body ends in the middle of the JSON object")
	case errors.As(err, &synErr):
		return badRequest("malformed_json", "malformed JSON at byte %d: %v", synErr.Offset, synErr)
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return badRequest("malformed_json", "request body must be a JSON object, not %s", typeErr.Value)
		}
		return badRequest("invalid_field", "field %q: got JSON %s, want %s", field, typeErr.Value, jsonKind(typeErr.Type.String()))
	case errors.As(err, &b64Err):
		return badRequest("invalid_field", "a binary field is not valid base64 (byte %d)", int64(b64Err))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest("unknown_field", "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return badRequest("malformed_json", "cannot decode request body: %v", err)
	}
}

func jsonKind(goType string) string {
	switch goType {
	case "[]uint8":
		return "a base64 string"
	case "string":
		return "a string"
	case "uint64":
		return "an unsigned integer"
	default:
		return goType
	}
}

// canonicalUUID checks the 8-4-4-4-12 hex form and returns it lowercase.
func canonicalUUID(s string) (string, *apiError) {
	bad := badRequest("invalid_uuid", "volume UUID %q is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex)", truncate(s))
	if len(s) != 36 {
		return "", bad
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", bad
			}
		default:
			if !isHex(c) {
				return "", bad
			}
		}
	}
	return strings.ToLower(s), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func canonicalKeyID(s string) (string, *apiError) {
	if s == "" {
		return "", badRequest("invalid_key_id", "key_id is required (hex)")
	}
	if len(s) > maxKeyIDHex {
		return "", badRequest("invalid_key_id", "key_id is longer than %d hex digits", maxKeyIDHex)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", badRequest("invalid_key_id", "key_id is not hex: %v", err)
	}
	return strings.ToLower(s), nil
}

func checkNonceEvidence(nonce, evidence []byte) *apiError {
	switch {
	case len(nonce) == 0:
		return badRequest("invalid_nonce", "nonce is required: get one from POST /v1/nonce")
	case len(nonce) != nonceSize:
		return badRequest("invalid_nonce", "nonce is %d bytes, want %d", len(nonce), nonceSize)
	case len(evidence) == 0:
		return badRequest("invalid_evidence", "evidence is required")
	}
	return nil
}

func compactMeasurements(m json.RawMessage) (json.RawMessage, *apiError) {
	if m == nil {
		return nil, nil
	}
	if len(m) > maxMeasurements {
		return nil, badRequest("invalid_measurements", "measurements are larger than %d bytes", maxMeasurements)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, m); err != nil {
		return nil, badRequest("invalid_measurements", "measurements: %v", err)
	}
	if b.String() == "null" {
		return nil, nil
	}
	return b.Bytes(), nil
}

func validateEvidence(r *api.EvidenceRequest) *apiError {
	return checkNonceEvidence(r.Nonce, r.Evidence)
}

func validateRegister(r *api.RegisterRequest) *apiError {
	var e *apiError
	if r.Volume.UUID, e = canonicalUUID(r.Volume.UUID); e != nil {
		return e
	}
	if r.Volume.KeyID, e = canonicalKeyID(r.Volume.KeyID); e != nil {
		return e
	}
	if r.Volume.Measurements, e = compactMeasurements(r.Volume.Measurements); e != nil {
		return e
	}
	if r.Volume.Recovery != nil {
		if _, err := recovery.ParseToken(r.Volume.Recovery); err != nil {
			return badRequest("invalid_recovery", "recovery: %v", err)
		}
	}
	if r.CreationRecord != nil {
		if r.Nonce != nil || r.Evidence != nil {
			return badRequest("invalid_field", "give either creation_record or nonce and evidence, not both")
		}
		return nil
	}
	if r.Nonce == nil && r.Evidence == nil {
		return nil // an operator registration; the handler checks the certificate
	}
	return checkNonceEvidence(r.Nonce, r.Evidence)
}

func validateAdvance(r *api.AdvanceEpochRequest) *apiError {
	if e := checkNonceEvidence(r.Nonce, r.Evidence); e != nil {
		return e
	}
	if err := store.CheckAdvance(r.Old, r.New); err != nil {
		return badRequest("epoch_not_increasing", "new epoch %d must be greater than old epoch %d and at most %d", r.New, r.Old, uint64(store.MaxEpoch))
	}
	return nil
}

func validatePutKey(r *api.PutKeyRequest) *apiError {
	var e *apiError
	if r.KeyID, e = canonicalKeyID(r.KeyID); e != nil {
		return e
	}
	if len(r.Key) < minVolumeKey || len(r.Key) > maxVolumeKey {
		return badRequest("invalid_key", "key is %d bytes, want %d to %d", len(r.Key), minVolumeKey, maxVolumeKey)
	}
	r.Require, e = canonicalRequire(r.Require)
	return e
}

func validateRelease(r *api.ReleaseKeyRequest) *apiError {
	return checkNonceEvidence(r.Nonce, r.Evidence)
}
