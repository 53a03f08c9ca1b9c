package tpm

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// A security version floor protects sealed secrets from a downgrade without
// a verifier: each signed PCR policy of an image with security version v
// (1..[MaxSecurityVersion]) is PolicyPCR over its PCR values followed by
// TPM2_PolicyNV (Part 3, section 23.9) on the floor index with
// TPM_EO_BITCLEAR against the mask of bits v..63: it holds only while no
// bit at or above v is set. A guest that unsealed with version v sets bits
// 0..v-1 (TPM2_NV_SetBits, Part 3, section 31.10), so that afterwards every
// image signed with a lower version fails its policy in the TPM. The index
// is a TPM_NT_BITS index: its bits can be set and never cleared (Part 2,
// section 13.4), short of deleting the index, which needs the owner's
// authorisation.
//
// The floor's name enters every versioned policy, so the index's public
// area is fixed ([SecurityVersionPublic]) and an image builder computes the
// policies without a TPM.

// SecurityVersionIndex is the NV index of the security version floor.
const SecurityVersionIndex tpm2.TPMHandle = 0x01c3d102

// MaxSecurityVersion is the highest security version: one bit of the
// 64-bit floor index per version.
const MaxSecurityVersion = 64

// ErrBelowFloor is returned when an image's security version is below the
// floor a later image raised in the vTPM: a downgrade.
var ErrBelowFloor = errors.New("security version below the vTPM's floor (a downgrade)")

// SecurityVersionPublic is the floor index's public area: TPM_NT_BITS,
// AUTHWRITE|AUTHREAD|NO_DA, sha256 name, empty authPolicy, 8 bytes.
func SecurityVersionPublic() tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: SecurityVersionIndex,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			NT:        tpm2.TPMNTBits,
			AuthWrite: true,
			AuthRead:  true,
			NoDA:      true,
		},
		DataSize: 8,
	}
}

// securityVersionName is the floor index's Name once written, the one
// TPM2_PolicyNV binds.
func securityVersionName() []byte {
	pub := SecurityVersionPublic()
	pub.Attributes.Written = true
	n, err := tpm2.NVName(&pub)
	if err != nil {
		panic(fmt.Sprintf("name of the security version index: %v", err)) // a fixed, valid public area
	}
	return n.Buffer
}

func checkSecurityVersion(v int) error {
	if v < 1 || v > MaxSecurityVersion {
		return fmt.Errorf("security version %d is outside 1..%d", v, MaxSecurityVersion)
	}
	return nil
}

// floorMask is TPM2_PolicyNV's operandB for version v: bits v..63, as the
// big-endian 8 bytes the index holds.
func floorMask(v int) []byte {
	var m uint64
	if v < 64 {
		m = ^uint64(0) << v
	}
	return binary.BigEndian.AppendUint64(nil, m)
}

// VersionPolicy extends a policy digest (the session's after PolicyPCR)
// with TPM2_PolicyNV for security version v, as the TPM does (Part 3,
// section 23.9.4): H(old ‖ TPM_CC_PolicyNV ‖ H(operandB ‖ offset ‖
// operation) ‖ nvIndex→Name), sha256.
func VersionPolicy(policy []byte, v int) ([]byte, error) {
	if err := checkSecurityVersion(v); err != nil {
		return nil, err
	}
	args := sha256.New()
	args.Write(floorMask(v))
	args.Write([]byte{0, 0}) // offset
	args.Write(binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMEOBitClear)))
	h := sha256.New()
	h.Write(policy)
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMCCPolicyNV)))
	h.Write(args.Sum(nil))
	h.Write(securityVersionName())
	return h.Sum(nil), nil
}

// policyFloor runs TPM2_PolicyNV for version v in session, authorised by
// the floor index itself (AUTHREAD, empty authValue). A floor above v gives
// [ErrBelowFloor]; a floor never raised [ErrNVIndexMissing] or
// [ErrCounterUninitialised].
func policyFloor(t transport.TPM, session tpm2.TPMHandle, v int) error {
	name, written, err := readNVPublic(t, SecurityVersionPublic())
	if err != nil {
		return fmt.Errorf("security version floor: %w", err)
	}
	if !written {
		return fmt.Errorf("security version floor: %w: index 0x%08x", ErrCounterUninitialised, uint32(SecurityVersionIndex))
	}
	_, err = (tpm2.PolicyNV{
		AuthHandle:    tpm2.AuthHandle{Handle: SecurityVersionIndex, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:       tpm2.NamedHandle{Handle: SecurityVersionIndex, Name: name},
		PolicySession: session,
		OperandB:      tpm2.TPM2BOperand{Buffer: floorMask(v)},
		Operation:     tpm2.TPMEOBitClear,
	}).Execute(t)
	if errors.Is(err, tpm2.TPMRCPolicy) {
		floor, ferr := ReadSecurityFloor(t)
		if ferr != nil {
			return fmt.Errorf("%w: this image has version %d", ErrBelowFloor, v)
		}
		return fmt.Errorf("%w: this image has version %d, the floor is %d", ErrBelowFloor, v, floor)
	}
	if err != nil {
		return fmt.Errorf("security version floor: policy nv: %w", err)
	}
	return nil
}

// ReadSecurityFloor returns the floor: the highest version a guest raised
// it to, 0 when the index does not exist or was never written.
func ReadSecurityFloor(t transport.TPM) (int, error) {
	b, err := readNV(t, SecurityVersionPublic())
	if errors.Is(err, ErrNVIndexMissing) || errors.Is(err, ErrCounterUninitialised) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the security version floor: %w", err)
	}
	return bits.Len64(binary.BigEndian.Uint64(b)), nil
}

// RaiseSecurityFloor raises the floor to v (defining the index when
// absent): it sets bits 0..v-1, so it never lowers it. It returns the floor
// now in force.
func RaiseSecurityFloor(t transport.TPM, v int) (int, error) {
	if err := checkSecurityVersion(v); err != nil {
		return 0, err
	}
	pub := SecurityVersionPublic()
	name, _, err := readNVPublic(t, pub)
	if errors.Is(err, ErrNVIndexMissing) {
		if err = defineNV(t, pub); err == nil {
			name, _, err = readNVPublic(t, pub)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("raise the security version floor: %w", err)
	}
	set := ^uint64(0)
	if v < 64 {
		set = uint64(1)<<v - 1
	}
	err = nvWrite(t, tpm2.TPMCCNVSetBits,
		tpm2.AuthHandle{Handle: SecurityVersionIndex, Name: name, Auth: tpm2.PasswordAuth(nil)},
		tpm2.NamedHandle{Handle: SecurityVersionIndex, Name: name},
		binary.BigEndian.AppendUint64(nil, set), false)
	if err != nil {
		return 0, fmt.Errorf("raise the security version floor to %d: %w", v, err)
	}
	return ReadSecurityFloor(t)
}

// SignedSecurityVersion returns the security version of the entry of the
// signature document doc that signs the current values of pcrs in bank
// under the PEM public key policyKeyPEM (0 for an entry without a floor
// check), after checking its signature. The boot raises the floor to it
// once the TPM accepted the same entry.
func SignedSecurityVersion(t transport.TPM, doc, policyKeyPEM []byte, bank Bank, pcrs []int) (int, error) {
	rk, _, _, err := policyKey(policyKeyPEM)
	if err != nil {
		return 0, err
	}
	vals, err := ReadPCRs(t, bank, pcrs)
	if err != nil {
		return 0, err
	}
	pol, err := PolicyDigest(bank, pcrs, vals, nil, false)
	if err != nil {
		return 0, err
	}
	sig, v, err := findVersioned(doc, bank, pcrs, rk, pol, true)
	if err != nil {
		return 0, err
	}
	if v > 0 {
		if pol, err = VersionPolicy(pol, v); err != nil {
			return 0, err
		}
	}
	d := sha256.Sum256(pol)
	if err := rsa.VerifyPKCS1v15(rk, crypto.SHA256, d[:], sig); err != nil {
		return 0, fmt.Errorf("%w: the entry for the current pcr values: %v", ErrBadSignature, err)
	}
	return v, nil
}
