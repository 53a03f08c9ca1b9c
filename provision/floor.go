package provision

import (
	"errors"
	"fmt"

	"github.com/confidisk/confidisk/tpm"
)

// raiseFloor raises the vTPM's security version floor to the version the
// UKI signed for the current PCR 11 (tpm.SignedSecurityVersion): on first
// boot before sealing, on later boots once the TPM accepted that entry.
// From then on, images signed with a lower version no longer unseal on
// this guest, with or without a broker. A UKI without a signed policy, or
// with unversioned entries, leaves the floor as it is.
func (b *booter) raiseFloor() error {
	key, err := readOptional(b.cfg.PCRPublicKey)
	if err != nil || key == nil {
		return err
	}
	sig, err := readOptional(b.cfg.PCRSignature)
	if err != nil {
		return err
	}
	if sig == nil {
		b.logf("the uki has a pcr public key and no signature (%s): the security version floor is unchanged", b.cfg.PCRSignature)
		return nil
	}
	v, err := tpm.SignedSecurityVersion(b.tpm, sig, key, tpm.SHA256, []int{uki11})
	if errors.Is(err, tpm.ErrBadSignature) {
		// Nothing here proves a version; a volume sealed to this key
		// does not unseal with such a uki either.
		b.logf("no valid signature for the current pcr %d: the security version floor is unchanged (%v)", uki11, err)
		return nil
	}
	if err != nil || v == 0 {
		return err
	}
	floor, err := tpm.RaiseSecurityFloor(b.tpm, v)
	if err != nil {
		return err
	}
	b.logf("image security version %d; the vTPM's floor is %d", v, floor)
	return nil
}

// errDowngrade explains a refusal by the floor: no recovery is needed, an
// image of a version at least the floor is.
func errDowngrade(err error) error {
	if !errors.Is(err, tpm.ErrBelowFloor) {
		return nil
	}
	return fmt.Errorf("%w\nThe state volume was NOT modified. This guest booted a newer image before: "+
		"boot an image signed with a security version at least the vTPM's floor", err)
}
