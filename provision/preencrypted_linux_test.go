package provision

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// newHeader formats a small volume and returns its header and key.
func newHeader(t *testing.T) (*luks2.Header, []byte) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "vol"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, vk, err := luks2.Format(f, 20<<20, []byte("operator"), luks2.FormatOptions{
		Integrity: "hmac-sha256", PBKDF: luks2.PBKDF{Type: "pbkdf2", Hash: "sha512", Iterations: 1000},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, vk
}

// TestReleasedKey: the guest takes the key the broker releases only when
// it opens the header's digest under the key id the broker names; a broker
// that answers another volume's key, or names another key id, is refused,
// as is a volume the broker does not know.
func TestReleasedKey(t *testing.T) {
	tp := tpmtest.Start(t).Open()
	defer tp.Close()
	zero := strings.Repeat("00", 32)
	b, l := brokerFor(t, zero, "broker", tp)
	tc, err := client.TLSConfig(l.TLS.ServerCert, l.TLS.OperatorCert, l.TLS.OperatorKey)
	if err != nil {
		t.Fatal(err)
	}
	op, err := client.New(l.URL, client.Options{TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	ctx := context.Background()
	store := func(h *luks2.Header, keyID string, key []byte) {
		t.Helper()
		if _, err := op.Register(ctx, api.RegisterRequest{Volume: api.VolumeSpec{UUID: h.UUID, KeyID: keyID}}); err != nil {
			t.Fatal(err)
		}
		if err := op.PutKey(ctx, h.UUID, keyID, key, nil); err != nil {
			t.Fatal(err)
		}
	}

	good, vk := newHeader(t)
	store(good, tpm.FixateValue(vk, StateName, good.UUID), vk)
	got, err := b.releasedKey(ctx, good)
	if err != nil || string(got) != string(vk) {
		t.Fatalf("released key: %v", err)
	}

	swapped, _ := newHeader(t)
	_, other := newHeader(t)
	store(swapped, tpm.FixateValue(other, StateName, swapped.UUID), other)
	misnamed, vk3 := newHeader(t)
	store(misnamed, strings.Repeat("ab", 32), vk3)
	unknown, _ := newHeader(t)
	for _, tc := range []struct {
		name string
		h    *luks2.Header
		want string
	}{
		{"another volume's key", swapped, "does not match the volume's digest"},
		{"another key id", misnamed, "released key id abababababababab"},
		{"unregistered", unknown, "volume_not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.releasedKey(ctx, tc.h)
			if !errors.Is(err, ErrBrokerRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %v containing %q", err, ErrBrokerRefused, tc.want)
			}
		})
	}
}
