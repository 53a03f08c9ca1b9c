package broker

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A nonce is stateless: issuing one writes nothing. It is
//
//	expires (8 bytes, Unix nanoseconds, big endian) ‖ random (8 bytes)
//	‖ HMAC-SHA-256(nonce key, "confidisk nonce v1" ‖ 0x00 ‖ the first 16 bytes)[:16]
//
// so that every replica holding the same nonce key accepts it until it
// expires, and only nonces that were used are stored (until they expire).
const (
	nonceSize      = 32
	nonceMACOffset = 16
	nonceKeySize   = 32
	nonceMACLabel  = "confidisk nonce v1"
	nonceKeyInfo   = "confidisk broker nonce key v1"
)

var (
	errNonceForged  = errors.New("nonce was not issued by a broker with this nonce key")
	errNonceExpired = errors.New("nonce expired")
)

// nonceMinter issues and checks stateless nonces.
type nonceMinter struct {
	key []byte
	ttl time.Duration
}

// nonceKey derives the nonce key from the key-encryption key, so that
// replicas sharing a KEK share it; without a KEK it is random (one process).
func nonceKey(kek []byte) ([]byte, error) {
	if kek == nil {
		k := make([]byte, nonceKeySize)
		rand.Read(k)
		return k, nil
	}
	k, err := hkdf.Key(sha256.New, kek, nil, nonceKeyInfo, nonceKeySize)
	if err != nil {
		return nil, fmt.Errorf("derive nonce key: %w", err)
	}
	return k, nil
}

func (m *nonceMinter) mac(body []byte) []byte {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte(nonceMACLabel))
	h.Write([]byte{0})
	h.Write(body[:nonceMACOffset])
	return h.Sum(nil)[:nonceSize-nonceMACOffset]
}

// mint returns a fresh nonce valid until now + ttl, and that instant.
func (m *nonceMinter) mint(now time.Time) ([]byte, time.Time) {
	expires := now.Add(m.ttl).UTC()
	n := make([]byte, nonceSize)
	binary.BigEndian.PutUint64(n, uint64(expires.UnixNano()))
	rand.Read(n[8:nonceMACOffset])
	copy(n[nonceMACOffset:], m.mac(n))
	return n, expires
}

// check verifies the nonce's MAC and lifetime and returns its expiry.
func (m *nonceMinter) check(n []byte, now time.Time) (time.Time, error) {
	if len(n) != nonceSize || !hmac.Equal(n[nonceMACOffset:], m.mac(n)) {
		return time.Time{}, errNonceForged
	}
	expires := time.Unix(0, int64(binary.BigEndian.Uint64(n))).UTC()
	if !now.Before(expires) {
		return time.Time{}, errNonceExpired
	}
	return expires, nil
}

// MintNonce makes a nonce valid until expires that every broker with this
// key-encryption key accepts (once), as POST /v1/nonce would answer. It is
// for load tests that must prepare real evidence (a TPM quote over the
// nonce) before the timing; whoever holds the KEK can do it anyway.
func MintNonce(kek []byte, expires time.Time) ([]byte, error) {
	if len(kek) != kekSize {
		return nil, fmt.Errorf("mint nonce: key-encryption key is %d bytes, want %d", len(kek), kekSize)
	}
	k, err := nonceKey(kek)
	if err != nil {
		return nil, fmt.Errorf("mint nonce: %w", err)
	}
	m := &nonceMinter{key: k}
	n, _ := m.mint(expires)
	return n, nil
}
