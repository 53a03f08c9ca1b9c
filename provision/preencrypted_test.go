package provision

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/luks2/metamac"
)

// preEncryptedHeader is a header as image encrypt makes it, with its token.
func preEncryptedHeader(t *testing.T, o PreEncryptedOptions) (*luks2.Header, *integrity.Superblock, []byte) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "vol"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	h, vk, err := luks2.Format(f, 20<<20, []byte("operator"), luks2.FormatOptions{
		Integrity: "hmac-sha256", PBKDF: luks2.PBKDF{Type: "pbkdf2", Hash: "sha512", Iterations: 1000},
	})
	if err != nil {
		t.Fatal(err)
	}
	sb := &integrity.Superblock{Version: 5, IntegrityTagSize: 32, JournalSections: 4, ProvidedDataSectors: 8000, Log2SectorsPerBlock: 3}
	tok, err := PreEncryptedToken(h, sb, vk, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddToken(tok, -1); err != nil {
		t.Fatal(err)
	}
	return h, sb, vk
}

// TestPreEncryptedToken: the token a writer makes offline is the one first
// boot would have written by its step, verifies under the volume key with
// the boot's own check, and names its origin.
func TestPreEncryptedToken(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    PreEncryptedOptions
		want Step
	}{
		{"without data", PreEncryptedOptions{RecoveryKeyslot: 0}, StepInitialised},
		{"with a file system", PreEncryptedOptions{HasFilesystem: true, RW: RWNone, RecoveryKeyslot: 0}, StepFilesystem},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, sb, vk := preEncryptedHeader(t, tc.o)
			pt := reparse(t, h)
			rw := tc.o.RW
			if rw == "" {
				rw = RWOverlay
			}
			got := struct {
				Step   Step
				Origin string
				RW     RWMode
				Slot   int
			}{pt.Step, pt.Origin, pt.RW, pt.RecoveryKeyslot}
			want := struct {
				Step   Step
				Origin string
				RW     RWMode
				Slot   int
			}{tc.want, OriginPreEncrypted, rw, 0}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("token (-want +got):\n%s", d)
			}
			readSB := func() (*integrity.Superblock, error) { return sb, nil }
			if err := verifyMetadata(pt, h, readSB, vk); err != nil {
				t.Errorf("verify: %v", err)
			}
			if _, err := checkSettings(pt.Settings, &Settings{Anchor: "broker", PCRs: []int{}, TEE: "none"}); err != nil {
				t.Errorf("the offline token's settings refuse a broker-only boot: %v", err)
			}
			// The host cannot turn the origin (or the step) into something else.
			pt.Origin = ""
			if err := verifyMetadata(pt, h, readSB, vk); !errors.Is(err, ErrMetadataTampered) {
				t.Errorf("origin removed: %v, want %v", err, ErrMetadataTampered)
			}
			other := *sb
			other.JournalSections = 8
			pt = reparse(t, h)
			if err := verifyMetadata(pt, h, func() (*integrity.Superblock, error) { return &other, nil }, vk); !errors.Is(err, metamac.ErrChanged) {
				t.Errorf("another superblock: %v, want %v", err, metamac.ErrChanged)
			}
		})
	}
}

// TestPreEncryptedTokenRefuses: options no boot could use are refused
// before anything is made.
func TestPreEncryptedTokenRefuses(t *testing.T) {
	h, sb, vk := preEncryptedHeader(t, PreEncryptedOptions{})
	for _, o := range []PreEncryptedOptions{{RW: "volatile"}, {RW: RWCopy}} {
		if _, err := PreEncryptedToken(h, sb, vk, o); err == nil {
			t.Errorf("%+v: accepted", o)
		}
	}
}

// TestOriginKeepsOldMACs: tokens without an origin (every self-encrypted
// volume) encode as before, so their MACs still verify.
func TestOriginKeepsOldMACs(t *testing.T) {
	h, sb, vk, pt := provisionedHeader(t)
	raw, err := json.Marshal(pt)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["origin"]; ok {
		t.Errorf("a self-encrypted volume's token has an origin: %s", raw)
	}
	if err := verifyMetadata(reparse(t, h), h, func() (*integrity.Superblock, error) { return sb, nil }, vk); err != nil {
		t.Error(err)
	}
}
