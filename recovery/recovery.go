// Package recovery keeps a volume's recovery passphrase where only the
// operator can read it: wrapped with HPKE (RFC 9180) to the operator's
// recovery public key, in a LUKS2 token of the volume ("confidisk-recovery").
//
// On SEV-SNP and TDX the serial console and the kernel log are emulated by
// the host, so a passphrase shown there is the host's. The guest instead
// seals the passphrase of its recovery keyslot to an X25519 public key given
// at image build time; the operator opens it with the private key
// (`confidisk luks recover`), offline, from a copy of the header.
//
// Keys are X25519 keys in the PEM forms OpenSSL writes:
//
//	openssl genpkey -algorithm X25519 -out recovery.key     # PKCS #8, the operator keeps it
//	openssl pkey -in recovery.key -pubout -out recovery.pub # PKIX, goes into the initrd
package recovery

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// TokenType is the LUKS2 token type of a wrapped recovery passphrase.
const TokenType = "confidisk-recovery"

// Suite names the HPKE suite (RFC 9180 section 7): KEM 0x0020, KDF 0x0001,
// AEAD 0x0002.
const Suite = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM"

// MaxTokenSize bounds the token JSON [ParseToken] reads.
const MaxTokenSize = 4096

// Token is the recovery token: the recovery keyslot's passphrase sealed to
// the operator's key, bound to the volume UUID (HPKE info
// "confidisk recovery v1\x00<uuid>").
type Token struct {
	// Keyslot is the recovery keyslot the passphrase opens.
	Keyslot int
	// Recipient is the SHA-256 of the operator public key's raw 32 bytes
	// (lowercase hex), so the operator can tell which key to use.
	Recipient string
	// Sealed is the HPKE encapsulated key followed by the ciphertext.
	Sealed []byte
}

type tokenJSON struct {
	Type      string   `json:"type"`
	Keyslots  []string `json:"keyslots"`
	Suite     string   `json:"suite"`
	Recipient string   `json:"recipient"`
	Sealed    string   `json:"sealed"`
}

// ErrNoToken means a header has no recovery token.
var ErrNoToken = errors.New("the volume has no confidisk-recovery token (it was provisioned without an operator recovery key)")

// ErrWrongKey means the operator key is not the one the passphrase was
// sealed to, or the token was altered.
var ErrWrongKey = errors.New("the recovery token does not open with this operator key")

// ParsePublicKey reads an X25519 public key: PEM "PUBLIC KEY" (PKIX).
func ParsePublicKey(b []byte) (*ecdh.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("recovery public key: want a PEM \"PUBLIC KEY\" block (openssl pkey -pubout)")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("recovery public key: %w", err)
	}
	pub, ok := k.(*ecdh.PublicKey)
	if !ok || pub.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("recovery public key: a %T, want an X25519 key (openssl genpkey -algorithm X25519)", k)
	}
	return pub, nil
}

// ParsePrivateKey reads an X25519 private key: PEM "PRIVATE KEY" (PKCS #8).
func ParsePrivateKey(b []byte) (*ecdh.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("operator key: want a PEM \"PRIVATE KEY\" block (openssl genpkey -algorithm X25519)")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("operator key: %w", err)
	}
	priv, ok := k.(*ecdh.PrivateKey)
	if !ok || priv.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("operator key: a %T, want an X25519 key", k)
	}
	return priv, nil
}

// MarshalKeys returns the PEM forms of priv and its public key, as OpenSSL
// writes them.
func MarshalKeys(priv *ecdh.PrivateKey) (privPEM, pubPEM []byte, err error) {
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pk, err := x509.MarshalPKIXPublicKey(priv.PublicKey())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}), nil
}

// Fingerprint is [Token.Recipient] for pub.
func Fingerprint(pub *ecdh.PublicKey) string {
	s := sha256.Sum256(pub.Bytes())
	return hex.EncodeToString(s[:])
}

func info(uuid string) []byte { return []byte("confidisk recovery v1\x00" + uuid) }

// Wrap seals passphrase (the passphrase of keyslot) to pub for volume uuid.
func Wrap(pub *ecdh.PublicKey, uuid string, keyslot int, passphrase []byte) (*Token, error) {
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("wrap the recovery passphrase: %w", err)
	}
	sealed, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info(uuid), passphrase)
	if err != nil {
		return nil, fmt.Errorf("wrap the recovery passphrase: %w", err)
	}
	return &Token{Keyslot: keyslot, Recipient: Fingerprint(pub), Sealed: sealed}, nil
}

// Unwrap opens the token with the operator's private key for volume uuid.
func (t *Token) Unwrap(priv *ecdh.PrivateKey, uuid string) ([]byte, error) {
	if fp := Fingerprint(priv.PublicKey()); fp != t.Recipient {
		return nil, fmt.Errorf("%w: it was sealed to the key with fingerprint %s, this one is %s", ErrWrongKey, t.Recipient, fp)
	}
	k, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pass, err := hpke.Open(k, hpke.HKDFSHA256(), hpke.AES256GCM(), info(uuid), t.Sealed)
	if err != nil {
		return nil, fmt.Errorf("%w (or the token belongs to another volume than %s)", ErrWrongKey, uuid)
	}
	return pass, nil
}

// Marshal renders the token JSON.
func (t *Token) Marshal() ([]byte, error) {
	return json.Marshal(tokenJSON{Type: TokenType, Keyslots: []string{strconv.Itoa(t.Keyslot)}, Suite: Suite,
		Recipient: t.Recipient, Sealed: base64.StdEncoding.EncodeToString(t.Sealed)})
}

// ParseToken reads a recovery token, refusing anything it would not write.
func ParseToken(b []byte) (*Token, error) {
	if len(b) > MaxTokenSize {
		return nil, fmt.Errorf("recovery token: %d bytes, more than %d", len(b), MaxTokenSize)
	}
	var j tokenJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("recovery token: %w", err)
	}
	switch {
	case j.Type != TokenType:
		return nil, fmt.Errorf("recovery token: type %q, want %q", j.Type, TokenType)
	case j.Suite != Suite:
		return nil, fmt.Errorf("recovery token: unknown suite %q", j.Suite)
	case len(j.Keyslots) != 1:
		return nil, fmt.Errorf("recovery token: %d keyslots, want one", len(j.Keyslots))
	}
	slot, err := strconv.Atoi(j.Keyslots[0])
	if err != nil || slot < 0 || slot >= 32 || strconv.Itoa(slot) != j.Keyslots[0] {
		return nil, fmt.Errorf("recovery token: invalid keyslot %q", j.Keyslots[0])
	}
	if r, err := hex.DecodeString(j.Recipient); err != nil || len(r) != sha256.Size {
		return nil, fmt.Errorf("recovery token: recipient %q is not a SHA-256 fingerprint", j.Recipient)
	}
	sealed, err := base64.StdEncoding.DecodeString(j.Sealed)
	if err != nil || len(sealed) < 32+16 {
		return nil, errors.New("recovery token: sealed is not base64 of an HPKE encapsulation and ciphertext")
	}
	return &Token{Keyslot: slot, Recipient: j.Recipient, Sealed: sealed}, nil
}

// Find returns the recovery token among a header's tokens (id → JSON).
func Find(tokens map[int]json.RawMessage) (*Token, error) {
	ids := make([]int, 0, len(tokens))
	for id := range tokens {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		var th struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(tokens[id], &th) == nil && th.Type == TokenType {
			t, err := ParseToken(tokens[id])
			if err != nil {
				return nil, fmt.Errorf("token %d: %w", id, err)
			}
			return t, nil
		}
	}
	return nil, ErrNoToken
}
