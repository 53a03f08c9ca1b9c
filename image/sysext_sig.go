package image

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/foxboron/go-uefi/pkcs7"

	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/secureboot"
)

// VeritySigSize is the size of a verity signature partition: systemd-repart's
// VERITY_SIG_SIZE (src/repart/repart.c, 4 × HARD_MIN_SIZE = 16 KiB, "we know
// up front we're never going to put more than this in a verity sig
// partition"). systemd-dissect reads at most 4 MiB of it
// (dissect-image.c, dissected_image_load_verity_sig_partition).
const VeritySigSize = 16 << 10

// veritySigLabel is the partition name systemd-repart gives a /usr verity
// signature partition for x86-64: the type's name
// (partition_acquire_label, gpt_partition_type_uuid_to_string).
const veritySigLabel = "usr-x86-64-verity-sig"

// VeritySig is the JSON object of a verity signature partition (Discoverable
// Partitions Specification, "Verity signature partitions"), the fields and
// order systemd-repart writes (repart.c, partition_format_verity_sig).
type VeritySig struct {
	// RootHash is the verity root hash in lowercase hex. systemd-dissect
	// takes it as the image's root hash (it must match one given with
	// --root-hash) and finds the data and hash partitions by its halves.
	RootHash string `json:"rootHash"`
	// CertificateFingerprint is the SHA-256 of the signing certificate's
	// DER (repart.c: x509_fingerprint). It names the signer; it is not
	// what trust rests on (dissected_image_load_verity_sig_partition reads
	// only rootHash and signature, and the signature is verified against
	// the certificates the kernel or verity.d holds).
	CertificateFingerprint string `json:"certificateFingerprint"`
	// Signature is the DER PKCS#7 detached signature of RootHash (the hex
	// string, no newline), base64 in the JSON as encoding/json writes
	// []byte.
	Signature []byte `json:"signature"`
}

// SignRootHash returns the signature systemd expects of a verity root hash:
// PKCS#7 SignedData, DER, over the lowercase hex string of rootHash, made
// as repart.c's sign_verity_roothash makes it with OpenSSL's
// PKCS7_sign(cert, key, NULL, hex, PKCS7_DETACHED|PKCS7_NOATTR|PKCS7_BINARY):
// detached (no content), no authenticated attributes (the SHA-256 of the
// hex string is signed directly), the content bytes as they are, and the
// signer's certificate included. The kernel (dm-verity's
// root_hash_sig_key_desc, verify_pkcs7_signature over the hex root digest)
// and systemd's userspace fallback (dissect-image.c,
// validate_signature_userspace: PKCS7_verify(p7, verity.d certificates,
// NULL, hex, NULL, PKCS7_NOINTERN|PKCS7_NOVERIFY)) both verify this form.
//
// The signature is RSA PKCS#1 v1.5 with SHA-256, deterministic: the same
// root hash and key give the same bytes. Other key types are refused (the
// PKCS#7 writer labels every signature rsaEncryption).
func SignRootHash(s *secureboot.Signer, rootHash []byte) ([]byte, error) {
	if s == nil {
		return nil, errors.New("sign root hash: no signer")
	}
	if _, ok := s.Key().(*rsa.PrivateKey); !ok {
		return nil, fmt.Errorf("sign root hash: signing needs an RSA key, have %T", s.Key())
	}
	if len(rootHash) < 2*len(gpt.GUID{}) {
		return nil, fmt.Errorf("sign root hash: %d bytes, want a SHA-256 verity root hash", len(rootHash))
	}
	der, err := pkcs7.SignPKCS7(s.Key(), s.Certificate(), pkcs7.OIDData, []byte(hex.EncodeToString(rootHash)), pkcs7.NoAttr())
	if err != nil {
		return nil, fmt.Errorf("sign root hash: %w", err)
	}
	return der, nil
}

// VeritySigPartition returns the contents of the verity signature partition
// for rootHash signed by s: the [VeritySig] JSON object, compact as
// sd_json_variant_format(v, 0) writes it, padded with NUL bytes to
// [VeritySigSize] (repart.c: strgrowpad0 to the partition size;
// systemd-dissect requires everything after the first NUL to be NUL). For
// the same root hash, key and certificate it is byte for byte what
// systemd-repart 252 writes for Verity=signature.
func VeritySigPartition(s *secureboot.Signer, rootHash []byte) ([]byte, error) {
	sig, err := SignRootHash(s, rootHash)
	if err != nil {
		return nil, err
	}
	fp := sha256.Sum256(s.Certificate().Raw)
	text, err := json.Marshal(VeritySig{
		RootHash:               hex.EncodeToString(rootHash),
		CertificateFingerprint: hex.EncodeToString(fp[:]),
		Signature:              sig,
	})
	if err != nil {
		return nil, fmt.Errorf("verity signature json: %w", err)
	}
	if len(text)+1 > VeritySigSize { // repart.c: strlen(text)+1 > p->new_size
		return nil, fmt.Errorf("verity signature: %d bytes of JSON do not fit in the %d byte partition (a smaller certificate chain is needed)", len(text), VeritySigSize)
	}
	out := make([]byte, VeritySigSize)
	copy(out, text)
	return out, nil
}

// ParseVeritySig reads a verity signature partition's contents as
// systemd-dissect does (dissected_image_load_verity_sig_partition): JSON up
// to the first NUL, only NULs after it, a hex rootHash and a base64
// signature.
func ParseVeritySig(b []byte) (*VeritySig, []byte, error) {
	text := b
	for i, c := range b {
		if c != 0 {
			continue
		}
		for _, z := range b[i:] {
			if z != 0 {
				return nil, nil, errors.New("verity signature: data after the NUL padding")
			}
		}
		text = b[:i]
		break
	}
	var v VeritySig
	if err := json.Unmarshal(text, &v); err != nil {
		return nil, nil, fmt.Errorf("verity signature json: %w", err)
	}
	root, err := hex.DecodeString(v.RootHash)
	if err != nil {
		return nil, nil, fmt.Errorf("verity signature: rootHash: %w", err)
	}
	if len(v.Signature) == 0 {
		return nil, nil, errors.New("verity signature: no signature")
	}
	return &v, root, nil
}

// LoadSysextSigner reads the key and certificate that sign an extension's
// root hash (PEM files, see [secureboot.LoadSigner]) and checks them as the
// signature needs: both given, the certificate the key's, an RSA key.
//
// The certificate's validity period and key usage are not checked:
// systemd's userspace verification does not check them either
// (validate_signature_userspace passes PKCS7_NOVERIFY: no chain, time or
// purpose checks; the signer need only be one of the verity.d
// certificates), so an expired certificate still signs usable images.
func LoadSysextSigner(keyPath, certPath string) (*secureboot.Signer, error) {
	switch {
	case keyPath == "" && certPath == "":
		return nil, nil
	case certPath == "":
		return nil, errors.New("extension signature: the private key needs its certificate")
	case keyPath == "":
		return nil, errors.New("extension signature: the certificate needs its private key")
	}
	s, err := secureboot.LoadSigner(keyPath, certPath)
	if err != nil {
		return nil, fmt.Errorf("extension signature: %w", err)
	}
	if _, ok := s.Key().(*rsa.PrivateKey); !ok {
		return nil, fmt.Errorf("extension signature: %s is a %T key, want RSA", keyPath, s.Key())
	}
	return s, nil
}

// VeritySigUUID is the partition UUID of a verity signature partition as
// systemd-repart derives it: the DPS derives only the data and hash
// partitions' UUIDs from the root hash, and repart gives every other
// partition HMAC-SHA256(seed, type UUID) made a version 4 UUID
// (repart.c, partition_acquire_uuid; context_acquire_partition_uuids_and_labels
// keeps it for Verity=signature partitions). Here the key is the image's
// [Seed].
func VeritySigUUID(seed Seed) gpt.GUID {
	return repartUUID(seed[:], gpt.TypeUsrVeritySigX86_64)
}

// repartUUID is partition_acquire_uuid's UUID for the first partition of
// type typ: the first 16 bytes of HMAC-SHA256(seed, typ), typ in its text
// byte order (an sd_id128_t), made a version 4 UUID (id128_make_v4_uuid).
func repartUUID(seed []byte, typ gpt.GUID) gpt.GUID {
	m := hmac.New(sha256.New, seed)
	m.Write(typ[:])
	var g gpt.GUID
	copy(g[:], m.Sum(nil))
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g
}

// writeVeritySig stages the verity signature partition of root, signed by
// s, in file, for [Layout.VeritySig].
func writeVeritySig(s *secureboot.Signer, root []byte, file string) error {
	sig, err := VeritySigPartition(s, root)
	if err != nil {
		return err
	}
	return os.WriteFile(file, sig, 0o600)
}
