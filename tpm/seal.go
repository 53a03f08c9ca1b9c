package tpm

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// SealOptions say what a secret is sealed to.
type SealOptions struct {
	// Bank is the PCR bank of the policy (default sha256).
	Bank Bank
	// PCRs are bound to their literal values (TPM2_PolicyPCR).
	PCRs []int
	// PCRValues are the expected values of PCRs; a PCR missing here is
	// read from the TPM.
	PCRValues map[int][]byte
	// PIN, when not nil, adds TPM2_PolicyAuthValue with the object's
	// authValue derived from it (see [PINAuth]).
	PIN []byte
	// PINSalt, with a PIN, salts it with PBKDF2 as systemd ≥ 254 does
	// (token field tpm2_salt); nil hashes the PIN directly (systemd 252).
	PINSalt []byte
	// PolicyKeyPEM is a PEM RSA public key whose signatures authorise PCR
	// policies (TPM2_PolicyAuthorize; systemd --tpm2-public-key).
	PolicyKeyPEM []byte
	// PolicyKeyPCRs are the PCRs the signed policies cover (usually [11]).
	PolicyKeyPCRs []int
	// Legacy seals under systemd's transient pre-SRK ECC primary instead
	// of the persistent SRK, for systemd < 255, whose token plugin does not
	// know tpm2_srk.
	Legacy bool
}

// Sealed is a sealed secret with what is needed to unseal it: the fields
// of a systemd-tpm2 token.
type Sealed struct {
	// Private and Public are the marshalled TPM2B_PRIVATE and TPM2B_PUBLIC
	// of the sealed keyed-hash object. For an offline seal ([SealOffline])
	// Private is the duplicate TPM2_Import takes, not yet the TPM's own.
	Private, Public []byte
	// Seed is the marshalled TPM2B_ENCRYPTED_SECRET of an offline seal: the
	// seed of the duplicate's outer wrapper, encrypted to the SRK. It is nil
	// for a secret sealed by [Seal].
	Seed []byte
	Bank Bank
	PCRs []int
	// PolicyDigest is the object's authPolicy.
	PolicyDigest  []byte
	PIN           bool
	PINSalt       []byte
	PolicyKeyPEM  []byte
	PolicyKeyPCRs []int
	// SRK is the serialized parent ([SRK.Serialize]); empty for a legacy
	// primary.
	SRK []byte
	// Legacy is set when the parent is the transient legacy ECC primary.
	Legacy bool
}

// Blob is systemd's tpm2-blob: TPM2B_PRIVATE ‖ TPM2B_PUBLIC, followed by
// the TPM2B_ENCRYPTED_SECRET seed for an offline seal (tpm2-util.c
// tpm2_marshal_blob).
func (s *Sealed) Blob() []byte {
	b := append(bytes.Clone(s.Private), s.Public...)
	return append(b, s.Seed...)
}

// maxEncryptedSecret is the size of TPMU_ENCRYPTED_SECRET (Part 2) for the
// largest parent a TPM 2.0 holds, an RSA-4096 key: it bounds a blob's seed.
const maxEncryptedSecret = 512

// SplitBlob splits a tpm2-blob into its TPM2B_PRIVATE, TPM2B_PUBLIC and,
// when present (an offline seal, see [SealOffline]), TPM2B_ENCRYPTED_SECRET
// seed, as tpm2-util.c tpm2_unmarshal_blob does, and checks that the public
// part is a sealed-data object. seed is nil for a blob without one; an
// empty seed and bytes after the seed are refused.
func SplitBlob(b []byte) (priv, pub, seed []byte, err error) {
	if len(b) < 2 {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes", ErrBadBlob, len(b))
	}
	n := 2 + int(binary.BigEndian.Uint16(b))
	if len(b) < n+2 {
		return nil, nil, nil, fmt.Errorf("%w: private part truncated", ErrBadBlob)
	}
	priv, rest := b[:n], b[n:]
	m := 2 + int(binary.BigEndian.Uint16(rest))
	if len(rest) < m {
		return nil, nil, nil, fmt.Errorf("%w: public part truncated", ErrBadBlob)
	}
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](rest[2:m])
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: public part: %v", ErrBadBlob, err)
	}
	if p.Type != tpm2.TPMAlgKeyedHash {
		return nil, nil, nil, fmt.Errorf("%w: object type 0x%x is not keyed-hash sealed data", ErrBadBlob, p.Type)
	}
	pub, rest = rest[:m], rest[m:]
	if len(rest) == 0 {
		return priv, pub, nil, nil
	}
	if seed, err = splitSeed(rest); err != nil {
		return nil, nil, nil, err
	}
	return priv, pub, seed, nil
}

// splitSeed checks that b is exactly one non-empty TPM2B_ENCRYPTED_SECRET.
func splitSeed(b []byte) ([]byte, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: seed truncated (%d bytes after the public part)", ErrBadBlob, len(b))
	}
	k := int(binary.BigEndian.Uint16(b))
	switch {
	case k == 0:
		return nil, fmt.Errorf("%w: empty seed after the public part", ErrBadBlob)
	case k > maxEncryptedSecret:
		return nil, fmt.Errorf("%w: seed of %d bytes (at most %d)", ErrBadBlob, k, maxEncryptedSecret)
	case len(b) < 2+k:
		return nil, fmt.Errorf("%w: seed truncated", ErrBadBlob)
	case len(b) > 2+k:
		return nil, fmt.Errorf("%w: %d bytes after the seed", ErrBadBlob, len(b)-2-k)
	}
	return b, nil
}

// PINAuth turns a PIN into the object's authValue as systemd does:
// SHA-256 of the PIN (tpm2-util.c tpm2_get_pin_auth), where a salted PIN
// is first replaced by base64(PBKDF2-HMAC-SHA256(pin, salt, 10000, 32))
// (cryptenroll-tpm2.c, tpm2_util_pbkdf2_hmac_sha256).
func PINAuth(pin, salt []byte) []byte {
	if salt != nil {
		pin = saltedPIN(pin, salt)
	}
	h := sha256.Sum256(pin)
	return h[:]
}

func (o *SealOptions) bank() Bank {
	if o.Bank == "" {
		return SHA256
	}
	return o.Bank
}

// policyKeyName loads a PEM RSA key as the TPM public area systemd builds
// for it (tpm2-util.c openssl_pubkey_to_tpm2_pubkey: RSA, sha256 names,
// decrypt|sign|userWithAuth, null scheme and symmetric, the exponent stored
// explicitly), and returns the area and its Name (Part 1, section 16).
func policyKey(pemKey []byte) (*rsa.PublicKey, tpm2.TPMTPublic, []byte, error) {
	blk, _ := pem.Decode(pemKey)
	if blk == nil {
		return nil, tpm2.TPMTPublic{}, nil, errors.New("policy key is not PEM")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, tpm2.TPMTPublic{}, nil, fmt.Errorf("parse policy key: %w", err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, tpm2.TPMTPublic{}, nil, fmt.Errorf("%w: policy key type %T (systemd signs pcr policies with rsa)", ErrUnsupported, k)
	}
	pub := tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{Decrypt: true, SignEncrypt: true, UserWithAuth: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
			KeyBits:   tpm2.TPMKeyBits(rk.N.BitLen()),
			Exponent:  uint32(rk.E),
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: rk.N.Bytes()}),
	}
	name, err := tpm2.ObjectName(&pub)
	if err != nil {
		return nil, tpm2.TPMTPublic{}, nil, fmt.Errorf("policy key name: %w", err)
	}
	return rk, pub, name.Buffer, nil
}

// pcrPolicyDigest is TPM2_PolicyPCR's pcrDigest: the session hash (sha256)
// over the selected PCR values concatenated in index order (Part 3,
// section 23.7).
func pcrPolicyDigest(pcrs []int, vals map[int][]byte) ([]byte, error) {
	h := sha256.New()
	for _, p := range sortedPCRs(pcrs) {
		v, ok := vals[p]
		if !ok {
			return nil, fmt.Errorf("no value for pcr %d", p)
		}
		h.Write(v)
	}
	return h.Sum(nil), nil
}

// PolicyDigest computes the sealing policy offline in systemd's order
// (tpm2-util.c tpm2_calculate_sealing_policy): PolicyAuthorize(policy key,
// empty reference) when a policy key is given, then PolicyPCR over pcrs
// with vals (skipped for no PCRs), then PolicyAuthValue when pin is set.
// Digest rules: Part 3, sections 23.7, 23.16 and 23.18.
func PolicyDigest(bank Bank, pcrs []int, vals map[int][]byte, policyKeyPEM []byte, pin bool) ([]byte, error) {
	alg, err := bank.Alg()
	if err != nil {
		return nil, err
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if policyKeyPEM != nil {
		_, _, name, err := policyKey(policyKeyPEM)
		if err != nil {
			return nil, err
		}
		if err := (tpm2.PolicyAuthorize{KeySign: tpm2.TPM2BName{Buffer: name}}).Update(calc); err != nil {
			return nil, err
		}
	}
	if len(pcrs) > 0 {
		d, err := pcrPolicyDigest(pcrs, vals)
		if err != nil {
			return nil, err
		}
		if err := (tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: d}, Pcrs: selection(alg, sortedPCRs(pcrs))}).Update(calc); err != nil {
			return nil, err
		}
	}
	if pin {
		if err := (tpm2.PolicyAuthValue{}).Update(calc); err != nil {
			return nil, err
		}
	}
	return calc.Hash().Digest, nil
}

// openParent returns the sealing parent: the SRK (created when absent) or
// the legacy primary.
func openParent(t transport.TPM, legacy bool) (*SRK, error) {
	if legacy {
		return legacyPrimary(t)
	}
	srk, _, err := GetOrCreateSRK(t)
	return srk, err
}

// Seal seals secret (at most 128 bytes) to the TPM under the policy o
// describes, as systemd's tpm2_seal: a keyed-hash object with fixedTPM and
// fixedParent, sha256 names, a null scheme, the policy as authPolicy and
// the PIN's authValue, created under the SRK (TPM2_Create, Part 3, section
// 12.1) in a session salted with the SRK whose parameter encryption
// carries the secret to the TPM encrypted. [SealOffline] makes the same
// object without a TPM.
func Seal(t transport.TPM, secret []byte, o SealOptions) (*Sealed, error) {
	bank, pcrs, err := checkSealOptions(secret, &o)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	vals := map[int][]byte{}
	var missing []int
	for _, p := range pcrs {
		if v, ok := o.PCRValues[p]; ok {
			vals[p] = v
		} else {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		cur, err := ReadPCRs(t, bank, missing)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
		for p, v := range cur {
			vals[p] = v
		}
	}
	policy, auth, err := sealPolicy(bank, pcrs, vals, &o)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	parent, err := openParent(t, o.Legacy)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	defer parent.flush(t)
	tmpl := sealedTemplate(policy, sealedAttributes)
	sess := tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Salted(parent.Handle, parent.Public), tpm2.AESEncryption(128, tpm2.EncryptIn))
	cr, err := (tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: sess},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: auth},
			Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(tmpl),
	}).Execute(t)
	if err != nil {
		return nil, fmt.Errorf("seal: create sealed object: %w", err)
	}
	s := newSealed(bank, pcrs, policy, &o)
	s.Private, s.Public = tpm2.Marshal(cr.OutPrivate), tpm2.Marshal(cr.OutPublic)
	if !o.Legacy {
		s.SRK = parent.Serialize()
	}
	return s, nil
}

// checkSealOptions checks what [Seal] and [SealOffline] are asked for before
// anything is computed, and returns the bank and the sorted literal PCRs.
func checkSealOptions(secret []byte, o *SealOptions) (Bank, []int, error) {
	if len(secret) == 0 || len(secret) > 128 {
		return "", nil, fmt.Errorf("secret of %d bytes (want 1 to 128)", len(secret))
	}
	bank := o.bank()
	if _, err := bank.Alg(); err != nil {
		return "", nil, err
	}
	if err := checkPCRs(o.PCRs); err != nil {
		return "", nil, err
	}
	if err := checkPCRs(o.PolicyKeyPCRs); err != nil {
		return "", nil, err
	}
	if (o.PolicyKeyPEM == nil) != (len(o.PolicyKeyPCRs) == 0) {
		return "", nil, errors.New("a policy key needs the pcrs it signs for, and the other way round")
	}
	return bank, sortedPCRs(o.PCRs), nil
}

// sealPolicy checks the PCR values' sizes and returns the sealed object's
// authPolicy ([PolicyDigest]) and authValue (the PIN's, see [PINAuth]; nil
// without a PIN).
func sealPolicy(bank Bank, pcrs []int, vals map[int][]byte, o *SealOptions) (policy, auth []byte, err error) {
	h, _ := bank.Hash()
	for _, p := range pcrs {
		if len(vals[p]) != h.Size() {
			return nil, nil, fmt.Errorf("pcr %d value has %d bytes, want %d for bank %s", p, len(vals[p]), h.Size(), bank)
		}
	}
	if policy, err = PolicyDigest(bank, pcrs, vals, o.PolicyKeyPEM, o.PIN != nil); err != nil {
		return nil, nil, err
	}
	if o.PIN != nil {
		auth = PINAuth(o.PIN, o.PINSalt)
		if err := checkAuthUsable(auth); err != nil {
			return nil, nil, err
		}
	}
	return policy, auth, nil
}

// sealedAttributes are the attributes of an object [Seal] creates:
// fixedTPM and fixedParent (systemd's tpm2_seal adds noDA when there is no
// PIN; without a PIN no authorisation can be guessed either way).
var sealedAttributes = tpm2.TPMAObject{FixedTPM: true, FixedParent: true}

// sealedTemplate is the public area of a sealed secret: a keyed-hash object
// with sha256 names, a null scheme and policy as its authPolicy. Unique is
// 32 zero bytes here; the TPM (or [SealOffline]) replaces it with
// H(seedValue ‖ secret).
func sealedTemplate(policy []byte, attrs tpm2.TPMAObject) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgKeyedHash,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		AuthPolicy:       tpm2.TPM2BDigest{Buffer: policy},
		Parameters:       tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull}}),
		Unique:           tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: make([]byte, 32)}),
	}
}

// newSealed fills in the fields of a [Sealed] that describe its policy.
func newSealed(bank Bank, pcrs []int, policy []byte, o *SealOptions) *Sealed {
	s := &Sealed{
		Bank: bank, PCRs: pcrs, PolicyDigest: policy, PIN: o.PIN != nil,
		PolicyKeyPEM: o.PolicyKeyPEM, PolicyKeyPCRs: sortedPCRs(o.PolicyKeyPCRs), Legacy: o.Legacy,
	}
	if o.PIN != nil {
		s.PINSalt = o.PINSalt
	}
	return s
}

// UnsealOptions carry what the user supplies at unseal time.
type UnsealOptions struct {
	// PIN for a blob sealed with one.
	PIN []byte
	// Signature is a systemd PCR signature JSON document (the UKI's .pcrsig
	// section, or tpm2-pcr-signature.json) for a blob with a policy key.
	Signature []byte
}

// Unseal recovers a sealed secret, as systemd's tpm2_unseal: it checks
// that the parent is the SRK the blob names, imports an offline seal
// ([SealOffline]; TPM2_Import of the blob's duplicate and seed), loads the
// object, replays the policy in a policy session salted with the parent
// (so that the secret comes back encrypted), compares the session's digest
// with the expected one, and unseals (TPM2_Unseal, Part 3, section 12.7).
// A PCR change gives [ErrPCRMismatch] (or [ErrVolumeKeyMeasured]); a wrong
// PIN [ErrWrongPIN]; another SRK [ErrSRKMismatch]; a damaged blob
// [ErrBadBlob].
func Unseal(t transport.TPM, s *Sealed, o UnsealOptions) ([]byte, error) {
	if s.PIN && o.PIN == nil {
		return nil, ErrPINRequired
	}
	bank := s.Bank
	if bank == "" {
		bank = SHA256
	}
	alg, err := bank.Alg()
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	private, public, seed, err := SplitBlob(s.Blob())
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	var parent *SRK
	if s.Legacy {
		if parent, err = legacyPrimary(t); err != nil {
			return nil, fmt.Errorf("unseal: %w", err)
		}
		defer parent.flush(t)
	} else {
		if parent, err = ReadSRK(t); err != nil {
			if errors.Is(err, tpm2.TPMRCHandle) {
				return nil, fmt.Errorf("unseal: %w: this tpm has no srk at 0x%x", ErrSRKMismatch, uint32(SRKHandle))
			}
			return nil, fmt.Errorf("unseal: %w", err)
		}
		if len(s.SRK) > 0 {
			h, name, _, err := ParseSerializedSRK(s.SRK)
			if err != nil {
				return nil, fmt.Errorf("unseal: %w", err)
			}
			if h != SRKHandle || !bytes.Equal(name, parent.Name.Buffer) {
				return nil, fmt.Errorf("unseal: %w: the blob was sealed under srk %x at 0x%x, this tpm has %x",
					ErrSRKMismatch, name, uint32(h), parent.Name.Buffer)
			}
		}
	}
	if seed != nil {
		if private, err = importSealed(t, parent, private, public, seed, !s.Legacy && len(s.SRK) > 0); err != nil {
			return nil, fmt.Errorf("unseal: %w", err)
		}
	}
	lr, err := (tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: parent.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: private[2:]},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](public[2:]),
	}).Execute(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCIntegrity) || errors.Is(err, tpm2.TPMRCSize) || errors.Is(err, tpm2.TPMRCValue) {
			return nil, fmt.Errorf("unseal: load sealed object: %w: it was sealed to another tpm or srk, or is damaged (%v)", ErrSRKMismatch, err)
		}
		return nil, fmt.Errorf("unseal: load sealed object: %w", err)
	}
	defer (tpm2.FlushContext{FlushHandle: lr.ObjectHandle}).Execute(t)

	opts := []tpm2.AuthOption{tpm2.Salted(parent.Handle, parent.Public), tpm2.AESEncryption(128, tpm2.EncryptOut)}
	if s.PIN {
		auth := PINAuth(o.PIN, s.PINSalt)
		if err := checkAuthUsable(auth); err != nil {
			return nil, fmt.Errorf("unseal: %w", err)
		}
		opts = append(opts, tpm2.Auth(auth))
	}
	sess, closeSess, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16, opts...)
	if err != nil {
		return nil, fmt.Errorf("unseal: start policy session: %w", err)
	}
	defer closeSess()
	if s.PolicyKeyPEM != nil {
		if err := policyAuthorize(t, sess.Handle(), alg, s, o.Signature); err != nil {
			return nil, fmt.Errorf("unseal: %w", err)
		}
	}
	if len(s.PCRs) > 0 {
		if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: selection(alg, s.PCRs)}).Execute(t); err != nil {
			return nil, fmt.Errorf("unseal: policy pcr: %w", err)
		}
	}
	if s.PIN {
		if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(t); err != nil {
			return nil, fmt.Errorf("unseal: policy auth value: %w", err)
		}
	}
	gd, err := (tpm2.PolicyGetDigest{PolicySession: sess.Handle()}).Execute(t)
	if err != nil {
		return nil, fmt.Errorf("unseal: policy digest: %w", err)
	}
	if len(s.PolicyDigest) > 0 && !bytes.Equal(gd.PolicyDigest.Buffer, s.PolicyDigest) {
		return nil, fmt.Errorf("unseal: %w", diagnosePolicy(t, s))
	}
	ur, err := (tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: lr.ObjectHandle, Name: lr.Name, Auth: sess}}).Execute(t)
	if err != nil {
		switch {
		case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
			return nil, fmt.Errorf("unseal: %w", ErrWrongPIN)
		case errors.Is(err, tpm2.TPMRCLockout):
			return nil, fmt.Errorf("unseal: %w", ErrLockout)
		case errors.Is(err, tpm2.TPMRCPolicyFail):
			return nil, fmt.Errorf("unseal: %w", diagnosePolicy(t, s))
		}
		return nil, fmt.Errorf("unseal: %w", err)
	}
	return ur.OutData.Buffer, nil
}

// diagnosePolicy explains a policy mismatch: [ErrVolumeKeyMeasured] when
// PCR 15 being at its reset value would satisfy the policy, else
// [ErrPCRMismatch].
func diagnosePolicy(t transport.TPM, s *Sealed) error {
	if s.PolicyKeyPEM == nil && len(s.PCRs) > 0 {
		if cur, err := ReadPCRs(t, s.Bank, s.PCRs); err == nil {
			if v, ok := cur[VolumeKeyPCR]; ok && !bytes.Equal(v, make([]byte, len(v))) {
				cur[VolumeKeyPCR] = make([]byte, len(v))
				if d, err := PolicyDigest(s.Bank, s.PCRs, cur, nil, s.PIN); err == nil && bytes.Equal(d, s.PolicyDigest) {
					return fmt.Errorf("%w: %w", ErrPCRMismatch, ErrVolumeKeyMeasured)
				}
			}
		}
	}
	return fmt.Errorf("%w (pcrs %v of bank %s changed since sealing)", ErrPCRMismatch, s.PCRs, s.Bank)
}

// policyAuthorize runs systemd's signed-policy steps (tpm2-util.c
// tpm2_make_policy_session): PolicyPCR over the signed PCRs (and, for an
// entry signed with a security version, the floor check, see
// [VersionPolicy]), the approved digest from PolicyGetDigest, the matching signature from the signature
// document checked by the TPM (TPM2_VerifySignature, Part 3, section 20.1,
// with the key loaded in the owner hierarchy so the ticket counts), then
// TPM2_PolicyAuthorize (Part 3, section 23.16).
func policyAuthorize(t transport.TPM, session tpm2.TPMHandle, alg tpm2.TPMIAlgHash, s *Sealed, sigDoc []byte) error {
	rk, pub, _, err := policyKey(s.PolicyKeyPEM)
	if err != nil {
		return err
	}
	if _, err := (tpm2.PolicyPCR{PolicySession: session, Pcrs: selection(alg, s.PolicyKeyPCRs)}).Execute(t); err != nil {
		return fmt.Errorf("policy pcr (signed pcrs): %w", err)
	}
	gd, err := (tpm2.PolicyGetDigest{PolicySession: session}).Execute(t)
	if err != nil {
		return fmt.Errorf("policy digest: %w", err)
	}
	approved := gd.PolicyDigest.Buffer
	if sigDoc == nil {
		return fmt.Errorf("%w: the blob has a signed pcr policy and no signature was given", ErrBadSignature)
	}
	sig, version, err := findVersioned(sigDoc, s.Bank, s.PolicyKeyPCRs, rk, approved, true)
	if err != nil {
		return err
	}
	if version > 0 {
		if err := policyFloor(t, session, version); err != nil {
			return err
		}
		gd, err := (tpm2.PolicyGetDigest{PolicySession: session}).Execute(t)
		if err != nil {
			return fmt.Errorf("policy digest: %w", err)
		}
		approved = gd.PolicyDigest.Buffer
	}
	le, err := (tpm2.LoadExternal{InPublic: tpm2.New2B(pub), Hierarchy: tpm2.TPMRHOwner}).Execute(t)
	if err != nil {
		return fmt.Errorf("load policy key: %w", err)
	}
	defer (tpm2.FlushContext{FlushHandle: le.ObjectHandle}).Execute(t)
	digest := sha256.Sum256(approved)
	vr, err := (tpm2.VerifySignature{
		KeyHandle: tpm2.NamedHandle{Handle: le.ObjectHandle, Name: le.Name},
		Digest:    tpm2.TPM2BDigest{Buffer: digest[:]},
		Signature: tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgRSASSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgRSASSA,
			&tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: sig}})},
	}).Execute(t)
	if err != nil {
		return fmt.Errorf("%w: the tpm rejected the signature: %v", ErrBadSignature, err)
	}
	_, err = (tpm2.PolicyAuthorize{
		PolicySession:  session,
		ApprovedPolicy: tpm2.TPM2BDigest{Buffer: approved},
		KeySign:        le.Name,
		CheckTicket:    vr.Validation,
	}).Execute(t)
	if err != nil {
		return fmt.Errorf("policy authorize: %w", err)
	}
	return nil
}

// ErrPINUnusable is returned for a PIN whose authValue has a zero byte
// before its last non-zero byte. go-tpm v0.9.8 (tpm2/sessions.go
// hmacKeyFromAuthValue) cuts such a value at its first zero byte instead of
// trimming only trailing zeros (Part 1, section 19.6.5), so its session
// HMAC would be wrong and the TPM would count a dictionary-attack failure.
// Refusing up front keeps the DA counter clean. [Enroll] with SaltPIN
// picks a salt that avoids it; unsalted PINs (systemd 252/253) hit it for
// about one PIN in nine.
var ErrPINUnusable = errors.New("pin's auth value has an interior zero byte, which go-tpm v0.9.8 mishandles; choose another pin or salt it")

func checkAuthUsable(auth []byte) error {
	if authHasInteriorZero(auth) {
		return ErrPINUnusable
	}
	return nil
}

func authHasInteriorZero(auth []byte) bool {
	t := bytes.TrimRight(auth, "\x00")
	return bytes.IndexByte(t, 0) >= 0
}

// SignPCRPolicy signs a PCR policy digest as systemd-measure does: RSA
// PKCS#1 v1.5 over SHA-256 of the digest. It is used to produce signature
// documents in tests and by image builders.
func SignPCRPolicy(k *rsa.PrivateKey, policy []byte) ([]byte, error) {
	d := sha256.Sum256(policy)
	return rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
}
