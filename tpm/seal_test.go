package tpm

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// sniffer records every command and response, to check what crosses the bus.
type sniffer struct {
	t       transport.TPM
	traffic [][]byte
}

func (s *sniffer) Send(in []byte) ([]byte, error) {
	s.traffic = append(s.traffic, bytes.Clone(in))
	out, err := s.t.Send(in)
	s.traffic = append(s.traffic, bytes.Clone(out))
	return out, err
}

func extend(t *testing.T, tp transport.TPM, pcr int, data string) {
	t.Helper()
	d := sha256.Sum256([]byte(data))
	if err := ExtendPCR(tp, pcr, map[Bank][]byte{SHA256: d[:]}); err != nil {
		t.Fatal(err)
	}
}

func TestSealUnsealRoundTripSecretNeverInClear(t *testing.T) {
	sw := tpmtest.Start(t)
	sn := &sniffer{t: sw.Open()}
	secret := []byte("0123456789abcdef0123456789ABCDEF")
	s, err := Seal(sn, secret, SealOptions{PCRs: []int{7, 15}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unseal(sn, s, UnsealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatal("unsealed secret differs")
	}
	for i, m := range sn.traffic {
		if bytes.Contains(m, secret) {
			t.Fatalf("message %d on the bus contains the secret in clear", i)
		}
	}
}

func TestUnsealErrors(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	tests := map[string]struct {
		opts   SealOptions
		change func(t *testing.T, sw *tpmtest.SWTPM, tp transport.TPM, s *Sealed)
		unseal UnsealOptions
		want   error
		not    error
	}{
		"pcr changed": {
			opts:   SealOptions{PCRs: []int{7}},
			change: func(t *testing.T, _ *tpmtest.SWTPM, tp transport.TPM, _ *Sealed) { extend(t, tp, 7, "evil") },
			want:   ErrPCRMismatch, not: ErrVolumeKeyMeasured,
		},
		"pcr 15 already extended": {
			opts:   SealOptions{PCRs: []int{7, 15}},
			change: func(t *testing.T, _ *tpmtest.SWTPM, tp transport.TPM, _ *Sealed) { extend(t, tp, 15, "vk") },
			want:   ErrVolumeKeyMeasured,
		},
		"wrong pin": {
			opts:   SealOptions{PCRs: []int{7}, PIN: []byte("1234")},
			unseal: UnsealOptions{PIN: []byte("4321")},
			want:   ErrWrongPIN,
		},
		"salted pin, wrong": {
			opts:   SealOptions{PCRs: []int{7}, PIN: []byte("1234"), PINSalt: bytes.Repeat([]byte{1}, 32)},
			unseal: UnsealOptions{PIN: []byte("12345")},
			want:   ErrWrongPIN,
		},
		"pin go-tpm cannot use": {
			opts: SealOptions{PIN: unusablePIN()},
			want: ErrPINUnusable,
		},
		"pin missing": {
			opts: SealOptions{PIN: []byte("1234")},
			want: ErrPINRequired,
		},
		"damaged blob": {
			opts:   SealOptions{PCRs: []int{7}},
			change: func(_ *testing.T, _ *tpmtest.SWTPM, _ transport.TPM, s *Sealed) { s.Public = s.Public[:10] },
			want:   ErrBadBlob,
		},
		"other srk": {
			opts: SealOptions{PCRs: []int{7}},
			change: func(t *testing.T, _ *tpmtest.SWTPM, _ transport.TPM, s *Sealed) {
				other := tpmtest.Start(t)
				srk, _, err := GetOrCreateSRK(other.Open())
				if err != nil {
					t.Fatal(err)
				}
				s.SRK = srk.Serialize()
			},
			want: ErrSRKMismatch,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sw := tpmtest.Start(t)
			tp := sw.Open()
			s, err := Seal(tp, secret, tc.opts)
			if errors.Is(err, tc.want) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.change != nil {
				tc.change(t, sw, tp, s)
			}
			_, err = Unseal(tp, s, tc.unseal)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Unseal error = %v, want %v", err, tc.want)
			}
			if tc.not != nil && errors.Is(err, tc.not) {
				t.Fatalf("Unseal error = %v, must not be %v", err, tc.not)
			}
		})
	}
}

func TestSealToExpectedValuesAndPINAcrossReboot(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	// Seal to the values PCR 7 will have after a reboot and one extend.
	d := sha256.Sum256([]byte("next boot"))
	want, err := ExtendValue(SHA256, make([]byte, 32), d[:])
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("secret")
	s, err := Seal(tp, secret, SealOptions{PCRs: []int{7}, PCRValues: map[int][]byte{7: want}, PIN: []byte("pin")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unseal(tp, s, UnsealOptions{PIN: []byte("pin")}); !errors.Is(err, ErrPCRMismatch) {
		t.Fatalf("before the extend: %v, want ErrPCRMismatch", err)
	}
	sw.Reboot()
	tp = sw.Open()
	extend(t, tp, 7, "next boot")
	got, err := Unseal(tp, s, UnsealOptions{PIN: []byte("pin")})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(secret, got); diff != "" {
		t.Fatalf("secret (-want +got):\n%s", diff)
	}
}

func TestLegacyPrimarySeal(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	s, err := Seal(tp, []byte("x"), SealOptions{PCRs: []int{7}, Legacy: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.SRK != nil {
		t.Fatal("legacy seal recorded an srk")
	}
	if got, err := Unseal(tp, s, UnsealOptions{}); err != nil || string(got) != "x" {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
}

func TestSignedPolicy(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	secret := []byte("signed")
	s, err := Seal(tp, secret, SealOptions{PCRs: []int{7}, PolicyKeyPEM: pemKey, PolicyKeyPCRs: []int{11}})
	if err != nil {
		t.Fatal(err)
	}
	sign := func() []byte { return signedPCR11(t, tp, key) }
	doc := sign()
	if got, err := Unseal(tp, s, UnsealOptions{Signature: doc}); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
	extend(t, tp, 11, "new uki")
	if _, err := Unseal(tp, s, UnsealOptions{Signature: doc}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("old signature after pcr 11 changed: %v, want ErrBadSignature", err)
	}
	if got, err := Unseal(tp, s, UnsealOptions{Signature: sign()}); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal with a new signature = %q, %v", got, err)
	}
}

func unusablePIN() []byte {
	for i := 0; ; i++ {
		p := []byte(fmt.Sprint(i))
		if authHasInteriorZero(PINAuth(p, nil)) {
			return p
		}
	}
}

// signedPCR11 is the tpm2-pcr-signature.json document of key's signature
// over the policy of PCR 11's current value in tp.
func signedPCR11(t *testing.T, tp transport.TPM, key *rsa.PrivateKey) []byte {
	t.Helper()
	vals, err := ReadPCRs(tp, SHA256, []int{11})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := PolicyDigest(SHA256, []int{11}, vals, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := SignPCRPolicy(key, pol)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := PublicKeyFingerprint(&key.PublicKey)
	doc, _ := json.Marshal(map[string][]PCRSignature{"sha256": {{PCRs: []int{11}, PKFP: hex.EncodeToString(fp), Pol: hex.EncodeToString(pol), Sig: base64.StdEncoding.EncodeToString(sig)}}})
	return doc
}
