package tpm

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// offlineSRK reads the SRK of tp as an operator would hand it over: what
// `confidisk tpm srk` prints (a TPM2B_PUBLIC), parsed with ParseSRKPublic.
func offlineSRK(t *testing.T, tp transport.TPM) (*SRK, *tpm2.TPMTPublic) {
	t.Helper()
	srk, _, err := GetOrCreateSRK(tp)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParseSRKPublic(MarshalSRKPublic(&srk.Public))
	if err != nil {
		t.Fatal(err)
	}
	return srk, pub
}

func readPCRs(t *testing.T, tp transport.TPM, pcrs ...int) map[int][]byte {
	t.Helper()
	vals, err := ReadPCRs(tp, SHA256, pcrs)
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// publicWithout is a sealed object's public area with unique and the
// attributes cleared, which differ between any two seals and between Seal
// and SealOffline.
func publicWithout(t *testing.T, b []byte) []byte {
	t.Helper()
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](b[2:])
	if err != nil {
		t.Fatal(err)
	}
	p.ObjectAttributes = tpm2.TPMAObject{}
	p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{})
	return tpm2.Marshal(p)
}

func TestSealOfflineUnsealOnThatTPMOnly(t *testing.T) {
	a := tpmtest.Start(t)
	sn := &sniffer{t: a.Open()}
	extend(t, sn, 7, "secure boot state")
	srk, pub := offlineSRK(t, sn)
	vals := readPCRs(t, sn, 7, 15)
	if !bytes.Equal(vals[15], make([]byte, 32)) {
		t.Fatalf("pcr 15 = %x before any measurement", vals[15])
	}
	secret := []byte("0123456789abcdef0123456789ABCDEF")
	o := SealOptions{PCRs: []int{15, 7}, PCRValues: vals}
	s, err := SealOffline(pub, secret, o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.SRK, srk.Serialize()) {
		t.Fatalf("tpm2_srk of the offline seal differs from the one the tpm's srk serializes to:\n got %x\nwant %x", s.SRK, srk.Serialize())
	}
	online, err := Seal(sn, []byte("other"), o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.PolicyDigest, online.PolicyDigest) || !bytes.Equal(publicWithout(t, s.Public), publicWithout(t, online.Public)) {
		t.Fatal("the offline seal's policy or public area differs from Seal's")
	}
	sn.traffic = nil
	got, err := Unseal(sn, s, UnsealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("unsealed %q", got)
	}
	for i, m := range sn.traffic {
		if bytes.Contains(m, secret) {
			t.Fatalf("message %d on the bus contains the secret in clear", i)
		}
	}

	t.Run("token round trip", func(t *testing.T) {
		j, err := NewToken(s, 3).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		tk, err := ParseToken(j)
		if err != nil {
			t.Fatal(err)
		}
		j2, _ := tk.Marshal()
		if !bytes.Equal(j, j2) {
			t.Fatalf("token not stable:\n%s\n%s", j, j2)
		}
		back, err := tk.Sealed()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Seed, s.Seed) || !bytes.Equal(back.Blob(), s.Blob()) || back.Legacy {
			t.Fatal("the token lost the seed or the srk")
		}
		if got, err := Unseal(sn, back, UnsealOptions{}); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Unseal from the token = %q, %v", got, err)
		}
	})
	t.Run("another tpm", func(t *testing.T) {
		b := tpmtest.Start(t).Open()
		if _, _, err := GetOrCreateSRK(b); err != nil {
			t.Fatal(err)
		}
		checkOtherTPMRefuses(t, b, s)
	})
	t.Run("pcr 7 changed", func(t *testing.T) { checkPCR7ChangeRefused(t, sn, s) })
}

// checkOtherTPMRefuses: on b, a TPM with an SRK of its own, Unseal of s
// fails with ErrSRKMismatch, from the tpm2_srk check and, without it, from
// the import.
func checkOtherTPMRefuses(t *testing.T, b transport.TPM, s *Sealed) {
	t.Helper()
	if _, err := Unseal(b, s, UnsealOptions{}); !errors.Is(err, ErrSRKMismatch) {
		t.Fatalf("Unseal on another tpm: %v, want ErrSRKMismatch", err)
	}
	noSRK := *s
	noSRK.SRK = nil
	if _, err := Unseal(b, &noSRK, UnsealOptions{}); !errors.Is(err, ErrSRKMismatch) || !strings.Contains(err.Error(), "import") {
		t.Fatalf("Unseal on another tpm without the srk check: %v, want ErrSRKMismatch from the import", err)
	}
}

// checkPCR7ChangeRefused: once PCR 7 of tp changes, Unseal of s (sealed to
// it) fails with ErrPCRMismatch.
func checkPCR7ChangeRefused(t *testing.T, tp transport.TPM, s *Sealed) {
	t.Helper()
	extend(t, tp, 7, "evil")
	_, err := Unseal(tp, s, UnsealOptions{})
	if !errors.Is(err, ErrPCRMismatch) || errors.Is(err, ErrVolumeKeyMeasured) {
		t.Fatalf("Unseal after pcr 7 changed: %v, want ErrPCRMismatch", err)
	}
}

func TestSealOfflineVolumeKeyMeasured(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	_, pub := offlineSRK(t, tp)
	s, err := SealOffline(pub, []byte("x"), SealOptions{PCRs: []int{7, 15}, PCRValues: readPCRs(t, tp, 7, 15)})
	if err != nil {
		t.Fatal(err)
	}
	extend(t, tp, 15, "volume key")
	if _, err := Unseal(tp, s, UnsealOptions{}); !errors.Is(err, ErrVolumeKeyMeasured) {
		t.Fatalf("Unseal after pcr 15 was extended: %v, want ErrVolumeKeyMeasured", err)
	}
}

func TestSealOfflinePINAndSignedPolicy(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	_, pub := offlineSRK(t, tp)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	salt := bytes.Repeat([]byte{9}, 32)
	pin := []byte("1234")
	for !PINAuthUsable(pin, salt) {
		pin = append(pin, '5')
	}
	secret := []byte("signed and pinned")
	s, err := SealOffline(pub, secret, SealOptions{
		PCRs: []int{7}, PCRValues: readPCRs(t, tp, 7), PIN: pin, PINSalt: salt,
		PolicyKeyPEM: pemKey, PolicyKeyPCRs: []int{11},
	})
	if err != nil {
		t.Fatal(err)
	}
	sign := func() []byte { return signedPCR11(t, tp, key) }
	doc := sign()
	if got, err := Unseal(tp, s, UnsealOptions{PIN: pin, Signature: doc}); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal = %q, %v", got, err)
	}
	wrong := []byte("0000")
	for !PINAuthUsable(wrong, salt) {
		wrong = append(wrong, '0')
	}
	if _, err := Unseal(tp, s, UnsealOptions{PIN: wrong, Signature: doc}); !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("wrong pin: %v, want ErrWrongPIN", err)
	}
	extend(t, tp, 11, "new uki")
	if _, err := Unseal(tp, s, UnsealOptions{PIN: pin, Signature: doc}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("old signature after pcr 11 changed: %v, want ErrBadSignature", err)
	}
	if got, err := Unseal(tp, s, UnsealOptions{PIN: pin, Signature: sign()}); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Unseal with a new signature = %q, %v", got, err)
	}
}

func TestSealOfflineRefuses(t *testing.T) {
	srk := swtpmSRK(t)
	signing := srk.Public
	signing.ObjectAttributes.SignEncrypt = true
	zero := map[int][]byte{7: make([]byte, 32), 15: make([]byte, 32)}
	tests := map[string]struct {
		srk    *tpm2.TPMTPublic
		secret []byte
		o      SealOptions
		want   string
		is     error
	}{
		"pcr value missing":       {o: SealOptions{PCRs: []int{7, 15, 11}, PCRValues: zero}, want: "no value for pcr 11"},
		"pcr value short":         {o: SealOptions{PCRs: []int{7}, PCRValues: map[int][]byte{7: {1}}}, want: "pcr 7 value has 1 bytes"},
		"legacy primary":          {o: SealOptions{Legacy: true}, want: "legacy"},
		"secret too long":         {secret: make([]byte, 129), want: "129 bytes"},
		"policy key without pcrs": {o: SealOptions{PolicyKeyPEM: []byte("x")}, want: "policy key needs the pcrs"},
		"signing key as srk":      {srk: &signing, is: ErrNotStorageKey},
		"unusable pin":            {o: SealOptions{PIN: unusablePIN()}, is: ErrPINUnusable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.srk == nil {
				tc.srk = &srk.Public
			}
			if tc.secret == nil {
				tc.secret = []byte("s")
			}
			_, err := SealOffline(tc.srk, tc.secret, tc.o)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SealOffline error = %v, want one containing %q (is %v)", err, tc.want, tc.is)
			}
		})
	}
}

// TestUnsealDamagedOfflineSeal flips bytes of each part of an offline seal:
// a clear error every time, never the secret.
func TestUnsealDamagedOfflineSeal(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	_, pub := offlineSRK(t, tp)
	secret := []byte("do not leak")
	s, err := SealOffline(pub, secret, SealOptions{PCRs: []int{7}, PCRValues: readPCRs(t, tp, 7)})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x40
		return b
	}
	tests := map[string]struct {
		change func(s *Sealed)
		want   error
	}{
		"seed x":                  {func(s *Sealed) { s.Seed = flip(s.Seed, 6) }, ErrBadBlob},
		"seed y":                  {func(s *Sealed) { s.Seed = flip(s.Seed, len(s.Seed)-1) }, ErrBadBlob},
		"seed size":               {func(s *Sealed) { s.Seed = flip(s.Seed, 1) }, ErrBadBlob},
		"seed truncated":          {func(s *Sealed) { s.Seed = s.Seed[:len(s.Seed)-1] }, ErrBadBlob},
		"seed of another seal":    {func(s *Sealed) { s.Seed = otherSeed(t, pub) }, ErrBadBlob},
		"integrity hmac":          {func(s *Sealed) { s.Private = flip(s.Private, 5) }, ErrBadBlob},
		"encrypted sensitive":     {func(s *Sealed) { s.Private = flip(s.Private, len(s.Private)-1) }, ErrBadBlob},
		"public area auth policy": {func(s *Sealed) { s.Public = flip(s.Public, len(s.Public)-40) }, ErrBadBlob},
		"bytes after the seed":    {func(s *Sealed) { s.Seed = append(bytes.Clone(s.Seed), 0) }, ErrBadBlob},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := *s
			tc.change(&d)
			got, err := Unseal(tp, &d, UnsealOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Unseal of a damaged seal = %q, %v; want %v", got, err, tc.want)
			}
			if got != nil {
				t.Fatal("Unseal returned data with its error")
			}
		})
	}
	if got, err := Unseal(tp, s, UnsealOptions{}); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the undamaged seal: %q, %v", got, err)
	}
}

func otherSeed(t *testing.T, pub *tpm2.TPMTPublic) []byte {
	t.Helper()
	o, err := SealOffline(pub, []byte("other"), SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return o.Seed
}

// TestImportRefusesFixedTPM is why offline seals cannot carry Seal's
// fixedTPM and fixedParent: TPM2_Import refuses them.
func TestImportRefusesFixedTPM(t *testing.T) {
	tp := tpmtest.Start(t).Open()
	srk, pub := offlineSRK(t, tp)
	obj, sens, err := offlineObject(make([]byte, 32), nil, []byte("x"), sealedAttributes)
	if err != nil {
		t.Fatal(err)
	}
	dup, seed, err := duplicateTo(pub, &obj, &sens)
	if err != nil {
		t.Fatal(err)
	}
	_, err = importSealed(tp, srk, tpm2.Marshal(tpm2.TPM2BPrivate{Buffer: dup}), tpm2.Marshal(tpm2.New2B(obj)),
		tpm2.Marshal(tpm2.TPM2BEncryptedSecret{Buffer: seed}), true)
	if !errors.Is(err, tpm2.TPMRCAttributes) {
		t.Fatalf("import of a fixedTPM object: %v, want TPM_RC_ATTRIBUTES", err)
	}
}

func TestSplitBlobSeed(t *testing.T) {
	srk := swtpmSRK(t)
	s, err := SealOffline(&srk.Public, []byte("x"), SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	priv, pub, seed, err := SplitBlob(s.Blob())
	if err != nil || !bytes.Equal(priv, s.Private) || !bytes.Equal(pub, s.Public) || !bytes.Equal(seed, s.Seed) {
		t.Fatalf("SplitBlob of a seeded blob: %v", err)
	}
	plain := append(bytes.Clone(s.Private), s.Public...)
	if _, _, seed, err := SplitBlob(plain); err != nil || seed != nil {
		t.Fatalf("SplitBlob of a blob without a seed: seed %x, %v", seed, err)
	}
	for name, b := range map[string][]byte{
		"empty seed":         append(bytes.Clone(plain), 0, 0),
		"one byte after pub": append(bytes.Clone(plain), 1),
		"byte after seed":    append(s.Blob(), 0),
		"seed truncated":     s.Blob()[:len(s.Blob())-1],
		"huge seed":          append(bytes.Clone(plain), 0xff, 0xff),
	} {
		if _, _, _, err := SplitBlob(b); !errors.Is(err, ErrBadBlob) {
			t.Errorf("%s: %v, want ErrBadBlob", name, err)
		}
	}
}
