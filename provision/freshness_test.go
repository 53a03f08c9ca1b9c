package provision

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

func freshVolume(t *testing.T) (*os.File, *luks2.Header, []byte) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "vol"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.Truncate(20 << 20)
	h, vk, err := luks2.Format(f, 20<<20, []byte("recovery"), luks2.FormatOptions{PBKDF: luks2.PBKDF{Type: "pbkdf2", Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	return f, h, vk
}

func snapshot(t *testing.T, f *os.File) []byte {
	b := make([]byte, 1<<20)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func reread(t *testing.T, f *os.File) *luks2.Header {
	h, _, err := luks2.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestFreshness walks the roll-back protocol against swtpm: first epoch,
// advances, an old copy refused, an interrupted advance accepted, a stripped
// or altered token refused, a replaced vTPM refused.
func TestFreshness(t *testing.T) {
	ctx := context.Background()
	sw := tpmtest.Start(t)
	tp := sw.Open()
	defer tp.Close()
	b := &booter{}
	f, h, vk := freshVolume(t)

	fr, err := b.advanceFreshness(ctx, tp, f, h, vk, true)
	if err != nil {
		t.Fatalf("first epoch: %v", err)
	}
	first := fr.Epoch
	old := snapshot(t, f) // the host copies the disk here

	sw.Reboot()
	if fr, err = b.advanceFreshness(ctx, tp, f, reread(t, f), vk, false); err != nil || fr.Epoch != first+1 {
		t.Fatalf("second boot: %+v %v, want epoch %d", fr, err, first+1)
	}

	// The host restores the old copy: refused, naming both values.
	current := snapshot(t, f)
	f.WriteAt(old, 0)
	sw.Reboot()
	_, err = b.advanceFreshness(ctx, tp, f, reread(t, f), vk, false)
	if !errors.Is(err, ErrRolledBack) {
		t.Fatalf("old copy: %v, want ErrRolledBack", err)
	}
	t.Logf("refusal: %v", err)
	// ... and with its freshness token stripped: refused too.
	hs := reread(t, f)
	_, id, _ := readEpoch(hs, vk)
	hs.RemoveToken(id)
	hs.Write(f)
	if _, err := b.advanceFreshness(ctx, tp, f, reread(t, f), vk, false); !errors.Is(err, ErrFreshnessTampered) {
		t.Errorf("stripped token: %v, want ErrFreshnessTampered", err)
	}
	f.WriteAt(current, 0)

	// A power cut between phase 1 and phase 2: the volume is one ahead.
	hc := reread(t, f)
	e, _, _ := readEpoch(hc, vk)
	writeEpoch(hc, vk, e+1)
	hc.Write(f)
	sw.Reboot()
	fr, err = b.advanceFreshness(ctx, tp, f, reread(t, f), vk, false)
	if err != nil || !fr.CaughtUp || fr.Epoch != e+2 {
		t.Fatalf("after an interrupted advance: %+v %v, want caught up at %d", fr, err, e+2)
	}

	// An epoch edited by the host: the MAC does not verify.
	ht := reread(t, f)
	_, id, _ = readEpoch(ht, vk)
	ht.RemoveToken(id)
	ht.AddToken([]byte(`{"type":"confidisk-freshness","keyslots":[],"epoch":"999","mac":"AAAA"}`), -1)
	ht.Write(f)
	if _, err := b.advanceFreshness(ctx, tp, f, reread(t, f), vk, false); !errors.Is(err, ErrFreshnessTampered) {
		t.Errorf("edited epoch: %v, want ErrFreshnessTampered", err)
	}

	// The same volume on a vTPM without the counter (state replaced): refused.
	f.WriteAt(current, 0)
	other := tpmtest.Start(t)
	op := other.Open()
	defer op.Close()
	if _, err := b.advanceFreshness(ctx, op, f, reread(t, f), vk, false); !errors.Is(err, ErrAnchorBehind) {
		t.Errorf("replaced vTPM: %v, want ErrAnchorBehind", err)
	}
}
