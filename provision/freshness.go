package provision

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
)

// Roll-back protection (docs/rollback.md).
//
// Every provisioned volume carries a freshness epoch in its LUKS2 header (a
// "confidisk-freshness" token), authenticated with a key derived from the
// volume key, so the host can neither edit it nor move it to another
// volume. Its anchor is a monotonic NV counter of the vTPM, which no one
// can move backwards. Each boot, after unlocking and before anything uses
// the volume, runs a two-phase advance:
//
//  1. check: epoch E (volume) against counter C (vTPM);
//     E < C      → an older copy of the volume: refused;
//     E = C      → current;
//     E = C + 1  → the previous boot wrote its new epoch but lost power
//     before incrementing the counter: accepted, the counter catches up;
//     E > C + 1  → the vTPM is behind the volume (its state was replaced):
//     refused.
//  2. write E' = C + 1 into the volume (synced), then increment the counter
//     to C + 1.
//
// A crash between the two writes leaves E = C + 1, which step 1 accepts: an
// honest guest is never refused, and an old copy (whose epoch is below the
// counter) never passes. What this does not see: a copy taken after this
// boot's advance, restored before the next boot (the same epoch), and a host
// that restores the vTPM state together with the disk. The second anchor,
// the broker's epoch (Config.Broker, Config.Anchor), catches the latter: it
// is read and checked with the counter, and advanced by compare-and-swap
// once the volume is measured (reportToBroker).

// FreshnessCounter is the NV index of the vTPM counter that anchors epochs.
const FreshnessCounter tpm2.TPMHandle = 0x01c3d101

// FreshnessTokenType is the LUKS2 token type of the freshness epoch.
const FreshnessTokenType = "confidisk-freshness"

// ErrRolledBack means the volume is an older copy than the anchor allows.
var ErrRolledBack = errors.New("the state volume is older than its freshness anchor: an old copy was restored")

// ErrAnchorBehind means the vTPM counter is behind the volume by more than
// one interrupted advance (the vTPM state was replaced or reset).
var ErrAnchorBehind = errors.New("the vTPM freshness counter is behind the volume: the vTPM state was replaced or reset")

// ErrFreshnessTampered means the freshness token is missing or its MAC does
// not verify under the volume key.
var ErrFreshnessTampered = errors.New("the freshness record of the state volume is missing or was altered")

// freshnessToken is the token JSON.
type freshnessToken struct {
	Type     string   `json:"type"`
	Keyslots []string `json:"keyslots"`
	Epoch    string   `json:"epoch"` // decimal, as LUKS2 writes 64-bit numbers
	MAC      []byte   `json:"mac"`
}

// freshnessMAC authenticates epoch for the volume: HMAC-SHA256 under a key
// derived from the volume key with HKDF-SHA256 (info "confidisk freshness
// v1"), over "confidisk-freshness:v1:<uuid>:<epoch>".
func freshnessMAC(vk []byte, uuid string, epoch uint64) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, vk, nil, "confidisk freshness v1", 32)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, k)
	fmt.Fprintf(m, "confidisk-freshness:v1:%s:%d", uuid, epoch)
	return m.Sum(nil), nil
}

// readEpoch returns the verified epoch of h and the token id (-1 when there
// is none).
func readEpoch(h *luks2.Header, vk []byte) (uint64, int, error) {
	for id, raw := range h.Metadata.Tokens {
		var ft freshnessToken
		if json.Unmarshal(raw, &ft) != nil || ft.Type != FreshnessTokenType {
			continue
		}
		e, err := strconv.ParseUint(ft.Epoch, 10, 64)
		if err != nil {
			return 0, id, fmt.Errorf("%w: epoch %q", ErrFreshnessTampered, ft.Epoch)
		}
		want, err := freshnessMAC(vk, h.UUID, e)
		if err != nil {
			return 0, id, err
		}
		if !hmac.Equal(want, ft.MAC) {
			return 0, id, fmt.Errorf("%w: the MAC of epoch %d does not verify", ErrFreshnessTampered, e)
		}
		return e, id, nil
	}
	return 0, -1, nil
}

// writeEpoch replaces the freshness token of h by one for epoch (the caller
// writes the header).
func writeEpoch(h *luks2.Header, vk []byte, epoch uint64) error {
	if _, id, _ := readEpoch(h, vk); id >= 0 {
		if err := h.RemoveToken(id); err != nil {
			return err
		}
	}
	mac, err := freshnessMAC(vk, h.UUID, epoch)
	if err != nil {
		return err
	}
	b, err := json.Marshal(freshnessToken{Type: FreshnessTokenType, Keyslots: []string{}, Epoch: strconv.FormatUint(epoch, 10), MAC: mac})
	if err != nil {
		return err
	}
	_, err = h.AddToken(b, -1)
	return err
}

// Freshness is what the freshness check saw and did.
type Freshness struct {
	Epoch uint64 // the volume's epoch after this boot's advance
	// Counter is the vTPM counter after this boot's advance (0 when the
	// vTPM is not an anchor).
	Counter uint64
	// Broker is the broker's epoch before this boot's advance (nil when the
	// broker is not an anchor); the advance itself follows the PCR 15
	// measurement (see [booter.reportToBroker]).
	Broker *uint64 `json:",omitempty"`
	// CaughtUp is set when the previous advance had been interrupted.
	CaughtUp bool
}

// brokerAdvance is the broker half of a freshness advance, done once the
// volume is measured (the evidence it needs names the volume).
type brokerAdvance struct {
	uuid     string
	old, new uint64
	register bool // the broker does not know the volume yet
}

// anchor is one roll-back anchor of a volume's freshness epoch: the vTPM's
// NV counter or the broker's epoch. An advance runs check on every anchor
// before anything is written, writes the new epoch into the volume, then
// runs advance on every anchor.
type anchor interface {
	// check reads the anchor and compares it with the volume's epoch e
	// (hasEpoch false: the volume has none yet, which only a volume this
	// boot formatted may lack). For a volume without an epoch it returns
	// start, the epoch it begins at, and whether this anchor lets it start.
	check(ctx context.Context, e uint64, hasEpoch, formatted bool, f *Freshness) (start uint64, mayStart bool, err error)
	// advance moves the anchor to next, which the volume now holds.
	advance(ctx context.Context, next uint64, f *Freshness) error
}

// tpmAnchor is the vTPM's monotonic NV counter.
type tpmAnchor struct {
	b *booter
	t transport.TPM
	c uint64
}

func (a *tpmAnchor) check(_ context.Context, e uint64, hasEpoch, formatted bool, f *Freshness) (uint64, bool, error) {
	c, err := tpm.ReadCounter(a.t, FreshnessCounter)
	fresh := false // the counter was never started
	switch {
	case errors.Is(err, tpm.ErrNVIndexMissing) && !hasEpoch:
		if err := tpm.DefineCounter(a.t, FreshnessCounter); err != nil {
			return 0, false, fmt.Errorf("define the freshness counter: %w", err)
		}
		fallthrough
	case errors.Is(err, tpm.ErrCounterUninitialised) && !hasEpoch:
		fresh = true
		if c, err = tpm.IncrementCounter(a.t, FreshnessCounter); err != nil {
			return 0, false, fmt.Errorf("start the freshness counter: %w", err)
		}
	case err != nil:
		return 0, false, fmt.Errorf("%w (reading the freshness counter: %v)", ErrAnchorBehind, err)
	}
	a.c = c
	if !hasEpoch {
		return c, formatted || fresh, nil // the new volume starts at the counter
	}
	switch {
	case e < c:
		return 0, false, fmt.Errorf("%w: the volume is at epoch %d, the vTPM counter at %d", ErrRolledBack, e, c)
	case e == c+1:
		f.CaughtUp = true
		a.b.logf("freshness: the previous boot's advance to epoch %d was interrupted before the vTPM counter; completing it", e)
		return 0, false, a.advance(context.Background(), e, f)
	case e > c+1:
		return 0, false, fmt.Errorf("%w: the volume is at epoch %d, the vTPM counter at %d", ErrAnchorBehind, e, c)
	}
	return 0, false, nil
}

func (a *tpmAnchor) advance(_ context.Context, next uint64, f *Freshness) error {
	c, err := tpm.IncrementCounter(a.t, FreshnessCounter)
	if err != nil {
		return fmt.Errorf("advance the freshness counter: %w", err)
	}
	if c != next {
		return fmt.Errorf("%w: the vTPM counter moved to %d, not %d, while this boot advanced it", ErrAnchorBehind, c, next)
	}
	a.c, f.Counter = c, c
	return nil
}

// brokerAnchor is the broker's epoch for the volume. It is read over TLS
// before anything is written; its compare-and-swap needs evidence about the
// opened volume and is left in booter.pending for reportToBroker.
type brokerAnchor struct {
	b          *booter
	uuid       string
	be         uint64
	registered bool
}

func (a *brokerAnchor) check(ctx context.Context, e uint64, hasEpoch, formatted bool, f *Freshness) (uint64, bool, error) {
	if a.b.broker == nil {
		return 0, false, errors.New("the broker is a freshness anchor but no broker is configured")
	}
	be, err := a.b.broker.Epoch(ctx, a.uuid)
	a.registered = !client.IsCode(err, "volume_not_found")
	if !a.registered {
		err = nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read the volume's epoch from the broker (a freshness anchor: boot cannot go on without it): %w", err)
	}
	a.be, f.Broker = be, &be
	if !hasEpoch {
		// A new volume starts only where the broker never advanced one: a
		// pre-encrypted volume the broker has seen boot is not new, even
		// when a pristine copy of it is.
		return 0, formatted && be == 0, nil
	}
	switch {
	case e < be:
		return 0, false, fmt.Errorf("%w: the volume is at epoch %d, the broker at %d", ErrRolledBack, e, be)
	case e > be && be != 0:
		// The last advance stopped before the broker's, or `confidisk
		// epoch advance` moved the volume and the vTPM only. Not a
		// roll-back (the broker never goes back, so the volume is newer
		// than anything it saw): the broker catches up. (0 is a volume the
		// broker never advanced.)
		a.b.logf("freshness: the broker's epoch %d is behind the volume's %d (an interrupted advance, or one without the broker); it catches up", be, e)
	}
	return 0, false, nil
}

func (a *brokerAnchor) advance(_ context.Context, next uint64, _ *Freshness) error {
	a.b.pending = &brokerAdvance{uuid: a.uuid, old: a.be, new: next, register: !a.registered}
	return nil
}

// anchors are the configuration's anchors, the broker first: when it
// cannot be reached, nothing (not even the vTPM counter) has changed.
func (b *booter) anchors(t transport.TPM, uuid string) []anchor {
	useTPM, useBroker := b.cfg.Anchors()
	var as []anchor
	if useBroker {
		as = append(as, &brokerAnchor{b: b, uuid: uuid})
	}
	if useTPM {
		as = append(as, &tpmAnchor{b: b, t: t})
	}
	return as
}

// advanceFreshness runs the check and the two-phase advance against the
// anchors of the configuration. formatted is true when this boot formatted
// the volume. A volume without a freshness token is accepted only then, or
// when the vTPM counter was never started (a provisioning that was
// interrupted after sealing, before its first epoch): otherwise a host could
// strip the token from an old copy.
func (b *booter) advanceFreshness(ctx context.Context, t transport.TPM, dev interface {
	luks2ReadWriter
	Sync() error
}, h *luks2.Header, vk []byte, formatted bool) (*Freshness, error) {
	e, id, err := readEpoch(h, vk)
	if err != nil {
		return nil, err
	}
	f := &Freshness{}
	anchors := b.anchors(t, h.UUID)
	mayStart := false
	for _, a := range anchors {
		start, may, err := a.check(ctx, e, id >= 0, formatted, f)
		if err != nil {
			return nil, err
		}
		if id < 0 && may {
			e, mayStart = max(e, start), true
		}
	}
	if id < 0 && !mayStart {
		return nil, fmt.Errorf("%w: no freshness token on a provisioned volume", ErrFreshnessTampered)
	}
	next := e + 1
	// Phase 1: the volume first.
	if err := writeEpoch(h, vk, next); err != nil {
		return nil, err
	}
	if err := h.Write(dev); err != nil {
		return nil, fmt.Errorf("write the new epoch: %w", err)
	}
	if err := dev.Sync(); err != nil {
		return nil, err
	}
	b.point("epoch-written")
	f.Epoch = next
	// Phase 2: the anchors.
	for _, a := range anchors {
		if err := a.advance(ctx, next, f); err != nil {
			return nil, err
		}
	}
	if f.Counter != 0 {
		b.point("anchor-advanced")
		b.logf("freshness: volume and vTPM counter at epoch %d", f.Counter)
	}
	return f, nil
}

// luks2ReadWriter is a device the header is read from and written to.
type luks2ReadWriter interface {
	ReadAt([]byte, int64) (int, error)
	WriteAt([]byte, int64) (int, error)
}

// ReadEpoch returns the verified freshness epoch of an unlocked volume and
// the vTPM counter that anchors it.
func ReadEpoch(t transport.TPM, h *luks2.Header, vk []byte) (epoch, counter uint64, err error) {
	e, id, err := readEpoch(h, vk)
	if err != nil {
		return 0, 0, err
	}
	if id < 0 {
		return 0, 0, fmt.Errorf("%w: no freshness token", ErrFreshnessTampered)
	}
	c, err := tpm.ReadCounter(t, FreshnessCounter)
	if err != nil {
		return e, 0, fmt.Errorf("read the freshness counter: %w", err)
	}
	return e, c, nil
}

// EpochOptions tune [AdvanceEpoch].
type EpochOptions struct {
	// Broker, when set, is advanced too (as by a boot with the broker as
	// an anchor): with evidence from the TPM, whose PCR 15 must hold this
	// volume's measurement — run it in the guest that opened the volume.
	Broker *client.Client
	// MeasureLog is systemd's measurement log for that evidence ("" for
	// its default).
	MeasureLog string
	// FirmwareLog is the firmware event log for that evidence ("" for
	// attest.DefaultFirmwareLog, "-" for none).
	FirmwareLog string
}

// AdvanceEpoch runs the check and the two-phase advance outside the boot
// flow (`confidisk epoch advance`): afterwards every copy of the volume taken
// before this call is refused at boot. dev must be the volume's device,
// opened for writing.
func AdvanceEpoch(ctx context.Context, t transport.TPM, dev interface {
	luks2ReadWriter
	Sync() error
}, h *luks2.Header, vk []byte, o EpochOptions) (*Freshness, error) {
	b := &booter{cfg: Config{Anchor: "tpm"}, tpm: t, broker: o.Broker, o: Options{MeasureLog: o.MeasureLog, FirmwareLog: o.FirmwareLog},
		res: &Result{KeyID: tpm.FixateValue(vk, StateName, h.UUID)}}
	if o.Broker != nil {
		b.cfg.Anchor = "tpm+broker"
	}
	fr, err := b.advanceFreshness(ctx, t, dev, h, vk, false)
	if err != nil {
		return nil, err
	}
	if err := b.reportToBroker(ctx, h); err != nil {
		return fr, fmt.Errorf("the volume and the vTPM are at epoch %d, the broker was not advanced (the next boot will): %w", fr.Epoch, err)
	}
	return fr, nil
}
