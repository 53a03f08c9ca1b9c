package provision

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/enroll"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
)

// ResealOptions says what [Reseal] seals a state volume's key to.
type ResealOptions struct {
	// PCRs are the PCRs sealed to literal values (nil: the provisioned
	// Settings.PCRs); PCR 15 is always added, at zero, as first boot
	// seals it. PCRValues gives the values of some of them; the others
	// are read from the vTPM now.
	PCRs      []int
	PCRValues map[int][]byte
	// PCRPublicKey, a PEM RSA public key, also binds PCR 11 as signed by
	// it (the UKI's .pcrpkey), as first boot does with a signed UKI.
	PCRPublicKey []byte
	// AllowWeaker permits sealing to fewer PCRs than provisioned, or
	// without the PCR signing key the current keyslot is sealed to.
	AllowWeaker bool
	// Fixate stores the volume's fixation digest in a vTPM that holds none
	// (a replaced vTPM). A vTPM holding another volume's digest is always
	// refused.
	Fixate bool
}

// ResealResult is what [Reseal] did.
type ResealResult struct {
	Keyslot       int   `json:"keyslot"`
	Token         int   `json:"token"`
	Removed       []int `json:"removed_keyslots"`
	PCRs          []int `json:"pcrs"`
	PolicyKeyPCRs []int `json:"pcr_public_key_pcrs,omitempty"`
	Fixated       bool  `json:"fixated"`
}

// ErrWeakerSeal refuses a reseal that binds less than the volume was
// provisioned with, unless the operator allows it.
var ErrWeakerSeal = errors.New("the new seal binds less than the provisioned one")

// Reseal replaces the vTPM keyslot of the unlocked state volume on devPath
// (f, header h, volume key vk) by one sealed to the vTPM's PCR values now:
// after a boot that fell to the recovery key (a firmware or Secure Boot
// database update changed PCR 7), or to change the sealing PCRs. The
// metadata is verified first and the fixation digest checked against the
// vTPM; the new keyslot is committed before the old ones are removed, in
// cryptsetup's order (two header writes, each with the MAC recomputed), so
// an interruption leaves a volume that the recovery passphrase and the old
// or the new keyslot open. The provisioned PCRs become the sealed ones.
func Reseal(t transport.TPM, f luks2.Device, devPath string, h *luks2.Header, vk []byte, o ResealOptions) (*ResealResult, error) {
	pt, _, err := findProvisionToken(h)
	if err != nil {
		return nil, err
	}
	if pt.Version < tokenVersion || !pt.Step.AtLeast(StepComplete) {
		return nil, fmt.Errorf("%w: provisioning is not complete or the volume's metadata is not authenticated (confidisk state reconfigure authenticates it)", ErrUnauthenticated)
	}
	if err := verifyMetadata(pt, h, superblockReader(devPath, h), vk); err != nil {
		return nil, err
	}
	old, err := tpmKeyslots(h)
	if err != nil {
		return nil, err
	}
	res, so, err := o.plan(pt.Settings, old)
	if err != nil {
		return nil, err
	}
	if res.Fixated, err = ensureFixation(t, tpm.FixateValue(vk, StateName, h.UUID), o.Fixate); err != nil {
		return nil, err
	}
	if res.Keyslot, res.Token, err = enroll.AddEnrollment(t, f, h, vk, enroll.EnrollOptions{SealOptions: so, Keyslot: -1, TokenID: -1}); err != nil {
		return nil, fmt.Errorf("seal the volume key to the vTPM: %w", err)
	}
	s := *pt.Settings
	s.PCRs = res.PCRs
	pt.Settings = &s
	if err := reauthWrite(f, devPath, h, vk, pt); err != nil {
		return nil, fmt.Errorf("commit the new keyslot: %w", err)
	}
	for _, ks := range old {
		if err := h.RemoveToken(ks.token); err != nil {
			return nil, err
		}
		if h.Metadata.Keyslots[ks.keyslot] == nil {
			continue // two tokens for one keyslot
		}
		if err := h.KillKeyslot(f, ks.keyslot, false); err != nil {
			return nil, fmt.Errorf("remove keyslot %d: %w", ks.keyslot, err)
		}
		res.Removed = append(res.Removed, ks.keyslot)
	}
	if len(old) > 0 {
		if err := reauthWrite(f, devPath, h, vk, pt); err != nil {
			return nil, fmt.Errorf("remove the old keyslots: %w", err)
		}
	}
	return res, nil
}

// plan checks o against the provisioned settings and the current vTPM
// keyslots and returns the seal to make.
func (o ResealOptions) plan(s *Settings, old []tpmKeyslot) (*ResealResult, tpm.SealOptions, error) {
	recorded := []int{7}
	if s != nil {
		recorded = s.PCRs
	}
	pcrs := o.PCRs
	if pcrs == nil {
		pcrs = recorded
	}
	pcrs = slices.Compact(slices.Sorted(slices.Values(pcrs)))
	if slices.Contains(pcrs, tpm.VolumeKeyPCR) {
		return nil, tpm.SealOptions{}, fmt.Errorf("%w: pcr %d is always sealed, at zero; leave it out", ErrBadConfig, tpm.VolumeKeyPCR)
	}
	if !o.AllowWeaker {
		for _, p := range recorded {
			if !slices.Contains(pcrs, p) {
				return nil, tpm.SealOptions{}, fmt.Errorf("%w: pcr %d was provisioned and is not in %v (allow it explicitly to seal to fewer pcrs)", ErrWeakerSeal, p, pcrs)
			}
		}
		for _, ks := range old {
			if ks.signed && o.PCRPublicKey == nil {
				return nil, tpm.SealOptions{}, fmt.Errorf("%w: keyslot %d is sealed to a pcr signing key too; give the uki's public key (or allow dropping it explicitly)", ErrWeakerSeal, ks.keyslot)
			}
		}
	}
	so := stateSealOptions(pcrs, o.PCRPublicKey)
	for p, v := range o.PCRValues {
		if !slices.Contains(pcrs, p) {
			return nil, tpm.SealOptions{}, fmt.Errorf("%w: a value for pcr %d, which is not sealed", ErrBadConfig, p)
		}
		so.PCRValues[p] = v
	}
	return &ResealResult{PCRs: pcrs, PolicyKeyPCRs: so.PolicyKeyPCRs}, so, nil
}

// stateSealOptions is how the state key is sealed, on first boot and by
// [Reseal]: to pcrs' literal values, to PCR 15 at zero (nothing measured a
// volume key yet: the key unseals in the initrd before any is), and, with
// a PCR signing key, to PCR 11 as that key signs it.
func stateSealOptions(pcrs []int, pcrKey []byte) tpm.SealOptions {
	so := tpm.SealOptions{
		PCRs:      append(slices.Clone(pcrs), tpm.VolumeKeyPCR),
		PCRValues: map[int][]byte{tpm.VolumeKeyPCR: make([]byte, 32)},
	}
	if pcrKey != nil {
		so.PolicyKeyPEM, so.PolicyKeyPCRs = pcrKey, []int{uki11}
	}
	return so
}

// tpmKeyslot is a systemd-tpm2 token and the keyslot it opens.
type tpmKeyslot struct {
	token, keyslot int
	signed         bool // sealed to a PCR signing key (tpm2_pubkey)
}

// tpmKeyslots lists h's systemd-tpm2 tokens, by keyslot. A token whose
// keyslot is gone is listed too (it is removed with the others).
func tpmKeyslots(h *luks2.Header) ([]tpmKeyslot, error) {
	var out []tpmKeyslot
	for _, id := range enroll.TokenIDs(h) {
		tk, err := tpm.ParseToken(h.Metadata.Tokens[id])
		if err != nil {
			return nil, fmt.Errorf("token %d: %w", id, err)
		}
		out = append(out, tpmKeyslot{token: id, keyslot: tk.Keyslot, signed: len(tk.Pubkey) > 0})
	}
	slices.SortStableFunc(out, func(a, b tpmKeyslot) int { return cmp.Compare(a.keyslot, b.keyslot) })
	return out, nil
}

// ensureFixation checks the vTPM's fixation digest against the volume's
// fixate value; with store, a vTPM holding none gets it. It reports
// whether it stored it.
func ensureFixation(t transport.TPM, fixate string, store bool) (bool, error) {
	err := checkFixation(t, fixate)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, ErrNoFixation) && store:
		digest, err := hex.DecodeString(fixate)
		if err != nil {
			return false, err
		}
		if err := writeFixation(t, digest); err != nil {
			return false, fmt.Errorf("store the fixation digest: %w", err)
		}
		return true, nil
	case errors.Is(err, ErrNoFixation):
		return false, fmt.Errorf("%w: this vTPM is not the one that provisioned the volume (store the digest explicitly if it replaced it)", err)
	}
	return false, err
}

// reauthWrite recomputes the provisioning token's MAC over h as it is now
// and writes the header.
func reauthWrite(f luks2.Device, devPath string, h *luks2.Header, vk []byte, pt *provisionToken) error {
	sb, err := superblockOf(devPath, h)
	if err != nil {
		return err
	}
	if err := authenticate(pt, h, sb, vk); err != nil {
		return err
	}
	if err := setProvisionToken(h, pt); err != nil {
		return err
	}
	return h.Write(f)
}
