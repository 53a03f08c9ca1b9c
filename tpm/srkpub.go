package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// p256Coordinate is the size of a NIST P-256 coordinate, which the TPM
// pads x and y of an ECC point to (Part 2, TPMS_ECC_POINT).
const p256Coordinate = 32

// ParseSRKPublic reads the public key of a vTPM's storage root key, to seal
// to it offline ([SealOffline]). It takes what `systemd-analyze srk` writes
// and systemd-repart --tpm2-device-key= reads (tpm2-util.c
// tpm2_load_public_key_file): a marshalled TPM2B_PUBLIC, with nothing after
// it; a bare TPMT_PUBLIC when the bytes are unambiguously one and not the
// other; or a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) of an ECC P-256 point
// or an RSA modulus (exponent 65537), which becomes [SRKTemplate] with that
// point or [RSASRKTemplate] (of the modulus' size) with that modulus: the
// public area of the SRK with that key, so that its Name is the SRK's
// (systemd's tpm2_load_public_key_file reads only a TPM2B_PUBLIC;
// systemd-tpm2-setup writes the PEM as /run/systemd/tpm2-srk-public-key.pem).
//
// Accepted are the storage parents systemd creates at [SRKHandle]
// (tpm2_get_srk_template): ECC P-256 and RSA of the SRK template — what
// [GetOrCreateSRK] makes and [Unseal] reads at [SRKHandle]. systemd's
// tpm2_calculate_seal takes any RSA size; here RSA is 2048 (systemd's
// template), 3072 or 4096 bits, with exponent 0 or 65537 (see
// srkRSAKeyBits), other sizes and exponents give [ErrUnsupported]. A key
// that is no storage parent — not restricted and decrypt, a signing key,
// another symmetric than AES-128-CFB — is refused with [ErrNotStorageKey];
// malformed bytes, a point off the curve or a modulus of the wrong length
// with [ErrBadPublicKey]; a storage key of another template (the SRK could
// never be it) with [ErrSRKMismatch].
func ParseSRKPublic(b []byte) (*tpm2.TPMTPublic, error) {
	var pub *tpm2.TPMTPublic
	var err error
	if t := bytes.TrimLeft(b, " \t\r\n"); bytes.HasPrefix(t, []byte("-----BEGIN")) {
		pub, err = srkFromPEM(t)
	} else {
		pub, err = unmarshalPublic(b)
	}
	if err != nil {
		return nil, fmt.Errorf("srk public key: %w", err)
	}
	if err := checkSRKPublic(pub); err != nil {
		return nil, fmt.Errorf("srk public key: %w", err)
	}
	return pub, nil
}

// unmarshalPublic reads a TPM2B_PUBLIC or a bare TPMT_PUBLIC that spans
// all of b.
func unmarshalPublic(b []byte) (*tpm2.TPMTPublic, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadPublicKey, len(b))
	}
	n := int(binary.BigEndian.Uint16(b))
	var as2B *tpm2.TPMTPublic
	var err2B error
	if n == len(b)-2 {
		as2B, err2B = unmarshalExactly(b[2:])
	}
	asT, errT := unmarshalExactly(b)
	switch {
	case as2B != nil && asT != nil:
		return nil, fmt.Errorf("%w: %d bytes read both as a TPM2B_PUBLIC and as a TPMT_PUBLIC", ErrBadPublicKey, len(b))
	case as2B != nil:
		return as2B, nil
	case asT != nil:
		return asT, nil
	case n == len(b)-2:
		return nil, fmt.Errorf("%w: TPM2B_PUBLIC: %v", ErrBadPublicKey, err2B)
	case n > len(b)-2:
		return nil, fmt.Errorf("%w: TPM2B_PUBLIC of %d bytes truncated to %d (or a TPMT_PUBLIC: %v)", ErrBadPublicKey, n, len(b)-2, errT)
	}
	if _, err := unmarshalExactly(b[2 : 2+n]); err == nil {
		return nil, fmt.Errorf("%w: %d bytes after the TPM2B_PUBLIC", ErrBadPublicKey, len(b)-2-n)
	}
	return nil, fmt.Errorf("%w: %d bytes are neither a TPM2B_PUBLIC nor a TPMT_PUBLIC (%v)", ErrBadPublicKey, len(b), errT)
}

// unmarshalExactly reads a TPMT_PUBLIC that is all of b, in the canonical
// form the TPM writes (go-tpm's Unmarshal ignores what follows).
func unmarshalExactly(b []byte) (*tpm2.TPMTPublic, error) {
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, err
	}
	m := tpm2.Marshal(p)
	switch {
	case bytes.HasPrefix(b, m) && len(b) > len(m):
		return nil, fmt.Errorf("%d bytes after the public area", len(b)-len(m))
	case !bytes.Equal(b, m):
		return nil, fmt.Errorf("public area is not in canonical form")
	}
	return p, nil
}

// srkFromPEM turns a PEM SubjectPublicKeyInfo of an ECC P-256 or RSA key
// into the SRK's public area with that key.
func srkFromPEM(b []byte) (*tpm2.TPMTPublic, error) {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: no pem block", ErrBadPublicKey)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the pem block", ErrBadPublicKey, len(rest))
	}
	if blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: pem block %q, want \"PUBLIC KEY\"", ErrBadPublicKey, blk.Type)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return eccSRKFromKey(k)
	case *rsa.PublicKey:
		return rsaSRKFromKey(k)
	default:
		return nil, fmt.Errorf("%w: public key type %T (the srk is ecc p-256 or rsa)", ErrUnsupported, k)
	}
}

// eccSRKFromKey is [SRKTemplate] with k's point.
func eccSRKFromKey(k *ecdsa.PublicKey) (*tpm2.TPMTPublic, error) {
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: ecc curve %s (the srk is nist p-256)", ErrUnsupported, k.Curve.Params().Name)
	}
	raw, err := k.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	pub := SRKTemplate()
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: raw[1 : 1+p256Coordinate]},
		Y: tpm2.TPM2BECCParameter{Buffer: raw[1+p256Coordinate:]},
	})
	return &pub, nil
}

// rsaSRKFromKey is the RSA SRK template of k's size with k's modulus and
// exponent 0, as systemd writes 65537 (tpm2_tpm2b_public_from_openssl_pkey)
// and creates the SRK (tpm2_get_srk_template).
func rsaSRKFromKey(k *rsa.PublicKey) (*tpm2.TPMTPublic, error) {
	if k.E != rsaDefaultExponent {
		return nil, fmt.Errorf("%w: rsa exponent %d (an srk's is 65537)", ErrUnsupported, k.E)
	}
	pub := rsaStorageTemplate(srkAttributes, tpm2.TPMKeyBits(k.N.BitLen()), 0)
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()})
	return &pub, nil
}

// checkSRKPublic checks that pub is a storage parent (Part 1, "Storage
// Keys": restricted, decrypt, not sign, with a symmetric algorithm for its
// children) of an SRK template: ECC P-256 with a point on the curve, or RSA
// of an accepted size and exponent with a modulus of that size.
func checkSRKPublic(pub *tpm2.TPMTPublic) error {
	switch pub.Type {
	case tpm2.TPMAlgECC, tpm2.TPMAlgRSA:
	case tpm2.TPMAlgKeyedHash, tpm2.TPMAlgSymCipher:
		return fmt.Errorf("%w: a symmetric object (type 0x%x) cannot be a parent of imported objects", ErrNotStorageKey, pub.Type)
	default:
		return fmt.Errorf("%w: object type 0x%x", ErrUnsupported, pub.Type)
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.Decrypt || a.SignEncrypt {
		return fmt.Errorf("%w: attributes restricted=%t decrypt=%t sign=%t (a storage parent is restricted and decrypt, and does not sign)",
			ErrNotStorageKey, a.Restricted, a.Decrypt, a.SignEncrypt)
	}
	var err error
	if pub.Type == tpm2.TPMAlgRSA {
		err = checkRSAKey(pub)
	} else {
		err = checkECCKey(pub)
	}
	if err != nil {
		return err
	}
	if err := checkStorageTemplate(pub, srkAttributes); err != nil {
		return fmt.Errorf("not the srk template, so the srk at 0x%x could never be this key: %w", uint32(SRKHandle), err)
	}
	return nil
}

// checkECCKey checks an ECC storage parent's symmetric, curve, name
// algorithm and point.
func checkECCKey(pub *tpm2.TPMTPublic) error {
	ecc, err := pub.Parameters.ECCDetail()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	if err := checkStorageSymmetric(&ecc.Symmetric); err != nil {
		return err
	}
	if ecc.CurveID != tpm2.TPMECCNistP256 {
		return fmt.Errorf("%w: ecc curve 0x%x (the srk is nist p-256)", ErrUnsupported, ecc.CurveID)
	}
	if err := checkSRKNameAlg(pub); err != nil {
		return err
	}
	_, err = srkPoint(pub)
	return err
}

// checkRSAKey checks an RSA storage parent's symmetric, size, exponent,
// name algorithm and modulus.
func checkRSAKey(pub *tpm2.TPMTPublic) error {
	p, err := pub.Parameters.RSADetail()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	if err := checkStorageSymmetric(&p.Symmetric); err != nil {
		return err
	}
	if err := checkRSAParms(p); err != nil {
		return err
	}
	if err := checkSRKNameAlg(pub); err != nil {
		return err
	}
	_, err = srkRSAKey(pub)
	return err
}

func checkSRKNameAlg(pub *tpm2.TPMTPublic) error {
	if pub.NameAlg != tpm2.TPMAlgSHA256 {
		return fmt.Errorf("%w: name algorithm 0x%x (the srk has sha256 names)", ErrUnsupported, pub.NameAlg)
	}
	return nil
}

// checkStorageSymmetric checks a storage parent's symmetric definition:
// AES-128-CFB, the SRK template's and the one every TPM implements.
func checkStorageSymmetric(sym *tpm2.TPMTSymDefObject) error {
	if sym.Algorithm != tpm2.TPMAlgAES {
		return fmt.Errorf("%w: symmetric algorithm 0x%x, want aes-128-cfb (a storage parent encrypts its children)", ErrNotStorageKey, sym.Algorithm)
	}
	bits, err1 := sym.KeyBits.AES()
	mode, err2 := sym.Mode.AES()
	if err1 != nil || err2 != nil || *bits != 128 || *mode != tpm2.TPMAlgCFB {
		return fmt.Errorf("%w: symmetric is not aes-128-cfb", ErrNotStorageKey)
	}
	return nil
}

// srkRSAKey returns the RSA public key of pub, whose modulus must have
// exactly keyBits (Part 2, TPM2B_PUBLIC_KEY_RSA: the TPM writes keyBits/8
// bytes) and be odd.
func srkRSAKey(pub *tpm2.TPMTPublic) (*rsa.PublicKey, error) {
	p, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	n, err := pub.Unique.RSA()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	k := &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: rsaDefaultExponent}
	if len(n.Buffer)*8 != int(p.KeyBits) || k.N.BitLen() != int(p.KeyBits) || k.N.Bit(0) == 0 {
		return nil, fmt.Errorf("%w: rsa modulus of %d bytes (%d bits, odd=%t), want %d bits, odd", ErrBadPublicKey, len(n.Buffer), k.N.BitLen(), k.N.Bit(0) == 1, p.KeyBits)
	}
	return k, nil
}

// srkPoint returns the ECC P-256 point of pub, whose coordinates must be
// 32 bytes each, as the TPM writes them.
func srkPoint(pub *tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	pt, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	if len(pt.X.Buffer) != p256Coordinate || len(pt.Y.Buffer) != p256Coordinate {
		return nil, fmt.Errorf("%w: ecc point coordinates of %d and %d bytes, want %d", ErrBadPublicKey, len(pt.X.Buffer), len(pt.Y.Buffer), p256Coordinate)
	}
	raw := append(append([]byte{4}, pt.X.Buffer...), pt.Y.Buffer...)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("%w: ecc point: %v", ErrBadPublicKey, err)
	}
	return k, nil
}

// MarshalSRKPublic renders the SRK's public area as `systemd-analyze srk`
// does (tpm2-util.c tpm2_marshal_public): a TPM2B_PUBLIC, the form
// [ParseSRKPublic] and systemd-repart --tpm2-device-key= read.
func MarshalSRKPublic(pub *tpm2.TPMTPublic) []byte { return tpm2.Marshal(tpm2.New2B(*pub)) }

// SRKPublicPEM renders an SRK's key as a PEM "PUBLIC KEY"
// (SubjectPublicKeyInfo), as systemd-tpm2-setup writes
// /run/systemd/tpm2-srk-public-key.pem: the ECC P-256 point, or the RSA
// modulus with exponent 65537. It loses the SRK's attributes:
// [ParseSRKPublic] puts them back from the template, so an RSA SRK whose
// public area spells its exponent out as 65537 (not the template's 0) is
// refused with [ErrUnsupported]: its PEM would name another key.
func SRKPublicPEM(pub *tpm2.TPMTPublic) ([]byte, error) {
	if err := checkSRKPublic(pub); err != nil {
		return nil, fmt.Errorf("srk public key: %w", err)
	}
	k, err := srkCryptoKey(pub)
	if err != nil {
		return nil, fmt.Errorf("srk public key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("srk public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// srkCryptoKey is the key of a checked SRK public area whose PEM
// [ParseSRKPublic] turns back into that area.
func srkCryptoKey(pub *tpm2.TPMTPublic) (any, error) {
	if pub.Type == tpm2.TPMAlgECC {
		return srkPoint(pub)
	}
	p, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	if p.Exponent != 0 {
		return nil, fmt.Errorf("%w: the rsa srk's public area spells its exponent out; a pem would name the template's key (exponent 0), not this one: use the tpm2b", ErrUnsupported)
	}
	return srkRSAKey(pub)
}
