package provision

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// brokerFor starts a broker whose verifier is the real attest.Validator
// with a policy that pins PCR 7 to pcr7 (hex), and returns a booter that
// uses it (and the vTPM tp) with the given anchors.
func brokerFor(t *testing.T, pcr7, anchor string, tp transport.TPM) (*booter, *brokertest.Local) {
	t.Helper()
	pol, err := attest.ParsePolicy([]byte(`{"version":1,"pcrs":{"7":["` + pcr7 + `"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.NewValidator(pol, attest.ValidatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := brokertest.StartLocal(t.TempDir(), nil, func(c *broker.Config) { c.Verifier = v })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	tc, err := client.TLSConfig(l.TLS.ServerCert, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(l.URL, client.Options{TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := DefaultConfig()
	cfg.Broker, cfg.Anchor = l.URL, anchor
	// No firmware log: the host's own (if it has a TPM) is not swtpm's.
	return &booter{cfg: cfg, tpm: tp, broker: c, res: &Result{}, o: Options{FirmwareLog: "-"}}, l
}

// freshnessBoot runs the freshness part of a boot of the volume in f: the check and
// first phase, the PCR 15 measurement, the creation record on first boot,
// the broker's advance.
func (b *booter) freshnessBoot(t *testing.T, f interface {
	luks2ReadWriter
	Sync() error
	Name() string
}, vk []byte, first bool) (*Freshness, error) {
	t.Helper()
	h, _, err := luks2.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	b.pending = nil
	b.o.MeasureLog = filepath.Join(t.TempDir(), "tpm2-measure.log") // in /run: new every boot
	b.res.KeyID = tpm.FixateValue(vk, StateName, h.UUID)
	fr, err := b.advanceFreshness(context.Background(), b.tpm, f, h, vk, first)
	if err != nil {
		return nil, err
	}
	if _, err := tpm.MeasureVolumeKey(b.tpm, vk, StateName, h.UUID, tpm.MeasureOptions{LogPath: b.o.MeasureLog}); err != nil {
		t.Fatal(err)
	}
	if first {
		if err := b.storeCreationRecord(f.Name(), h); err != nil {
			t.Fatal(err)
		}
	}
	return fr, b.reportToBroker(context.Background(), h)
}

// TestBrokerAnchor walks the broker as a freshness anchor against a real
// broker (bbolt store, attest.Validator with a PCR policy) and swtpm: first
// boot registers the creation record and moves the epoch, later boots
// advance it with fresh evidence, an old copy is refused by the broker even
// when the vTPM agrees with it, a concurrent copy loses the race, an epoch
// advanced without the broker is caught up, and a guest outside the policy
// is refused.
func TestBrokerAnchor(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	defer tp.Close()
	zero := strings.Repeat("00", 32)
	b, l := brokerFor(t, zero, "tpm+broker", tp)
	f, h, vk := freshVolume(t)
	ctx := context.Background()

	fr, err := b.freshnessBoot(t, f, vk, true)
	if err != nil {
		t.Fatalf("first boot: %v", err)
	}
	if got, err := l.Store.Epoch(ctx, h.UUID); err != nil || got != fr.Epoch {
		t.Fatalf("broker epoch after first boot = %d, %v; want %d", got, err, fr.Epoch)
	}
	if v, err := l.Store.Volume(ctx, h.UUID); err != nil || v.KeyID != b.res.KeyID {
		t.Fatalf("registered volume %+v, %v; want key id %s", v, err, b.res.KeyID)
	}
	old := snapshot(t, f)

	sw.Reboot()
	fr2, err := b.freshnessBoot(t, f, vk, false)
	if err != nil || fr2.Epoch != fr.Epoch+1 || *fr2.Broker != fr.Epoch {
		t.Fatalf("second boot: %+v, %v; want epoch %d from broker %d", fr2, err, fr.Epoch+1, fr.Epoch)
	}

	// The old copy with a vTPM that agrees with it (here: the broker as
	// the only anchor, which is what a restored vTPM state amounts to).
	current := snapshot(t, f)
	f.WriteAt(old, 0)
	sw.Reboot()
	b.cfg.Anchor = "broker"
	_, err = b.freshnessBoot(t, f, vk, false)
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "the broker at") {
		t.Fatalf("old copy: %v, want ErrRolledBack naming the broker", err)
	}
	if got := snapshot(t, f); string(got) != string(old) {
		t.Error("the refused boot wrote to the old copy")
	}
	f.WriteAt(current, 0)
	b.cfg.Anchor = "tpm+broker"

	// Two copies boot at once: both pass the check, one advance wins.
	sw.Reboot()
	h1, _, _ := luks2.Read(f)
	if _, err := b.advanceFreshness(ctx, tp, f, h1, vk, false); err != nil {
		t.Fatal(err)
	}
	racing := *b.pending
	if _, err := b.freshnessBoot(t, f, vk, false); err != nil {
		t.Fatalf("the winning copy: %v", err)
	}
	b.pending = &racing
	if err := b.reportToBroker(ctx, h1); !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "another copy") {
		t.Errorf("the losing copy: %v, want ErrRolledBack (another copy)", err)
	}

	// `confidisk epoch advance` moves the volume and the vTPM only: the
	// next boot brings the broker along instead of refusing the volume.
	sw.Reboot()
	ha, _, _ := luks2.Read(f)
	adv, err := AdvanceEpoch(ctx, tp, f, ha, vk, EpochOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sw.Reboot()
	if fr, err := b.freshnessBoot(t, f, vk, false); err != nil || fr.Epoch != adv.Epoch+1 {
		t.Fatalf("boot after epoch advance: %+v, %v; want epoch %d", fr, err, adv.Epoch+1)
	}
	if got, _ := l.Store.Epoch(ctx, h.UUID); got != adv.Epoch+1 {
		t.Errorf("broker epoch %d after catching up, want %d", got, adv.Epoch+1)
	}
	// In the running guest (PCR 15 holds the volume) it can move the
	// broker too.
	ha, _, _ = luks2.Read(f)
	if adv, err = AdvanceEpoch(ctx, tp, f, ha, vk, EpochOptions{Broker: b.broker, MeasureLog: b.o.MeasureLog, FirmwareLog: "-"}); err != nil {
		t.Fatalf("epoch advance with the broker: %v", err)
	}
	if got, _ := l.Store.Epoch(ctx, h.UUID); got != adv.Epoch {
		t.Errorf("broker epoch %d after epoch advance with it, want %d", got, adv.Epoch)
	}

	// A guest whose PCR 7 is not what the policy allows is refused.
	sw.Reboot()
	b2, _ := brokerFor(t, strings.Repeat("11", 32), "broker", tp)
	b2.res.KeyID = b.res.KeyID
	f2, _, vk2 := freshVolume(t)
	if _, err := b2.freshnessBoot(t, f2, vk2, true); !errors.Is(err, ErrBrokerRefused) || !strings.Contains(err.Error(), "pcr 7") {
		t.Errorf("guest outside the policy: %v, want ErrBrokerRefused naming pcr 7", err)
	}

	// With the vTPM as the only anchor a broker still gets the creation
	// record and evidence on every boot, and its epoch is left alone.
	sw.Reboot()
	b3, l3 := brokerFor(t, zero, "tpm", tp)
	f3, h3, vk3 := freshVolume(t)
	for i, first := range []bool{true, false} {
		if i > 0 {
			sw.Reboot()
		}
		if fr, err := b3.freshnessBoot(t, f3, vk3, first); err != nil || fr.Broker != nil {
			t.Fatalf("tpm-anchored boot %d with a broker: %+v, %v", i+1, fr, err)
		}
	}
	if v, err := l3.Store.Volume(ctx, h3.UUID); err != nil || v.KeyID != b3.res.KeyID {
		t.Errorf("tpm-anchored volume at the broker: %+v, %v", v, err)
	}
	if e, err := l3.Store.Epoch(ctx, h3.UUID); err != nil || e != 0 {
		t.Errorf("tpm-anchored volume's broker epoch = %d, %v; want 0 (untouched)", e, err)
	}
}

// TestBrokerUnreachable: when the broker (an anchor) cannot be reached,
// the freshness check fails before anything changed — the vTPM counter is
// not even defined — so the next boot can start over.
func TestBrokerUnreachable(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	defer tp.Close()
	b, l := brokerFor(t, strings.Repeat("00", 32), "tpm+broker", tp)
	l.Close() // the broker is gone
	f, h, vk := freshVolume(t)
	before := snapshot(t, f)
	if _, err := b.advanceFreshness(context.Background(), tp, f, h, vk, true); err == nil || !strings.Contains(err.Error(), "broker") {
		t.Fatalf("advanceFreshness without the broker: %v, want an error naming the broker", err)
	}
	if _, err := tpm.ReadCounter(tp, FreshnessCounter); !errors.Is(err, tpm.ErrNVIndexMissing) {
		t.Errorf("vTPM counter after the failure: %v, want it still undefined", err)
	}
	if string(snapshot(t, f)) != string(before) {
		t.Error("the failed check wrote to the volume")
	}
}
