package provision

import (
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"

	"github.com/confidisk/confidisk/activate"
	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/recovery"
	"github.com/confidisk/confidisk/tpm"
)

// checkNotRewound is called for a volume whose token says provisioning
// stopped before StepSealed, before it is formatted again. Provisioning
// writes the systemd-tpm2 keyslot in the same header write as StepSealed,
// and the fixation digest only after it, so either one present means the
// step was set back (by the host: a real power cut cannot do it), and
// re-provisioning would destroy a sealed volume.
func (b *booter) checkNotRewound(h *luks2.Header, pt *provisionToken) error {
	for id, raw := range h.Metadata.Tokens {
		var th luks2.TokenHeader
		if json.Unmarshal(raw, &th) == nil && th.Type == tpm.TokenType {
			return fmt.Errorf("%w: it says step %q, but token %d is a systemd-tpm2 keyslot, which provisioning writes only with step %q; refusing to re-provision",
				ErrRewound, pt.Step, id, StepSealed)
		}
	}
	return b.checkNoFixation(pt)
}

// checkNoFixation refuses a volume whose token says its provisioning never
// completed on a vTPM that holds the fixation digest of a volume whose
// provisioning did (the host set the volume back, or gave this vTPM
// another volume).
func (b *booter) checkNoFixation(pt *provisionToken) error {
	stored, err := fixationStored(b.tpm)
	if err != nil {
		return fmt.Errorf("read the vTPM's fixation index: %w", err)
	}
	if stored {
		return fmt.Errorf("%w: it says step %q, but this vTPM holds the fixation digest of a volume whose provisioning completed; refusing to provision it again",
			ErrRewound, pt.Step)
	}
	return nil
}

// checkProvisioned checks an unlocked, provisioned volume before anything
// is written or mapped: the provisioning record's MAC, the header and the
// dm-integrity superblock against it, and this boot's settings against the
// provisioned ones. Settings this boot adds are recorded (the only write).
func (b *booter) checkProvisioned(f *os.File, h *luks2.Header, pt *provisionToken, vk []byte) error {
	readSB := func() (*integrity.Superblock, error) { return activate.IntegritySuperblock(b.state, h) }
	if err := verifyMetadata(pt, h, readSB, vk); err != nil {
		return err
	}
	if pt.RW != b.cfg.RW {
		return fmt.Errorf("%w: the volume was provisioned for read-write mode %s, this boot asks for %s", ErrDowngrade, pt.RW, b.cfg.RW)
	}
	rec, err := checkSettings(pt.Settings, b.want)
	if err != nil {
		return err
	}
	b.record = rec
	if reflect.DeepEqual(rec, pt.Settings) {
		return nil
	}
	b.logf("settings: this boot adds to the provisioned ones (anchor %s, TEE %s); recording them", rec.Anchor, rec.TEE)
	return b.writeStep(f, h, vk, pt, pt.Step)
}

// recoveryTokens returns the tokens of a new volume: the provisioning
// token and, with an operator recovery key, the recovery passphrase sealed
// to it. pt.RecoveryKeyslot is set to 0 when the passphrase is kept.
func (b *booter) recoveryTokens(pt *provisionToken, uuid, passphrase string) ([]json.RawMessage, error) {
	var tokens []json.RawMessage
	if b.recoveryPub != nil {
		rt, err := recovery.Wrap(b.recoveryPub, uuid, 0, []byte(passphrase))
		if err != nil {
			return nil, err
		}
		raw, err := rt.Marshal()
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, raw)
	}
	if b.recoveryPub != nil || b.cfg.RecoveryConsole {
		pt.RecoveryKeyslot = 0
	}
	pt.Settings = b.record
	raw, err := json.Marshal(pt)
	if err != nil {
		return nil, err
	}
	return append([]json.RawMessage{raw}, tokens...), nil
}

// reportRecovery says, once, where the recovery passphrase went; only with
// confidisk.recovery=console (from the initrd's boot.conf) is it printed.
func (b *booter) reportRecovery(uuid, passphrase string) {
	switch {
	case b.cfg.RecoveryConsole:
		b.logf("WARNING: confidisk.recovery=console prints the recovery key on the console, which the host reads in a confidential VM: use it on test machines only")
		b.logf("RECOVERY KEY for state volume %s: %s", uuid, passphrase)
	case b.recoveryPub != nil:
		b.logf("recovery passphrase of state volume %s sealed to the operator recovery key %.16s… (the operator opens it with confidisk luks recover)",
			uuid, recovery.Fingerprint(b.recoveryPub))
	default:
		b.logf("no operator recovery key (confidisk.recovery-key=, or %s in the initrd): the state volume gets no recovery keyslot, only this vTPM opens it",
			DefaultRecoveryKey)
	}
}

// loadRecoveryKey reads the operator's recovery public key: the file
// cfg.RecoveryKey names (which must exist), or DefaultRecoveryKey when it
// exists.
func loadRecoveryKey(cfg *Config) (*ecdh.PublicKey, error) {
	path := cfg.RecoveryKey
	b, err := os.ReadFile(path)
	if path == "" {
		if b, err = os.ReadFile(DefaultRecoveryKey); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		path = DefaultRecoveryKey
	}
	if err != nil {
		return nil, fmt.Errorf("%w: confidisk.recovery-key: %w", ErrBadConfig, err)
	}
	k, err := recovery.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadConfig, path, err)
	}
	return k, nil
}
