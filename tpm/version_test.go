package tpm

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// TestVersionPolicyMatchesGoTPM: the floor check's digest equals go-tpm's
// policy calculator's for PolicyPCR then PolicyNV on the written floor
// index, for the lowest, a middle and the highest version.
func TestVersionPolicyMatchesGoTPM(t *testing.T) {
	v11 := bytes.Repeat([]byte{0x11}, 32)
	plain, err := PolicyDigest(SHA256, []int{11}, map[int][]byte{11: v11}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	pub := SecurityVersionPublic()
	pub.Attributes.Written = true
	name, err := tpm2.NVName(&pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []int{1, 7, MaxSecurityVersion} {
		calc, _ := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
		d, _ := pcrPolicyDigest([]int{11}, map[int][]byte{11: v11})
		if err := (tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: d}, Pcrs: selection(tpm2.TPMAlgSHA256, []int{11})}).Update(calc); err != nil {
			t.Fatal(err)
		}
		if err := (tpm2.PolicyNV{NVIndex: tpm2.NamedHandle{Handle: SecurityVersionIndex, Name: *name},
			OperandB: tpm2.TPM2BOperand{Buffer: floorMask(v)}, Operation: tpm2.TPMEOBitClear}).Update(calc); err != nil {
			t.Fatal(err)
		}
		got, err := VersionPolicy(plain, v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, calc.Hash().Digest) {
			t.Errorf("version %d: VersionPolicy %x, go-tpm %x", v, got, calc.Hash().Digest)
		}
	}
	for _, v := range []int{0, -1, MaxSecurityVersion + 1} {
		if _, err := VersionPolicy(plain, v); err == nil {
			t.Errorf("version %d accepted", v)
		}
	}
}

// TestSecurityFloor: against swtpm, a key sealed to a signed PCR 11 policy
// unseals with an image's versioned signature while the floor is at most its
// version, and no longer once a later image raised the floor above it; the
// floor never goes down.
func TestSecurityFloor(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	key, _ := sigTestKeys(t)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	secret := []byte("versioned")
	s, err := Seal(tp, secret, SealOptions{PCRs: []int{7}, PolicyKeyPEM: pemKey, PolicyKeyPCRs: []int{11}})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := ReadPCRs(tp, SHA256, []int{11})
	if err != nil {
		t.Fatal(err)
	}
	doc := func(v int) []byte {
		d, err := SignPCRValues(key, SHA256, 11, [][]byte{cur[11]}, v)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	unseal := func(v int) error {
		got, err := Unseal(tp, s, UnsealOptions{Signature: doc(v)})
		if err == nil && !bytes.Equal(got, secret) {
			t.Fatalf("version %d unsealed %q", v, got)
		}
		return err
	}
	if err := unseal(2); !errors.Is(err, ErrNVIndexMissing) {
		t.Fatalf("versioned signature without a floor index: %v, want ErrNVIndexMissing", err)
	}
	if f, err := ReadSecurityFloor(tp); err != nil || f != 0 {
		t.Fatalf("floor before any raise = %d, %v", f, err)
	}
	if v, err := SignedSecurityVersion(tp, doc(2), pemKey, SHA256, []int{11}); err != nil || v != 2 {
		t.Fatalf("SignedSecurityVersion = %d, %v; want 2", v, err)
	}
	raise := func(v, want int) {
		t.Helper()
		if f, err := RaiseSecurityFloor(tp, v); err != nil || f != want {
			t.Fatalf("RaiseSecurityFloor(%d) = %d, %v; want %d", v, f, err, want)
		}
	}
	raise(2, 2)
	for _, tc := range []struct {
		version int
		ok      bool
	}{{2, true}, {3, true}, {MaxSecurityVersion, true}, {1, false}} {
		if err := unseal(tc.version); tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrBelowFloor)) {
			t.Errorf("floor 2, version %d: %v", tc.version, err)
		}
	}
	raise(3, 3)
	raise(1, 3) // never lowers
	if err := unseal(2); !errors.Is(err, ErrBelowFloor) {
		t.Errorf("floor 3, version 2: %v, want ErrBelowFloor", err)
	}
	if err := unseal(3); err != nil {
		t.Errorf("floor 3, version 3: %v", err)
	}
	// An unversioned entry has no floor check: the limit docs/updates.md
	// states (sign every image with a version once one has one).
	if err := unseal(0); err != nil {
		t.Errorf("unversioned signature: %v", err)
	}
	sw.Reboot() // the floor is in NV: it survives
	tp = sw.Open()
	if f, err := ReadSecurityFloor(tp); err != nil || f != 3 {
		t.Fatalf("floor after reboot = %d, %v; want 3", f, err)
	}
}

// TestSignedSecurityVersionRefuses: the version comes only from an entry
// whose signature verifies for the current PCR values.
func TestSignedSecurityVersionRefuses(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	key, other := sigTestKeys(t)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	cur, err := ReadPCRs(tp, SHA256, []int{11})
	if err != nil {
		t.Fatal(err)
	}
	good, _ := SignPCRValues(key, SHA256, 11, [][]byte{cur[11]}, 5)
	var m map[string][]PCRSignature
	json.Unmarshal(good, &m)
	forged, _ := SignPCRValues(other, SHA256, 11, [][]byte{cur[11]}, 5)
	var fm map[string][]PCRSignature
	json.Unmarshal(forged, &fm)
	e := m["sha256"][0]
	e.Sig = fm["sha256"][0].Sig // right key fingerprint, another key's signature
	badSig, _ := json.Marshal(map[string][]PCRSignature{"sha256": {e}})
	e.Sig = base64.StdEncoding.EncodeToString([]byte("short"))
	shortSig, _ := json.Marshal(map[string][]PCRSignature{"sha256": {e}})
	otherPCR, _ := SignPCRValues(key, SHA256, 11, [][]byte{bytes.Repeat([]byte{1}, 32)}, 5)
	for name, doc := range map[string][]byte{
		"another key's signature": badSig, "short signature": shortSig,
		"other pcr values": otherPCR, "forged key": forged, "not json": []byte("{"),
	} {
		if v, err := SignedSecurityVersion(tp, doc, pemKey, SHA256, []int{11}); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: version %d, %v; want ErrBadSignature", name, v, err)
		}
	}
	if v, err := SignedSecurityVersion(tp, good, pemKey, SHA256, []int{11}); err != nil || v != 5 {
		t.Errorf("good document: %d, %v", v, err)
	}
}
