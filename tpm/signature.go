package tpm

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
)

// saltedPIN is systemd's salted PIN (cryptenroll-tpm2.c): the base64 of
// PBKDF2-HMAC-SHA256(pin, salt, 10000 iterations, 32 bytes).
func saltedPIN(pin, salt []byte) []byte {
	k, err := pbkdf2.Key(sha256.New, string(pin), salt, 10000, 32)
	if err != nil {
		// Only a FIPS-140-only mode refusing short salts gets here;
		// systemd's salts are 32 bytes.
		panic(fmt.Sprintf("pbkdf2: %v", err))
	}
	return []byte(base64.StdEncoding.EncodeToString(k))
}

// PCRSignature is one entry of a systemd PCR signature document (the
// UKI's .pcrsig section; systemd-measure sign): for one bank, the PCRs,
// the SHA-256 fingerprint of the DER public key, the policy digest and the
// RSA signature over its SHA-256.
type PCRSignature struct {
	PCRs []int  `json:"pcrs"`
	PKFP string `json:"pkfp"`
	Pol  string `json:"pol"`
	Sig  string `json:"sig"`
}

// PublicKeyFingerprint is systemd's pkfp: SHA-256 of the DER
// SubjectPublicKeyInfo (tpm2-util.c find_signature, pubkey_fingerprint).
func PublicKeyFingerprint(k *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(der)
	return h[:], nil
}

// FindPCRSignature finds the signature in a signature document for bank,
// the PCRs, key and policy digest, as systemd's find_signature.
func FindPCRSignature(doc []byte, bank Bank, pcrs []int, k *rsa.PublicKey, policy []byte) ([]byte, error) {
	var m map[string][]PCRSignature
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, fmt.Errorf("%w: signature document: %v", ErrBadSignature, err)
	}
	entries, ok := m[string(bank)]
	if !ok {
		return nil, fmt.Errorf("%w: signature document has no entries for bank %s", ErrBadSignature, bank)
	}
	fp, err := PublicKeyFingerprint(k)
	if err != nil {
		return nil, err
	}
	want := sortedPCRs(pcrs)
	for _, e := range entries {
		if !slices.Equal(sortedPCRs(e.PCRs), want) {
			continue
		}
		if f, err := hex.DecodeString(e.PKFP); err != nil || !bytes.Equal(f, fp) {
			continue
		}
		if p, err := hex.DecodeString(e.Pol); err != nil || !bytes.Equal(p, policy) {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(e.Sig)
		if err != nil {
			return nil, fmt.Errorf("%w: signature is not base64: %v", ErrBadSignature, err)
		}
		return sig, nil
	}
	return nil, fmt.Errorf("%w: none for bank %s, pcrs %v, this key and the current pcr values (policy %x)", ErrBadSignature, bank, want, policy)
}
