package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/confidisk/confidisk/activate"
	"github.com/confidisk/confidisk/enroll"
	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
)

// ErrKeySource means that the state volume and confidisk.state-key= do not
// agree: a blank partition where a pre-encrypted volume is expected, or a
// pre-encrypted volume booted for self-encryption.
var ErrKeySource = errors.New("the state volume does not match confidisk.state-key")

// preEncryptedFirstBoot is the first boot of a pre-encrypted volume (its
// token at origin pre-encrypted, before StepSealed): get the key (broker
// or offline-sealed keyslot), check the header against the record the
// writer authenticated, then go on with the provisioning steps from the
// token's: the file system if the data held none, the first freshness
// epoch, the vTPM keyslot, the fixation digest. Nothing is written before
// the checks pass.
func (b *booter) preEncryptedFirstBoot(ctx context.Context, f *os.File, dev string, h *luks2.Header, pt *provisionToken) (*luks2.Header, []byte, error) {
	if !b.cfg.StateKey.PreEncrypted() {
		return nil, nil, fmt.Errorf("%w: %s was pre-encrypted and its first boot has not completed; boot it with confidisk.state-key=broker "+
			"(the broker releases its key) or confidisk.state-key=srk (a keyslot sealed offline to this vTPM)", ErrKeySource, dev)
	}
	if err := checkFloor(h, &b.cfg); err != nil {
		return nil, nil, fmt.Errorf("state volume %s: %w", dev, err)
	}
	if err := b.checkNoFixation(pt); err != nil {
		return nil, nil, fmt.Errorf("state volume %s: %w", dev, err)
	}
	b.res.FirstBoot, b.res.PreEncrypted = true, true
	b.logf("state volume %s was pre-encrypted (step %q): first boot, key from the %s", h.UUID, pt.Step, keySourceName(b.cfg.StateKey))
	vk, err := b.preEncryptedKey(ctx, f, h)
	if err != nil {
		return nil, nil, err
	}
	b.res.KeyID = tpm.FixateValue(vk, StateName, h.UUID)
	b.point("unlocked")
	if err := b.checkPreEncrypted(h, pt, vk); err != nil {
		clear(vk)
		return nil, nil, fmt.Errorf("state volume %s: %w; it was NOT modified", dev, err)
	}
	if err := b.finishPreEncrypted(ctx, f, dev, h, vk, pt); err != nil {
		return nil, nil, err
	}
	if err := b.openState(dev, h, vk); err != nil {
		return nil, nil, err
	}
	b.logf("state volume %s unlocked (volume key id %s…)", h.UUID, b.res.KeyID[:16])
	return h, vk, nil
}

func keySourceName(k KeySource) string {
	if k == KeySRK {
		return "keyslot sealed offline to this vTPM"
	}
	return "broker"
}

// unlock returns the key of a provisioned volume: from the broker with
// confidisk.state-key=broker-always, else from its vTPM keyslot.
func (b *booter) unlock(ctx context.Context, f *os.File, h *luks2.Header) ([]byte, error) {
	if b.cfg.StateKey == KeyBrokerAlways {
		return b.releasedKey(ctx, h)
	}
	sig, err := readOptional(b.cfg.PCRSignature)
	if err != nil {
		return nil, err
	}
	vk, _, err := enroll.UnlockWithToken(b.tpm, f, h, -1, tpm.UnsealOptions{Signature: sig})
	if err != nil {
		err = fmt.Errorf("unlock the state volume with the vTPM: %w", err)
		if d := errDowngrade(err); d != nil {
			return nil, d
		}
		return nil, errRecovery(err)
	}
	return vk, nil
}

// preEncryptedKey gets the volume key of a pre-encrypted volume and checks
// it against the header's digest.
func (b *booter) preEncryptedKey(ctx context.Context, f *os.File, h *luks2.Header) ([]byte, error) {
	if b.cfg.StateKey.fromBroker() {
		return b.releasedKey(ctx, h)
	}
	sig, err := readOptional(b.cfg.PCRSignature)
	if err != nil {
		return nil, err
	}
	vk, _, err := enroll.UnlockWithToken(b.tpm, f, h, -1, tpm.UnsealOptions{Signature: sig})
	if err != nil {
		if errors.Is(err, tpm.ErrSRKMismatch) {
			return nil, fmt.Errorf("the volume's keyslot was sealed offline to another vTPM (a volume made for another instance); it was NOT modified: %w", err)
		}
		return nil, fmt.Errorf("unseal the key sealed offline to this vTPM: %w", err)
	}
	return vk, nil
}

// checkPreEncrypted checks the record the writer authenticated (MAC,
// header, dm-integrity superblock), the read-write mode and the settings
// the writer required against this boot's; this boot's settings are then
// the ones provisioning records, as on a self-encrypting first boot.
func (b *booter) checkPreEncrypted(h *luks2.Header, pt *provisionToken, vk []byte) error {
	readSB := func() (*integrity.Superblock, error) { return activate.IntegritySuperblock(b.state, h) }
	if err := verifyMetadata(pt, h, readSB, vk); err != nil {
		return err
	}
	if pt.RW != b.cfg.RW {
		return fmt.Errorf("%w: the volume was made for read-write mode %s, this boot asks for %s", ErrDowngrade, pt.RW, b.cfg.RW)
	}
	if _, err := checkSettings(pt.Settings, b.want); err != nil {
		return err
	}
	b.record = b.want
	return nil
}

// finishPreEncrypted runs the provisioning steps a pre-encrypted volume
// still needs, as [booter.provision] does after formatting. The keyslots
// sealed offline are removed once the vTPM keyslot that replaces them is on
// disk (a power cut in between keeps them, bound like the new one to PCR 15
// before any volume is measured).
func (b *booter) finishPreEncrypted(ctx context.Context, f *os.File, dev string, h *luks2.Header, vk []byte, pt *provisionToken) error {
	if pt.Step == StepInitialised {
		if err := b.fileSystem(ctx, dev, h, vk); err != nil {
			return err
		}
		if err := b.writeStep(f, h, vk, pt, StepFilesystem); err != nil {
			return err
		}
	}
	fr, err := b.advanceFreshness(ctx, b.tpm, f, h, vk, true)
	if err != nil {
		return fmt.Errorf("start the freshness epoch: %w", err)
	}
	b.res.Freshness = fr
	if err := b.raiseFloor(); err != nil {
		return fmt.Errorf("security version floor: %w", err)
	}
	offline := enroll.TokenIDs(h)
	if b.cfg.StateKey == KeyBrokerAlways {
		// No vTPM keyslot: the step says only that the key's way in is
		// settled (the broker's, on every boot).
		b.logf("no vTPM keyslot (confidisk.state-key=broker-always): every boot gets the key from the broker")
		if err := b.writeStep(f, h, vk, pt, StepSealed); err != nil {
			return err
		}
	} else if err := b.seal(f, h, vk, pt); err != nil {
		return err
	}
	if len(offline) > 0 {
		// Only once the vTPM keyslot is durable: a power cut in between
		// leaves both, and the next boot unlocks with the new one.
		if err := removeTokens(f, h, offline); err != nil {
			return err
		}
		if err := b.writeStep(f, h, vk, pt, StepSealed); err != nil {
			return err
		}
	}
	return b.finish(f, h, vk, pt)
}

// removeTokens removes the systemd-tpm2 tokens ids and their keyslots from
// h (the caller writes the header).
func removeTokens(f *os.File, h *luks2.Header, ids []int) error {
	for _, id := range ids {
		var tk struct {
			Keyslots []string `json:"keyslots"`
		}
		if err := json.Unmarshal(h.Metadata.Tokens[id], &tk); err != nil {
			return fmt.Errorf("token %d: %w", id, err)
		}
		if err := h.RemoveToken(id); err != nil {
			return err
		}
		for _, ks := range tk.Keyslots {
			slot, err := strconv.Atoi(ks)
			if err != nil {
				return fmt.Errorf("token %d: keyslot %q: %w", id, ks, err)
			}
			if _, ok := h.Metadata.Keyslots[slot]; ok {
				if err := h.KillKeyslot(f, slot, false); err != nil {
					return fmt.Errorf("remove the keyslot %d sealed offline: %w", slot, err)
				}
			}
		}
	}
	return nil
}
