package recovery

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
)

const uuid = "0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90"

func newKey(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestWrapUnwrap(t *testing.T) {
	op := newKey(t)
	pass := []byte("cbdefghi-jklnrtuv")
	tok, err := Wrap(op.PublicKey(), uuid, 0, pass)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tok.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, pass) {
		t.Fatal("the token holds the passphrase in clear")
	}
	back, err := Find(map[int]json.RawMessage{3: json.RawMessage(`{"type":"other","keyslots":[]}`), 5: raw})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tok, back); diff != "" {
		t.Errorf("token round trip (-want +got):\n%s", diff)
	}
	got, err := back.Unwrap(op, uuid)
	if err != nil || !bytes.Equal(got, pass) {
		t.Fatalf("Unwrap = %q, %v", got, err)
	}
	if _, err := back.Unwrap(newKey(t), uuid); !errors.Is(err, ErrWrongKey) {
		t.Errorf("another operator key: %v, want ErrWrongKey", err)
	}
	if _, err := back.Unwrap(op, "11111111-1f4e-4d2b-9a51-3e1d2c7b8a90"); !errors.Is(err, ErrWrongKey) {
		t.Errorf("token moved to another volume: %v, want ErrWrongKey", err)
	}
	back.Sealed[len(back.Sealed)-1] ^= 1
	if _, err := back.Unwrap(op, uuid); !errors.Is(err, ErrWrongKey) {
		t.Errorf("altered ciphertext: %v, want ErrWrongKey", err)
	}
	if _, err := Find(map[int]json.RawMessage{}); !errors.Is(err, ErrNoToken) {
		t.Errorf("no token: %v", err)
	}
}

func TestParseTokenBad(t *testing.T) {
	good, _ := (&Token{Keyslot: 0, Recipient: strings.Repeat("ab", 32), Sealed: make([]byte, 64)}).Marshal()
	var base map[string]any
	json.Unmarshal(good, &base)
	tests := map[string]struct {
		key  string
		val  any
		want string
	}{
		"type":        {"type", "systemd-tpm2", "type"},
		"suite":       {"suite", "DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM", "suite"},
		"no keyslot":  {"keyslots", []string{}, "keyslots"},
		"bad keyslot": {"keyslots", []string{"01"}, "keyslot"},
		"recipient":   {"recipient", "abcd", "recipient"},
		"sealed":      {"sealed", "!!", "sealed"},
		"short":       {"sealed", "AAAA", "sealed"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			m := map[string]any{}
			for k, v := range base {
				m[k] = v
			}
			m[tc.key] = tc.val
			b, _ := json.Marshal(m)
			if _, err := ParseToken(b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseToken = %v, want an error about %s", err, tc.want)
			}
		})
	}
	if _, err := ParseToken(bytes.Repeat([]byte(" "), MaxTokenSize+1)); err == nil {
		t.Error("oversized token accepted")
	}
}

func TestKeys(t *testing.T) {
	op := newKey(t)
	privPEM, pubPEM, err := MarshalKeys(op)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKey(privPEM)
	if err != nil || !priv.Equal(op) {
		t.Fatalf("private key round trip: %v", err)
	}
	pub, err := ParsePublicKey(pubPEM)
	if err != nil || !pub.Equal(op.PublicKey()) {
		t.Fatalf("public key round trip: %v", err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if _, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})); err == nil || !strings.Contains(err.Error(), "X25519") {
		t.Errorf("a P-256 key: %v", err)
	}
	if _, err := ParsePublicKey(privPEM); err == nil {
		t.Error("a private key accepted as the public one")
	}
	if _, err := ParsePrivateKey([]byte("junk")); err == nil {
		t.Error("junk accepted")
	}
}

// TestOpenSSLKeys: keys made by openssl, as docs/boot.md tells operators,
// parse here.
func TestOpenSSLKeys(t *testing.T) {
	openssl := testutil.LookPath(t, "openssl", "openssl")
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "k"), filepath.Join(dir, "p")
	for _, args := range [][]string{{"genpkey", "-algorithm", "X25519", "-out", key}, {"pkey", "-in", key, "-pubout", "-out", pub}} {
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v: %s", args, err, out)
		}
	}
	kb, _ := os.ReadFile(key)
	pb, _ := os.ReadFile(pub)
	priv, err := ParsePrivateKey(kb)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePublicKey(pb)
	if err != nil || !p.Equal(priv.PublicKey()) {
		t.Fatalf("openssl public key: %v", err)
	}
}

func FuzzParseToken(f *testing.F) {
	good, _ := (&Token{Keyslot: 1, Recipient: strings.Repeat("ab", 32), Sealed: make([]byte, 80)}).Marshal()
	f.Add(good)
	f.Add([]byte(`{"type":"confidisk-recovery"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseToken(b)
		if err != nil {
			return
		}
		again, err := tok.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseToken(again)
		if err != nil {
			t.Fatalf("a parsed token does not parse again: %v", err)
		}
		if diff := cmp.Diff(tok, back); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}
