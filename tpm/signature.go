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

// PublicKeyFingerprint is systemd's pkfp: SHA-256 of the key's DER as
// OpenSSL's i2d_PublicKey writes it, which for RSA is the PKCS#1
// RSAPublicKey, not the SubjectPublicKeyInfo (tpm2-util.c
// pubkey_fingerprint; checked against systemd-measure sign in the tests).
func PublicKeyFingerprint(k *rsa.PublicKey) ([]byte, error) {
	h := sha256.Sum256(x509.MarshalPKCS1PublicKey(k))
	return h[:], nil
}

// SignPCRValues returns a systemd PCR signature document (the UKI's
// .pcrsig, as systemd-measure sign writes it) with one entry per value in
// values: each the PolicyPCR digest of PCR pcr at that value in bank
// ([PolicyDigest]), signed with k ([SignPCRPolicy]), with k's fingerprint.
// A TPM2_PolicyAuthorize sealing policy of k's public key is then satisfied
// whenever PCR pcr holds one of the values. A security version v > 0 adds
// the floor check to each policy ([VersionPolicy]): the entries then
// unseal only while the vTPM's floor is at most v, and systemd, which does
// not know the check, cannot use them.
func SignPCRValues(k *rsa.PrivateKey, bank Bank, pcr int, values [][]byte, version int) ([]byte, error) {
	fp, err := PublicKeyFingerprint(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	entries := make([]PCRSignature, 0, len(values))
	for _, v := range values {
		pol, err := PolicyDigest(bank, []int{pcr}, map[int][]byte{pcr: v}, nil, false)
		if err != nil {
			return nil, err
		}
		if version > 0 {
			if pol, err = VersionPolicy(pol, version); err != nil {
				return nil, err
			}
		}
		sig, err := SignPCRPolicy(k, pol)
		if err != nil {
			return nil, err
		}
		entries = append(entries, PCRSignature{PCRs: []int{pcr}, PKFP: hex.EncodeToString(fp),
			Pol: hex.EncodeToString(pol), Sig: base64.StdEncoding.EncodeToString(sig)})
	}
	return json.Marshal(map[string][]PCRSignature{string(bank): entries})
}

// signatureEntries parses a signature document and returns its entries for
// bank.
func signatureEntries(doc []byte, bank Bank) ([]PCRSignature, error) {
	var m map[string][]PCRSignature
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, fmt.Errorf("%w: signature document: %v", ErrBadSignature, err)
	}
	entries, ok := m[string(bank)]
	if !ok {
		return nil, fmt.Errorf("%w: signature document has no entries for bank %s", ErrBadSignature, bank)
	}
	return entries, nil
}

// findEntry returns the signature of the entry for pcrs, key fingerprint fp
// and policy digest policy (nil, nil for none).
func findEntry(entries []PCRSignature, pcrs []int, fp, policy []byte) ([]byte, error) {
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
	return nil, nil
}

// FindPCRSignature finds the signature in a signature document for bank,
// the PCRs, key and policy digest, as systemd's find_signature.
func FindPCRSignature(doc []byte, bank Bank, pcrs []int, k *rsa.PublicKey, policy []byte) ([]byte, error) {
	sig, _, err := findVersioned(doc, bank, pcrs, k, policy, false)
	return sig, err
}

// findVersioned finds the signature for the PolicyPCR digest policy, or,
// when versioned, for that policy with the floor check of some security
// version ([VersionPolicy]); it returns the signature and the version (0
// for none).
func findVersioned(doc []byte, bank Bank, pcrs []int, k *rsa.PublicKey, policy []byte, versioned bool) ([]byte, int, error) {
	entries, err := signatureEntries(doc, bank)
	if err != nil {
		return nil, 0, err
	}
	fp, err := PublicKeyFingerprint(k)
	if err != nil {
		return nil, 0, err
	}
	if sig, err := findEntry(entries, pcrs, fp, policy); sig != nil || err != nil {
		return sig, 0, err
	}
	for v := 1; versioned && v <= MaxSecurityVersion; v++ {
		pol, err := VersionPolicy(policy, v)
		if err != nil {
			return nil, 0, err
		}
		if sig, err := findEntry(entries, pcrs, fp, pol); sig != nil || err != nil {
			return sig, v, err
		}
	}
	return nil, 0, fmt.Errorf("%w: none for bank %s, pcrs %v, this key and the current pcr values (policy %x)", ErrBadSignature, bank, sortedPCRs(pcrs), policy)
}
