package tpm

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// offlineAttributes are the attributes of an offline-sealed object: none,
// as systemd's tpm2_calculate_seal (called with attributes=NULL by
// systemd-repart and systemd-cryptenroll). TPM2_Import refuses objects with
// fixedTPM or fixedParent (Part 3, section 13.3: TPM_RC_ATTRIBUTES), so
// these cannot be [Seal]'s. That loses nothing here: duplicating the
// object out of the TPM again needs its policy satisfied, which unseals it
// anyway, and whoever sealed it offline knew the secret.
var offlineAttributes = tpm2.TPMAObject{}

// SealOffline seals secret to the TPM whose storage root key srk is (from
// [ParseSRKPublic]: ECC P-256 or RSA) without that TPM, as systemd's
// tpm2_calculate_seal (systemd-repart --tpm2-device-key=, systemd ≥ 255):
// only that TPM can import and unseal the result, and only under the policy
// o describes.
//
// The object is the one [Seal] would create — a keyed-hash object with
// sha256 names, a null scheme, authPolicy [PolicyDigest] of the same
// options and the PIN's authValue — except for its attributes (see
// offlineAttributes) and, as for any two seals, its unique. Every PCR in
// o.PCRs needs its value in o.PCRValues (there is no TPM to read it from);
// signed policies (o.PolicyKeyPEM) and PINs are supported, the legacy
// primary is not (it has no public key to seal to before it exists).
//
// What is built, following Part 1 of the TPM 2.0 Library specification
// ("Protected Storage", "Duplication"):
//   - the sensitive area (Part 2, TPMT_SENSITIVE): sensitiveType
//     keyed-hash, the authValue, a random seedValue of the name algorithm's
//     size (the obfuscation value the TPM would draw), sensitive.bits = the
//     secret; the public area's unique is H(seedValue ‖ secret) (systemd
//     reuses the wrapper's seed as seedValue; the TPM accepts either, and a
//     value of its own keeps the wrapper's key out of the imported object);
//   - the seed of the outer wrapper and its encryption to the SRK
//     (TPM2B_ENCRYPTED_SECRET; Part 1, "Secret Sharing": §B.10.3 for RSA,
//     the ECC annex's ECDH for ECC): for an ECC parent an ephemeral P-256 key, Z = ECDH with the
//     SRK, seed = KDFe(sha256, Z, "DUPLICATE", ephemeral.x, srk.x, 256) and
//     the ephemeral point as the encrypted secret; for an RSA parent a
//     random seed of the name algorithm's size (32 bytes) and as the
//     encrypted secret RSA-OAEP of it to the SRK's modulus with the name
//     algorithm (sha256, for the OAEP hash and MGF1) and the label
//     "DUPLICATE\x00", its terminating zero included (Part 1, B.10.3;
//     systemd's tpm2_calculate_seal_rsa_seed → rsa_oaep_encrypt_bytes,
//     which passes strlen(label)+1);
//   - the duplicate (TPM2B_PRIVATE, Part 1 "Outer Duplication Wrapper"):
//     TPM2B_DIGEST(HMAC-SHA256(KDFa(sha256, seed, "INTEGRITY", "", "",
//     256), dupSensitive ‖ Name)) ‖ dupSensitive, where dupSensitive is
//     the TPM2B_SENSITIVE encrypted with AES-128-CFB, zero IV, under
//     KDFa(sha256, seed, "STORAGE", Name, "", 128). No inner wrapper
//     (symmetricAlg null at import), as systemd.
//
// The seed's encryption and the wrapper are go-tpm's tpm2.CreateDuplicate
// (labeled key encapsulation with label "DUPLICATE": ECDH or RSA-OAEP by
// the parent's type; the parent's null scheme makes the OAEP hash its name
// algorithm). The wrapper's keys come from the seed alike for both: KDFa
// with "STORAGE" and "INTEGRITY" and the object's Name, as systemd's
// tpm2_calculate_seal_private. The blob is [Sealed.Blob] with the seed
// appended (tpm2_marshal_blob), and SRK is set
// as tpm2_calculate_serialize does: the ESYS_TR serialization of
// [SRKHandle] with the Name computed from srk (nameAlg ‖ SHA-256 of the
// marshalled TPMT_PUBLIC), so that [Unseal] checks it against the TPM's SRK
// as for any other seal.
func SealOffline(srk *tpm2.TPMTPublic, secret []byte, o SealOptions) (*Sealed, error) {
	if o.Legacy {
		return nil, errors.New("seal offline: the legacy primary has no public key to seal to; seal to the srk")
	}
	if err := checkSRKPublic(srk); err != nil {
		return nil, fmt.Errorf("seal offline: %w", err)
	}
	bank, pcrs, err := checkSealOptions(secret, &o)
	if err != nil {
		return nil, fmt.Errorf("seal offline: %w", err)
	}
	for _, p := range pcrs {
		if _, ok := o.PCRValues[p]; !ok {
			return nil, fmt.Errorf("seal offline: no value for pcr %d: there is no tpm to read it from, every pcr sealed to needs its value", p)
		}
	}
	policy, auth, err := sealPolicy(bank, pcrs, o.PCRValues, &o)
	if err != nil {
		return nil, fmt.Errorf("seal offline: %w", err)
	}
	pub, sens, err := offlineObject(policy, auth, secret, offlineAttributes)
	if err != nil {
		return nil, fmt.Errorf("seal offline: %w", err)
	}
	dup, seed, err := duplicateTo(srk, &pub, &sens)
	if err != nil {
		return nil, fmt.Errorf("seal offline: %w", err)
	}
	srkName, err := tpm2.ObjectName(srk)
	if err != nil {
		return nil, fmt.Errorf("seal offline: srk name: %w", err)
	}
	s := newSealed(bank, pcrs, policy, &o)
	s.Private = tpm2.Marshal(tpm2.TPM2BPrivate{Buffer: dup})
	s.Public = tpm2.Marshal(tpm2.New2B(pub))
	s.Seed = tpm2.Marshal(tpm2.TPM2BEncryptedSecret{Buffer: seed})
	s.SRK = (&SRK{Handle: SRKHandle, Name: *srkName, Public: *srk}).Serialize()
	return s, nil
}

// offlineObject returns the public and sensitive areas of the sealed
// object: [sealedTemplate] with unique = SHA-256(seedValue ‖ secret) (Part
// 2, TPMU_PUBLIC_ID for a keyed-hash object) and a random seedValue.
func offlineObject(policy, auth, secret []byte, attrs tpm2.TPMAObject) (tpm2.TPMTPublic, tpm2.TPMTSensitive, error) {
	seedValue := make([]byte, sha256.Size)
	if _, err := rand.Read(seedValue); err != nil {
		return tpm2.TPMTPublic{}, tpm2.TPMTSensitive{}, err
	}
	unique := sha256.Sum256(append(append([]byte(nil), seedValue...), secret...))
	pub := sealedTemplate(policy, attrs)
	pub.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: unique[:]})
	sens := tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgKeyedHash,
		AuthValue:     tpm2.TPM2BAuth{Buffer: auth},
		SeedValue:     tpm2.TPM2BDigest{Buffer: seedValue},
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BSensitiveData{Buffer: secret}),
	}
	return pub, sens, nil
}

// duplicateTo wraps sens for import under srk: it returns the duplicate
// (the TPM2B_PRIVATE's buffer) and the encrypted seed (the
// TPM2B_ENCRYPTED_SECRET's buffer).
func duplicateTo(srk *tpm2.TPMTPublic, pub *tpm2.TPMTPublic, sens *tpm2.TPMTSensitive) (dup, seed []byte, err error) {
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("sealed object name: %w", err)
	}
	key, err := tpm2.ImportEncapsulationKey(srk)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	dup, seed, err = tpm2.CreateDuplicate(rand.Reader, key, name.Buffer, tpm2.Marshal(sens))
	if err != nil {
		return nil, nil, fmt.Errorf("wrap for import: %w", err)
	}
	return dup, seed, nil
}

// importSealed imports an offline-sealed object (the marshalled duplicate,
// public area and seed of its blob) under parent as systemd's
// tpm2_unseal does for a blob with a seed (tpm2_import): TPM2_Import (Part
// 3, section 13.3) with no inner wrapper (symmetricAlg null, empty
// encryptionKey) and the blob's seed as inSymSeed. It returns the
// TPM2B_PRIVATE the TPM wrapped under parent, which TPM2_Load takes.
// Nothing secret crosses the bus: the duplicate is encrypted to the parent.
//
// When srkChecked (the blob names this parent's SRK, so the seed is
// encrypted to this key) an integrity failure means the blob is damaged or
// forged: [ErrBadBlob]; otherwise it may as well be another TPM's:
// [ErrSRKMismatch].
func importSealed(t transport.TPM, parent *SRK, private, public, seed []byte, srkChecked bool) ([]byte, error) {
	ir, err := (tpm2.Import{
		ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)},
		ObjectPublic: tpm2.BytesAs2B[tpm2.TPMTPublic](public[2:]),
		Duplicate:    tpm2.TPM2BPrivate{Buffer: private[2:]},
		InSymSeed:    tpm2.TPM2BEncryptedSecret{Buffer: seed[2:]},
		Symmetric:    tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
	}).Execute(t)
	if err == nil {
		return tpm2.Marshal(ir.OutPrivate), nil
	}
	if !importRejected(t, parent, err) {
		return nil, fmt.Errorf("import sealed object: %w", err)
	}
	if srkChecked {
		return nil, fmt.Errorf("import sealed object: %w: its seed or duplicate does not verify under the srk it names, so it was damaged or forged (%w)", ErrBadBlob, err)
	}
	return nil, fmt.Errorf("import sealed object: %w: it was sealed to another tpm's srk, or is damaged (%w)", ErrSRKMismatch, err)
}

// importRejected reports whether TPM2_Import refused the blob itself: its
// integrity HMAC, the seed's point, size or OAEP encoding, or a public area
// that does not match the sensitive one.
//
// libtpms (swtpm) answers a seed that does not RSA-OAEP-decode under an RSA
// parent with TPM_RC_FAILURE (CryptRsa.c CryptRsaDecrypt, its OpenSSL
// path: any EVP_PKEY_decrypt failure) where the reference code has
// TPM_RC_VALUE, without going into failure mode; so a TPM_RC_FAILURE under
// an RSA parent counts as a refused blob when the TPM still answers the
// next command (TPM2_ReadPublic of the parent), and as the TPM failure it
// says otherwise.
func importRejected(t transport.TPM, parent *SRK, err error) bool {
	for _, rc := range []tpm2.TPMRC{tpm2.TPMRCIntegrity, tpm2.TPMRCValue, tpm2.TPMRCSize, tpm2.TPMRCECCPoint,
		tpm2.TPMRCBinding, tpm2.TPMRCKey, tpm2.TPMRCKeySize, tpm2.TPMRCInsufficient, tpm2.TPMRCAttributes} {
		if errors.Is(err, rc) {
			return true
		}
	}
	if parent.Public.Type != tpm2.TPMAlgRSA || !errors.Is(err, tpm2.TPMRCFailure) {
		return false
	}
	_, alive := (tpm2.ReadPublic{ObjectHandle: parent.Handle}).Execute(t)
	return alive == nil
}
