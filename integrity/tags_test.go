package integrity

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTagSize(t *testing.T) {
	for _, tc := range []struct {
		cipher, mode, integrity string
		want                    int
		wantErr                 string
	}{
		// The two LUKS2 configurations of reference §1b.
		{"aes", "xts-plain64", "hmac-sha256", 32, ""},
		{"aes", "xts-plain64", "hmac(sha256)", 32, ""},
		{"aes", "gcm-random", "aead", 28, ""},
		// IV part.
		{"aes", "xts-random", "hmac-sha256", 48, ""},
		{"aes", "ccm-random", "aead", 24, ""},
		{"aes", "ctr-random", "hmac-sha1", 36, ""},
		{"aegis256", "random", "aead", 48, ""},
		{"aegis128", "random", "aead", 32, ""},
		{"chacha20", "random", "poly1305", 28, ""}, // poly1305 forces a 12-byte IV
		{"aes", "xts-plain64", "none", 0, "needs no tag"},
		{"aes", "xts-random", "none", 16, ""},
		// Auth part.
		{"aes", "xts-plain64", "hmac-sha1", 20, ""},
		{"aes", "xts-plain64", "hmac-sha512", 64, ""},
		{"aes", "xts-plain64", "hmac(sha512)", 64, ""},
		{"aes", "xts-plain64", "cmac-aes", 16, ""},
		{"aes", "xts-plain64", "poly1305", 16, ""},
		{"paes", "xts-plain64", "phmac-sha256", 32, ""},
		{"aes", "xts-plain64", "hmac-md5", 0, `unknown integrity algorithm "hmac-md5"`},
		{"aes", "xts-plain64", "", 0, `unknown integrity algorithm ""`},
	} {
		got, err := TagSize(tc.cipher, tc.mode, tc.integrity)
		errText := ""
		if err != nil {
			errText = err.Error()
		}
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && !strings.Contains(errText, tc.wantErr) {
			t.Errorf("TagSize(%q, %q, %q) error %v, want %q", tc.cipher, tc.mode, tc.integrity, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("TagSize(%q, %q, %q) (-want +got):\n%s", tc.cipher, tc.mode, tc.integrity, diff)
		}
	}
}

func TestKeySizeAndNormalize(t *testing.T) {
	type res struct {
		Kernel  string
		KeySize int
		KeyErr  bool
	}
	for _, tc := range []struct {
		in   string
		want res
	}{
		{"hmac-sha256", res{"hmac(sha256)", 32, false}},
		{"hmac(sha256)", res{"hmac(sha256)", 32, false}},
		{"hmac-sha512", res{"hmac(sha512)", 64, false}},
		{"hmac-sha1", res{"hmac(sha1)", 20, false}},
		{"aead", res{"aead", 0, false}},
		{"poly1305", res{"poly1305", 0, false}},
		{"none", res{"none", 0, false}},
		{"cmac-aes", res{"cmac(aes)", 0, true}},
		{"phmac-sha256", res{"phmac(sha256)", 0, true}},
	} {
		var got res
		var err error
		got.Kernel, err = NormalizeIntegrity(tc.in)
		if err != nil {
			t.Errorf("NormalizeIntegrity(%q): %v", tc.in, err)
		}
		got.KeySize, err = KeySize(tc.in)
		got.KeyErr = err != nil
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, bad := range []string{"hmac-sha384", "HMAC-SHA256", "hmac(sha256", "crc32c"} {
		if _, err := NormalizeIntegrity(bad); !errors.Is(err, ErrUnknownIntegrity) {
			t.Errorf("NormalizeIntegrity(%q) error %v, want ErrUnknownIntegrity", bad, err)
		}
		if _, err := KeySize(bad); !errors.Is(err, ErrUnknownIntegrity) {
			t.Errorf("KeySize(%q) error %v, want ErrUnknownIntegrity", bad, err)
		}
	}
}
