package provision

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// FixationIndex is the NV index where first boot stores the fixation digest
// of the volume it created: the lowercase-hex-decoded value of systemd's
// fixate-volume-key= (HMAC-SHA256(volume key, "cryptsetup:<name>:<uuid>")).
//
// Why: a host can forge a LUKS2 volume with a systemd-tpm2 keyslot that this
// vTPM unseals, using the SRK's public key alone (TPM2_Import needs no
// secret). Unsealing then succeeds and opens the host's volume, whose key
// the host knows. The digest in the vTPM's NV memory is something the host
// cannot write without the vTPM, so every boot compares the unlocked
// volume's digest with it and refuses a mismatch.
//
// The index is an ordinary 32-byte index in the owner range (TPM 2.0 Part 2,
// 13.2 "TPMA_NV"), AUTHWRITE|AUTHREAD with an empty auth value and NO_DA, so
// the initrd needs no owner password; it is rewritten only during
// provisioning.
const FixationIndex tpm2.TPMHandle = 0x01c3d100

// ErrFixationMismatch means the unlocked volume is not the one this guest
// created (a swapped or forged volume).
var ErrFixationMismatch = errors.New("the volume key does not match the fixation digest stored in the vTPM: this is not the volume this guest created")

// ErrNoFixation means the vTPM holds no fixation digest although the volume
// says provisioning got past that step.
var ErrNoFixation = errors.New("the vTPM holds no fixation digest for a provisioned volume")

func fixationPublic() tpm2.TPMSNVPublic {
	return tpm2.TPMSNVPublic{
		NVIndex: FixationIndex,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			AuthWrite: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary,
		},
		DataSize: 32,
	}
}

// nvName returns the current name of the fixation index.
func nvName(t transport.TPM) (*tpm2.NVReadPublicResponse, error) {
	return tpm2.NVReadPublic{NVIndex: FixationIndex}.Execute(t)
}

// writeFixation stores digest (32 bytes) in the fixation index, defining it
// when it does not exist.
func writeFixation(t transport.TPM, digest []byte) error {
	if len(digest) != 32 {
		return fmt.Errorf("fixation digest has %d bytes, want 32", len(digest))
	}
	pub, err := nvName(t)
	if err != nil {
		if !errors.Is(err, tpm2.TPMRCHandle) {
			return fmt.Errorf("read fixation index: %w", err)
		}
		if _, err := (tpm2.NVDefineSpace{
			AuthHandle: tpm2.TPMRHOwner,
			PublicInfo: tpm2.New2B(fixationPublic()),
		}).Execute(t); err != nil {
			return fmt.Errorf("define fixation index: %w", err)
		}
		if pub, err = nvName(t); err != nil {
			return fmt.Errorf("read fixation index: %w", err)
		}
	}
	nv := tpm2.NamedHandle{Handle: FixationIndex, Name: pub.NVName}
	if _, err := (tpm2.NVWrite{
		AuthHandle: tpm2.AuthHandle{Handle: FixationIndex, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    nv,
		Data:       tpm2.TPM2BMaxNVBuffer{Buffer: digest},
	}).Execute(t); err != nil {
		return fmt.Errorf("write fixation index: %w", err)
	}
	return nil
}

// checkFixation compares the fixation value of the unlocked volume (lowercase
// hex, as tpm.FixateValue returns it) with the digest in the vTPM.
func checkFixation(t transport.TPM, fixate string) error {
	want, err := hex.DecodeString(fixate)
	if err != nil || len(want) != 32 {
		return fmt.Errorf("invalid fixation value %q", fixate)
	}
	pub, err := nvName(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return ErrNoFixation
		}
		return fmt.Errorf("read fixation index: %w", err)
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: FixationIndex, Name: pub.NVName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: FixationIndex, Name: pub.NVName},
		Size:       32,
	}.Execute(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCNVUninitialized) {
			return ErrNoFixation
		}
		return fmt.Errorf("read fixation index: %w", err)
	}
	if subtle.ConstantTimeCompare(rsp.Data.Buffer, want) != 1 || bytes.Equal(want, make([]byte, 32)) {
		return ErrFixationMismatch
	}
	return nil
}

// fixationStored reports whether the vTPM holds a fixation digest: a
// provisioning on this vTPM got past StepFixated.
func fixationStored(t transport.TPM) (bool, error) {
	err := checkFixation(t, hex.EncodeToString(make([]byte, 32)))
	switch {
	case errors.Is(err, ErrNoFixation):
		return false, nil
	case errors.Is(err, ErrFixationMismatch):
		return true, nil // any stored digest differs from the all-zero probe
	}
	return false, err
}
