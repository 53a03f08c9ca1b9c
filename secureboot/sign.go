package secureboot

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"debug/pe"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/foxboron/go-uefi/authenticode"
	"github.com/foxboron/go-uefi/pkcs7"
)

// Signer is a private key with the X.509 certificate of its public key: a
// db key signing PE images, or a PK/KEK key signing authenticated variables.
type Signer struct {
	key  crypto.Signer
	cert *x509.Certificate
}

// NewSigner pairs key with cert, refusing a certificate whose public key is
// not key's.
func NewSigner(key crypto.Signer, cert *x509.Certificate) (*Signer, error) {
	if key == nil || cert == nil {
		return nil, errors.New("new signer: key and certificate are required")
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("certificate public key does not match the private key")
	}
	return &Signer{key: key, cert: cert}, nil
}

// LoadSigner reads a PEM private key (PKCS#1 "RSA PRIVATE KEY", PKCS#8
// "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY") from keyPath and the PEM
// certificate from certPath, and refuses the pair when the certificate's
// public key is not the key's. Errors name the file at fault.
func LoadSigner(keyPath, certPath string) (*Signer, error) {
	s, err := loadPair(keyPath, certPath)
	if err != nil {
		return nil, fmt.Errorf("load signer: %w", err)
	}
	return s, nil
}

// loadPair reads and pairs a PEM key and certificate; its errors name the
// file at fault ("db.crt does not match db.key").
func loadPair(keyPath, certPath string) (*Signer, error) {
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	s, err := NewSigner(key, cert)
	if err != nil {
		return nil, fmt.Errorf("%s does not match %s", certPath, keyPath)
	}
	return s, nil
}

// ParsePrivateKeyPEM parses the first PEM block of b as a PKCS#1, PKCS#8 or
// SEC 1 private key. It refuses encrypted PEM and key types that cannot sign.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if _, ok := block.Headers["DEK-Info"]; ok {
		return nil, errors.New("encrypted PEM private keys are not supported")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}

// ParseCertificatePEM parses the first "CERTIFICATE" PEM block of b.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("PEM block %q is not a certificate", block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// Certificate returns the signer's certificate.
func (s *Signer) Certificate() *x509.Certificate { return s.cert }

// Key returns the signer's private key.
func (s *Signer) Key() crypto.Signer { return s.key }

// rsaKey returns the signer's RSA key. go-uefi's PKCS#7 writer labels every
// signature sha256WithRSAEncryption (and UEFI firmware verifies RSA), so
// signing refuses other key types instead of writing a mislabelled signature.
func (s *Signer) rsaKey() (*rsa.PrivateKey, error) {
	k, ok := s.key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing needs an RSA key, have %T", s.key)
	}
	return k, nil
}

// peAlignment is the Authenticode alignment of a signed image's end and of
// each attribute certificate entry.
const peAlignment = 8

// SignPE returns pe with an Authenticode signature (Microsoft "Windows
// Authenticode Portable Executable Signature Format"; the UEFI image
// verification of UEFI spec 32.4) by s appended as a WIN_CERTIFICATE of type
// WIN_CERT_TYPE_PKCS_SIGNED_DATA in the attribute certificate table.
//
// The image is first padded with zeros to a multiple of 8 bytes, as sbsign
// and osslsigncode do: the Authenticode digest of the padded unsigned file
// then equals that of the signed one, and is what EDK2 measures into PCR 4
// (EDK2 hashes trailing data without the spec's padding, so an unpadded
// image would measure differently from its [AuthenticodeDigest]).
//
// The SignedData carries no authenticated attributes (no signing time, as
// sbsign's PKCS7_NOATTR), and RSA PKCS#1 v1.5 is deterministic: the same
// image and key give the same bytes. The optional header's CheckSum is set
// for the signed file, as osslsigncode does (it is outside the digest, and
// UEFI firmware ignores it).
//
// SignPE refuses input that is not a PE/COFF image and images that already
// carry a certificate table.
func (s *Signer) SignPE(pe []byte) ([]byte, error) {
	if _, err := s.rsaKey(); err != nil {
		return nil, fmt.Errorf("sign pe: %w", err)
	}
	img, err := parsePE(pe)
	if err != nil {
		return nil, fmt.Errorf("sign pe: %w", err)
	}
	if img.Datadir.Size != 0 || img.Datadir.VirtualAddress != 0 {
		return nil, errors.New("sign pe: image already has an attribute certificate table (signed); sign the unsigned image")
	}
	padded := padPE(pe)
	img, err = parsePE(padded)
	if err != nil {
		return nil, fmt.Errorf("sign pe: padded image: %w", err)
	}
	if _, err := img.Sign(s.key, s.cert, pkcs7.NoAttr()); err != nil {
		return nil, fmt.Errorf("sign pe: %w", err)
	}
	// The signed image is the padded one with the certificate table
	// appended: read it into a buffer of exactly that size (go-uefi's
	// Bytes would double its buffer at the end, a UKI's size more memory).
	out := make([]byte, len(padded)+int(img.Datadir.Size))
	if _, err := io.ReadFull(img.Open(), out); err != nil {
		return nil, fmt.Errorf("sign pe: %w", err)
	}
	setPEChecksum(out)
	return out, nil
}

// setPEChecksum stores the PE image checksum (the ImageHlp CheckSumMappedFile
// algorithm: the 16-bit one's-complement-style sum of the file with the
// CheckSum field taken as zero, plus the file length) in the optional header
// of b, which parsePE accepted.
func setPEChecksum(b []byte) {
	off := int(binary.LittleEndian.Uint32(b[0x3c:])) + 4 + 20 + 64
	if off+4 > len(b) {
		return
	}
	var sum uint64
	for i := 0; i < len(b); i += 2 {
		if i == off || i == off+2 {
			continue
		}
		w := uint64(b[i])
		if i+1 < len(b) {
			w |= uint64(b[i+1]) << 8
		}
		sum += w
		sum = sum&0xffff + sum>>16
	}
	sum = sum&0xffff + sum>>16
	binary.LittleEndian.PutUint32(b[off:], uint32(sum)+uint32(len(b)))
}

// padPE returns pe padded with zeros to a multiple of [peAlignment] bytes
// (pe itself when it is already).
func padPE(pe []byte) []byte {
	n := (len(pe) + peAlignment - 1) / peAlignment * peAlignment
	if n == len(pe) {
		return pe
	}
	out := make([]byte, n)
	copy(out, pe)
	return out
}

// AuthenticodeDigest returns the SHA-256 Authenticode digest of pe: the hash
// a signature covers and the digest EDK2 measures into PCR 4 as
// EV_EFI_BOOT_SERVICES_APPLICATION when it loads the image. The checksum
// field, the certificate table directory entry and the certificate table are
// left out. Following the Authenticode spec, data hashed after the last
// section is zero-padded to 8 bytes; for an image whose length is not a
// multiple of 8 this differs from EDK2's measurement, which is why [SignPE]
// pads the file itself.
func AuthenticodeDigest(pe []byte) ([]byte, error) {
	img, err := parsePE(pe)
	if err != nil {
		return nil, fmt.Errorf("authenticode digest: %w", err)
	}
	d := img.Hash(crypto.SHA256)
	if d == nil {
		return nil, errors.New("authenticode digest: image is truncated")
	}
	return d, nil
}

// parsePE parses pe with go-uefi, turning its panics on malformed headers
// into errors and checking the bounds it does not.
func parsePE(b []byte) (img *authenticode.PECOFFBinary, err error) {
	if len(b) < 0x40 || b[0] != 'M' || b[1] != 'Z' {
		return nil, errors.New("not a PE/COFF image: no MZ header")
	}
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("not a PE/COFF image: %w", err)
	}
	var ndirs uint32
	switch oh := f.OptionalHeader.(type) {
	case *pe.OptionalHeader32:
		ndirs = oh.NumberOfRvaAndSizes
	case *pe.OptionalHeader64:
		ndirs = oh.NumberOfRvaAndSizes
	default:
		return nil, errors.New("not a PE/COFF image: no optional header")
	}
	if ndirs <= 4 {
		return nil, errors.New("not a PE/COFF image: optional header has no certificate table entry")
	}
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("not a valid PE/COFF image: %v", r)
		}
	}()
	img, err = authenticode.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("not a PE/COFF image: %w", err)
	}
	dd := img.Datadir
	if dd.Size != 0 && (uint64(dd.VirtualAddress)+uint64(dd.Size) > uint64(len(b)) || dd.VirtualAddress == 0) {
		return nil, fmt.Errorf("not a valid PE/COFF image: certificate table at %d+%d outside a %d-byte file", dd.VirtualAddress, dd.Size, len(b))
	}
	return img, nil
}
