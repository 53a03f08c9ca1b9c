package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

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

func eccStorageTemplate(attrs tpm2.TPMAObject) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{
				Algorithm: tpm2.TPMAlgAES,
				KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
				Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
			},
			Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		// systemd leaves unique empty (x and y of size 0); the TCG template
		// has 32 zero bytes each. Both are accepted when present; this one
		// is what gets created, so that the SRK equals the one systemd creates.
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
	}
}

// SRKTemplate is the ECC P-256 storage primary template systemd creates at
// [SRKHandle] (tpm2-util.c tpm2_get_srk_template; TCG EK Credential Profile
// template L-2 as amended by the Provisioning Guidance, section 7.5.1).
func SRKTemplate() tpm2.TPMTPublic { return eccStorageTemplate(srkAttributes) }

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

// checkStorageTemplate reports whether pub is an ECC P-256 storage key of
// the SRK template (attributes, symmetric, scheme, curve, KDF, empty policy),
// ignoring unique, which is the key itself.
func checkStorageTemplate(pub *tpm2.TPMTPublic, attrs tpm2.TPMAObject) error {
	want := eccStorageTemplate(attrs)
	if pub.Type != want.Type || pub.NameAlg != want.NameAlg {
		return fmt.Errorf("%w: type 0x%x, name algorithm 0x%x; want an ecc key with sha256 names", ErrSRKMismatch, pub.Type, pub.NameAlg)
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
		return fmt.Errorf("%w: parameters are not aes-128-cfb, null scheme, nist p-256, null kdf", ErrSRKMismatch)
	}
	return nil
}

// ReadSRK reads the SRK at [SRKHandle] and checks its template. It returns
// an error wrapping tpm2.TPMRCHandle when there is none.
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
		return nil, fmt.Errorf("the key at 0x%x is not an ecc p-256 srk: %w", uint32(SRKHandle), err)
	}
	return &SRK{Handle: SRKHandle, Name: rp.Name, Public: *pub}, nil
}

// GetOrCreateSRK returns the SRK at [SRKHandle], creating it with
// [SRKTemplate] under the owner hierarchy (empty owner authorisation) and
// making it persistent (TPM2_EvictControl, Part 3, section 28.5) when there
// is none, as systemd's tpm2_get_or_create_srk. created says which.
func GetOrCreateSRK(t transport.TPM) (srk *SRK, created bool, err error) {
	srk, err = ReadSRK(t)
	if err == nil {
		return srk, false, nil
	}
	if !errors.Is(err, tpm2.TPMRCHandle) {
		return nil, false, err
	}
	cp, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(SRKTemplate())}).Execute(t)
	if err != nil {
		return nil, false, fmt.Errorf("create srk: %w", err)
	}
	defer (tpm2.FlushContext{FlushHandle: cp.ObjectHandle}).Execute(t)
	_, err = (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: cp.ObjectHandle, Name: cp.Name},
		PersistentHandle: SRKHandle,
	}).Execute(t)
	if err != nil {
		return nil, false, fmt.Errorf("persist srk at 0x%x: %w", uint32(SRKHandle), err)
	}
	srk, err = ReadSRK(t)
	return srk, true, err
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
