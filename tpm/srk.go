package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// SRKHandle is the persistent handle of the shared storage root key (TCG
// "TPM v2.0 Provisioning Guidance", section 7.8; systemd TPM2_SRK_HANDLE).
const SRKHandle tpm2.TPMHandle = 0x81000001

// srkAttributes are the SRK's object attributes: the EK Credential Profile
// template L-2 with the Provisioning Guidance changes (userWithAuth and noDA
// added, adminWithPolicy removed), as systemd's tpm2_get_srk_template.
var srkAttributes = tpm2.TPMAObject{
	FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
	NoDA: true, Restricted: true, Decrypt: true,
}

// legacyAttributes are those of systemd's pre-SRK transient primary
// (tpm2-util.c tpm2_get_legacy_template): like the SRK without noDA.
var legacyAttributes = tpm2.TPMAObject{
	FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
	Restricted: true, Decrypt: true,
}

// storageSymmetric is the symmetric definition of every storage parent
// here: AES-128-CFB, the SRK templates' (both of them) and the one every TPM
// implements.
func storageSymmetric() tpm2.TPMTSymDefObject {
	return tpm2.TPMTSymDefObject{
		Algorithm: tpm2.TPMAlgAES,
		KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
		Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
	}
}

func eccStorageTemplate(attrs tpm2.TPMAObject) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: storageSymmetric(),
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   tpm2.TPMECCNistP256,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		// systemd leaves unique empty (x and y of size 0); the TCG template
		// has 32 zero bytes each. Both are accepted when present; this one
		// is what gets created, so that the SRK equals the one systemd creates.
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// rsaStorageTemplate is an RSA storage key of keyBits with public exponent
// exponent (0 is the default 2^16+1, Part 2, TPMS_RSA_PARMS): systemd's RSA
// SRK template for 2048 and 0.
func rsaStorageTemplate(attrs tpm2.TPMAObject, keyBits tpm2.TPMKeyBits, exponent uint32) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: storageSymmetric(),
			Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
			KeyBits:   keyBits,
			Exponent:  exponent,
		}),
		// systemd leaves unique empty; the TCG template has 256 zero bytes.
		// The unique of a template is an input to the primary key's
		// derivation, so the empty one makes the SRK systemd makes.
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
	}
}

// SRKTemplate is the ECC P-256 storage primary template systemd creates at
// [SRKHandle] (tpm2-util.c tpm2_get_srk_template; TCG EK Credential Profile
// template L-2 as amended by the Provisioning Guidance, section 7.5.1).
func SRKTemplate() tpm2.TPMTPublic { return eccStorageTemplate(srkAttributes) }

// RSASRKTemplate is the RSA-2048 storage primary template systemd creates
// at [SRKHandle] on a TPM without ECC P-256 (tpm2-util.c
// tpm2_get_srk_template, tpm2_get_best_srk_template; TCG EK Credential
// Profile template L-1 as amended by the Provisioning Guidance, section
// 7.5.1): exponent 0 (2^16+1), AES-128-CFB, null scheme, sha256 names,
// the SRK attributes.
func RSASRKTemplate() tpm2.TPMTPublic { return rsaStorageTemplate(srkAttributes, 2048, 0) }

// SRK is a loaded storage parent: the persistent SRK or, for systemd's
// pre-v255 tokens, a transient legacy primary.
type SRK struct {
	Handle tpm2.TPMHandle
	Name   tpm2.TPM2BName
	Public tpm2.TPMTPublic
	// Transient is set for a legacy primary that must be flushed.
	Transient bool
}

func (s *SRK) flush(t transport.TPM) {
	if s.Transient {
		(tpm2.FlushContext{FlushHandle: s.Handle}).Execute(t)
	}
}

// srkRSAKeyBits are the RSA storage parent sizes accepted: systemd's
// template is 2048 bits; tpm2_calculate_seal and tpm2_get_srk take any RSA
// key, and Part 2 (TPMI_RSA_KEY_BITS) leaves the sizes to the TPM's
// implementation (swtpm 0.7.1 makes 2048 and 3072 bits, not 4096). 1024 is
// refused: it is below the 112-bit strength (NIST SP 800-131A) of the
// AES-128 and SHA-256 the parent's children are protected with.
var srkRSAKeyBits = []tpm2.TPMKeyBits{2048, 3072, 4096}

// rsaDefaultExponent is the RSA public exponent an exponent of 0 stands for
// (Part 2, TPMS_RSA_PARMS).
const rsaDefaultExponent = 65537

// checkRSAParms checks an RSA storage parent's size and exponent: one of
// srkRSAKeyBits, and 0 or 2^16+1 spelled out (the same key; another
// exponent is no SRK template's).
func checkRSAParms(p *tpm2.TPMSRSAParms) error {
	if !slices.Contains(srkRSAKeyBits, p.KeyBits) {
		return fmt.Errorf("%w: rsa key of %d bits (the srk is rsa 2048; 3072 and 4096 are taken too)", ErrUnsupported, p.KeyBits)
	}
	if p.Exponent != 0 && p.Exponent != rsaDefaultExponent {
		return fmt.Errorf("%w: rsa exponent %d (an srk's is 0, standing for 65537, or 65537)", ErrUnsupported, p.Exponent)
	}
	return nil
}

// storageTemplateFor returns the SRK template with attrs that pub must
// match but for unique: ECC P-256, or RSA of pub's size and exponent.
func storageTemplateFor(pub *tpm2.TPMTPublic, attrs tpm2.TPMAObject) (tpm2.TPMTPublic, string, error) {
	switch pub.Type {
	case tpm2.TPMAlgECC:
		return eccStorageTemplate(attrs), "aes-128-cfb, null scheme, nist p-256, null kdf", nil
	case tpm2.TPMAlgRSA:
		p, err := pub.Parameters.RSADetail()
		if err == nil {
			err = checkRSAParms(p)
		}
		if err != nil {
			return tpm2.TPMTPublic{}, "", fmt.Errorf("%w: %w", ErrSRKMismatch, err)
		}
		return rsaStorageTemplate(attrs, p.KeyBits, p.Exponent), "aes-128-cfb, null scheme", nil
	}
	return tpm2.TPMTPublic{}, "", fmt.Errorf("%w: object type 0x%x; want an ecc or rsa key", ErrSRKMismatch, pub.Type)
}

// checkStorageTemplate reports whether pub is a storage key of an SRK
// template (attributes, symmetric, scheme, curve or size and exponent, KDF,
// empty policy), ignoring unique, which is the key itself.
func checkStorageTemplate(pub *tpm2.TPMTPublic, attrs tpm2.TPMAObject) error {
	want, parms, err := storageTemplateFor(pub, attrs)
	if err != nil {
		return err
	}
	if pub.NameAlg != want.NameAlg {
		return fmt.Errorf("%w: name algorithm 0x%x; want sha256 names", ErrSRKMismatch, pub.NameAlg)
	}
	if pub.ObjectAttributes != attrs {
		return fmt.Errorf("%w: object attributes 0x%08x, want 0x%08x (restricted decrypt, fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA)",
			ErrSRKMismatch, binary.BigEndian.Uint32(tpm2.Marshal(pub.ObjectAttributes)), binary.BigEndian.Uint32(tpm2.Marshal(attrs)))
	}
	if len(pub.AuthPolicy.Buffer) != 0 {
		return fmt.Errorf("%w: it has an authorisation policy", ErrSRKMismatch)
	}
	same := *pub
	same.Unique = want.Unique
	if !bytes.Equal(tpm2.Marshal(&same), tpm2.Marshal(&want)) {
		return fmt.Errorf("%w: parameters are not %s", ErrSRKMismatch, parms)
	}
	return nil
}

// ReadSRK reads the SRK at [SRKHandle] and checks its template: ECC P-256
// ([SRKTemplate]) or RSA ([RSASRKTemplate], or 3072 or 4096 bits), as
// systemd creates one or the other. It returns an error wrapping
// tpm2.TPMRCHandle when there is none.
func ReadSRK(t transport.TPM) (*SRK, error) {
	rp, err := (tpm2.ReadPublic{ObjectHandle: SRKHandle}).Execute(t)
	if err != nil {
		return nil, fmt.Errorf("read srk at 0x%x: %w", uint32(SRKHandle), err)
	}
	pub, err := rp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("read srk at 0x%x: %w", uint32(SRKHandle), err)
	}
	if err := checkStorageTemplate(pub, srkAttributes); err != nil {
		return nil, fmt.Errorf("the key at 0x%x is not an srk of systemd's templates: %w", uint32(SRKHandle), err)
	}
	return &SRK{Handle: SRKHandle, Name: rp.Name, Public: *pub}, nil
}

// GetOrCreateSRK returns the SRK at [SRKHandle]. When there is none it
// creates one as systemd's tpm2_get_or_create_srk does: with [SRKTemplate]
// or, on a TPM that does not take ECC P-256, [RSASRKTemplate]
// (bestSRKTemplate), under the owner hierarchy (empty owner
// authorisation), made persistent (TPM2_EvictControl, Part 3, section
// 28.5). created says which.
func GetOrCreateSRK(t transport.TPM) (srk *SRK, created bool, err error) {
	srk, err = ReadSRK(t)
	if err == nil {
		return srk, false, nil
	}
	if !errors.Is(err, tpm2.TPMRCHandle) {
		return nil, false, err
	}
	tmpl, err := bestSRKTemplate(t)
	if err != nil {
		return nil, false, err
	}
	if err := persistSRK(t, tmpl); err != nil {
		return nil, false, err
	}
	srk, err = ReadSRK(t)
	return srk, true, err
}

// bestSRKTemplate picks the SRK template as systemd's
// tpm2_get_best_srk_template: ECC P-256 when the TPM takes its parameters
// (TPM2_TestParms, Part 3, section 10.3), else RSA-2048.
func bestSRKTemplate(t transport.TPM) (tpm2.TPMTPublic, error) {
	var refused error
	for _, tmpl := range []tpm2.TPMTPublic{SRKTemplate(), RSASRKTemplate()} {
		_, err := (tpm2.TestParms{Parameters: tpm2.TPMTPublicParms{Type: tmpl.Type, Parameters: tmpl.Parameters}}).Execute(t)
		if err == nil {
			return tmpl, nil
		}
		var rc tpm2.TPMRC
		if !errors.As(err, &rc) || rc.IsWarning() {
			return tpm2.TPMTPublic{}, fmt.Errorf("test the srk template's parameters: %w", err)
		}
		refused = err
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("%w: the tpm takes neither the ecc p-256 nor the rsa-2048 srk template (%w)", ErrUnsupported, refused)
}

// persistSRK creates a storage primary of tmpl under the owner hierarchy
// and makes it persistent at [SRKHandle].
func persistSRK(t transport.TPM, tmpl tpm2.TPMTPublic) error {
	cp, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tmpl)}).Execute(t)
	if err != nil {
		return fmt.Errorf("create srk: %w", err)
	}
	defer (tpm2.FlushContext{FlushHandle: cp.ObjectHandle}).Execute(t)
	_, err = (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: cp.ObjectHandle, Name: cp.Name},
		PersistentHandle: SRKHandle,
	}).Execute(t)
	if err != nil {
		return fmt.Errorf("persist srk at 0x%x: %w", uint32(SRKHandle), err)
	}
	return nil
}

// legacyPrimary creates systemd's pre-SRK transient ECC primary
// (tpm2_get_legacy_template), the parent of tokens without tpm2_srk.
func legacyPrimary(t transport.TPM) (*SRK, error) {
	cp, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(eccStorageTemplate(legacyAttributes))}).Execute(t)
	if err != nil {
		return nil, fmt.Errorf("create legacy ecc primary: %w", err)
	}
	pub, err := cp.OutPublic.Contents()
	if err != nil {
		(tpm2.FlushContext{FlushHandle: cp.ObjectHandle}).Execute(t)
		return nil, fmt.Errorf("create legacy ecc primary: %w", err)
	}
	return &SRK{Handle: cp.ObjectHandle, Name: cp.Name, Public: *pub, Transient: true}, nil
}

// iesysKeyResource is tpm2-tss's IESYSC_KEY_RSRC, the resource type of a
// serialized key handle.
const iesysKeyResource = 1

// SerializeSRK renders the SRK as tpm2-tss serialises an ESYS_TR
// (Esys_TR_Serialize; systemd's tpm2_srk token field): TPM2_HANDLE (big
// endian) ‖ TPM2B_NAME ‖ UINT32 IESYSC_KEY_RSRC ‖ TPM2B_PUBLIC.
func (s *SRK) Serialize() []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(s.Handle))
	b = append(b, tpm2.Marshal(s.Name)...)
	b = binary.BigEndian.AppendUint32(b, iesysKeyResource)
	return append(b, tpm2.Marshal(tpm2.New2B(s.Public))...)
}

// ParseSerializedSRK reads what [SRK.Serialize] writes.
func ParseSerializedSRK(b []byte) (handle tpm2.TPMHandle, name []byte, pub *tpm2.TPMTPublic, err error) {
	bad := func(what string) error { return fmt.Errorf("%w: serialized srk: %s", ErrBadBlob, what) }
	if len(b) < 4+2 {
		return 0, nil, nil, bad("too short")
	}
	handle = tpm2.TPMHandle(binary.BigEndian.Uint32(b))
	r := b[4:]
	n := int(binary.BigEndian.Uint16(r))
	if len(r) < 2+n+4+2 {
		return 0, nil, nil, bad("name truncated")
	}
	name = r[2 : 2+n]
	r = r[2+n:]
	if typ := binary.BigEndian.Uint32(r); typ != iesysKeyResource {
		return 0, nil, nil, bad(fmt.Sprintf("resource type %d is not a key", typ))
	}
	r = r[4:]
	pn := int(binary.BigEndian.Uint16(r))
	if len(r) != 2+pn {
		return 0, nil, nil, bad("public area length does not match")
	}
	pub, err = tpm2.Unmarshal[tpm2.TPMTPublic](r[2:])
	if err != nil {
		return 0, nil, nil, bad(err.Error())
	}
	got, err := tpm2.ObjectName(pub)
	if err != nil || !bytes.Equal(got.Buffer, name) {
		return 0, nil, nil, bad("name does not match the public area")
	}
	return handle, name, pub, nil
}
