package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/attest/snp"
	"github.com/confidisk/confidisk/attest/tdx"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/recovery"
	"github.com/confidisk/confidisk/tpm"
)

// ErrBrokerRefused means the broker refused this boot's evidence or
// registration: the guest does not run what the broker's policy allows, or
// the volume is not the one the broker knows.
var ErrBrokerRefused = errors.New("the broker refused this guest")

// issuer returns the evidence issuer of the boot flow: PCRs 0 to 15 (the
// broker's policy may pin any of them, e.g. 4, 7, 11 and 12 of a UKI boot,
// whatever the volume is sealed to), the sealing PCRs, and PCR 15, with
// systemd's measurement log and the firmware's event log (from securityfs,
// when it is mounted; Options.FirmwareLog overrides).
func (b *booter) issuer() (*attest.Issuer, error) {
	pcrs := slices.Concat(attest.DefaultPCRs(), b.cfg.PCRs)
	return attest.NewIssuer(b.tpm, attest.IssuerOptions{PCRs: pcrs, MeasureLog: b.o.MeasureLog, FirmwareLog: b.o.FirmwareLog, TEE: b.tee})
}

// resolveTEE turns Config.TEE into the hardware evidence is taken from:
// "sev-snp", "tdx" or "none"; "" and "auto" pick SEV-SNP when
// /dev/sev-guest exists, TDX when /dev/tdx_guest exists, else none.
func resolveTEE(mode string) string {
	if mode != "" && mode != "auto" {
		return mode
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	switch {
	case exists("/dev/sev-guest"):
		return "sev-snp"
	case exists("/dev/tdx_guest"):
		return "tdx"
	}
	return "none"
}

// openTEE returns the reporter of the guest's SEV-SNP or TDX hardware for
// a resolved mode, or nil for none.
func openTEE(mode string) (attest.TEEReporter, error) {
	switch mode {
	case "sev-snp":
		return snp.OpenReporter()
	case "tdx":
		return tdx.OpenReporter()
	}
	return nil, nil
}

// CreationRecord returns the creation record first boot stored in the
// header (the record of its confidisk-creation token, attest.CreationRecord
// JSON).
func CreationRecord(h *luks2.Header) (json.RawMessage, error) {
	for _, raw := range h.Metadata.Tokens {
		var tok struct {
			Type   string          `json:"type"`
			Record json.RawMessage `json:"record"`
		}
		if json.Unmarshal(raw, &tok) == nil && tok.Type == CreationTokenType && len(tok.Record) > 0 {
			return tok.Record, nil
		}
	}
	return nil, errors.New("the volume has no creation record (a confidisk-creation token)")
}

// recoveryToken is the volume's confidisk-recovery token, escrowed with the
// broker at registration (nil without one).
func recoveryToken(h *luks2.Header) json.RawMessage {
	for _, raw := range h.Metadata.Tokens {
		var th luks2.TokenHeader
		if json.Unmarshal(raw, &th) == nil && th.Type == recovery.TokenType {
			return raw
		}
	}
	return nil
}

// checkRegisteredKey refuses a volume the broker knows under another key
// id, from the broker's volume_exists answer (which carries the registered
// key id).
func (b *booter) checkRegisteredKey(uuid string, regErr error) error {
	var ce *client.Error
	if !errors.As(regErr, &ce) || ce.KeyID == "" {
		return fmt.Errorf("%w: the broker does not say which key id volume %s is registered with: %w", ErrBrokerRefused, uuid, regErr)
	}
	if ce.KeyID != b.res.KeyID {
		return fmt.Errorf("%w: it has volume %s registered with key id %.16s…, this volume's is %.16s…", ErrBrokerRefused, uuid, ce.KeyID, b.res.KeyID)
	}
	return nil
}

// reportToBroker does this boot's part with the broker, once the volume is
// measured: it registers the volume from its creation record when the
// broker does not know it yet, then presents evidence (a vTPM quote over a
// broker nonce, naming the volume) — with the broker as a roll-back anchor,
// as the compare-and-swap that moves the broker's epoch from the value
// advanceFreshness checked to the volume's new epoch; otherwise on its own.
// Any refusal stops the boot: a conflict means that another copy of this
// volume advanced the epoch in between.
func (b *booter) reportToBroker(ctx context.Context, h *luks2.Header) error {
	if b.broker == nil {
		return nil
	}
	p := b.pending
	var register bool
	if p != nil {
		register = p.register
	} else {
		_, err := b.broker.Epoch(ctx, h.UUID)
		if register = client.IsCode(err, "volume_not_found"); err != nil && !register {
			return fmt.Errorf("ask the broker about the volume: %w", err)
		}
	}
	if register {
		rec, err := CreationRecord(h)
		if err != nil {
			return fmt.Errorf("register the volume with the broker: %w", err)
		}
		_, err = b.broker.Register(ctx, api.RegisterRequest{CreationRecord: rec,
			Volume: api.VolumeSpec{UUID: h.UUID, KeyID: b.res.KeyID, Recovery: recoveryToken(h)}})
		switch {
		case client.IsCode(err, "volume_exists"):
			// Registered since the epoch was read (the advance below
			// fails unless the epoch is still the one checked) — or
			// squatted: the UUID registered with another key.
			if err := b.checkRegisteredKey(h.UUID, err); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("%w: register the volume's creation record: %w", ErrBrokerRefused, err)
		default:
			b.logf("volume %s registered with the broker (creation record)", h.UUID)
		}
	}
	iss, err := b.issuer()
	if err != nil {
		return err
	}
	nr, err := b.broker.Nonce(ctx)
	if err != nil {
		return fmt.Errorf("get a nonce from the broker: %w", err)
	}
	ev, err := iss.Issue(ctx, nr.Nonce, nil)
	if err != nil {
		return err
	}
	raw, err := ev.Marshal()
	if err != nil {
		return err
	}
	if p == nil {
		c, err := b.broker.Verify(ctx, nr.Nonce, raw)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBrokerRefused, err)
		}
		if c.Volume != h.UUID {
			return fmt.Errorf("%w: it attests volume %q, not %s", ErrBrokerRefused, c.Volume, h.UUID)
		}
		b.logf("evidence accepted by the broker")
		return nil
	}
	err = b.broker.AdvanceEpoch(ctx, p.uuid, nr.Nonce, raw, p.old, p.new)
	var ce *client.Error
	switch {
	case errors.As(err, &ce) && ce.Code == "epoch_conflict" && ce.Current != nil:
		return fmt.Errorf("%w: the broker's epoch moved from %d to %d while this boot advanced it to %d (another copy of this volume is booting)",
			ErrRolledBack, p.old, *ce.Current, p.new)
	case errors.As(err, &ce) && ce.Status/100 == 4:
		return fmt.Errorf("%w: %w", ErrBrokerRefused, err)
	case err != nil:
		return fmt.Errorf("advance the volume's epoch at the broker: %w", err)
	}
	b.point("broker-advanced")
	b.logf("freshness: broker at epoch %d (evidence accepted)", p.new)
	return nil
}

// releasedKey asks the broker for the key of the pre-encrypted volume h:
// evidence (no volume measured yet) binding a new ephemeral HPKE key, to
// which the broker seals the key if the evidence satisfies its policy and
// the key's requirements. The key must open h's digest and have the key id
// the broker names; anything else is refused.
func (b *booter) releasedKey(ctx context.Context, h *luks2.Header) ([]byte, error) {
	priv, err := api.NewReleaseKey()
	if err != nil {
		return nil, err
	}
	iss, err := b.issuer()
	if err != nil {
		return nil, err
	}
	nr, err := b.broker.Nonce(ctx)
	if err != nil {
		return nil, fmt.Errorf("get a nonce from the broker: %w", err)
	}
	ev, err := iss.Issue(ctx, nr.Nonce, priv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	raw, err := ev.Marshal()
	if err != nil {
		return nil, err
	}
	rel, err := b.broker.ReleaseKey(ctx, h.UUID, nr.Nonce, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: release the key of volume %s: %w", ErrBrokerRefused, h.UUID, err)
	}
	vk, err := api.OpenKey(priv, h.UUID, *rel)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBrokerRefused, err)
	}
	ok, err := h.VerifyVolumeKey(vk)
	if err != nil {
		clear(vk)
		return nil, fmt.Errorf("check the released key against the volume's digest: %w", err)
	}
	if !ok {
		clear(vk)
		return nil, fmt.Errorf("%w: the key it released for volume %s does not match the volume's digest "+
			"(another volume's key, or a header replaced on disk)", ErrBrokerRefused, h.UUID)
	}
	if id := tpm.FixateValue(vk, StateName, h.UUID); id != rel.KeyID {
		clear(vk)
		return nil, fmt.Errorf("%w: it released key id %.16s… for volume %s, the key's id is %.16s…", ErrBrokerRefused, rel.KeyID, h.UUID, id)
	}
	b.logf("volume key released by the broker (key id %.16s…)", rel.KeyID)
	return vk, nil
}
