package tpm

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
)

var (
	sigKeyOnce sync.Once
	sigKeys    [2]*rsa.PrivateKey
)

// sigTestKeys are two RSA keys shared by the signature tests.
func sigTestKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	sigKeyOnce.Do(func() {
		for i := range sigKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			sigKeys[i] = k
		}
	})
	return sigKeys[0], sigKeys[1]
}

// TestFindPCRSignatureRefuses: every document that does not hold a
// signature by this key for exactly these PCRs and this policy is refused
// with ErrBadSignature, naming what is missing.
func TestFindPCRSignatureRefuses(t *testing.T) {
	key, other := sigTestKeys(t)
	v := make([]byte, 32)
	good, err := SignPCRValues(key, SHA256, 11, [][]byte{v}, 0)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := PolicyDigest(SHA256, []int{11}, map[int][]byte{11: v}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FindPCRSignature(good, SHA256, []int{11}, &key.PublicKey, pol); err != nil {
		t.Fatalf("the good document: %v", err)
	}
	otherKey, _ := SignPCRValues(other, SHA256, 11, [][]byte{v}, 0)
	otherValue, _ := SignPCRValues(key, SHA256, 11, [][]byte{append(make([]byte, 31), 1)}, 0)
	var m map[string][]PCRSignature
	json.Unmarshal(good, &m)
	mutate := func(f func(e *PCRSignature)) []byte {
		e := m["sha256"][0]
		f(&e)
		b, _ := json.Marshal(map[string][]PCRSignature{"sha256": {e}})
		return b
	}
	for _, tc := range []struct {
		name string
		doc  []byte
		want string
	}{
		{"not json", []byte("{"), "signature document"},
		{"truncated", good[:len(good)/2], "signature document"},
		{"other bank", []byte(strings.Replace(string(good), `"sha256"`, `"sha1"`, 1)), "no entries for bank sha256"},
		{"other key", otherKey, "none for bank"},
		{"other value", otherValue, "none for bank"},
		{"other pcrs", mutate(func(e *PCRSignature) { e.PCRs = []int{11, 12} }), "none for bank"},
		{"bad base64", mutate(func(e *PCRSignature) { e.Sig = "***" }), "not base64"},
		{"bad pkfp hex", mutate(func(e *PCRSignature) { e.PKFP = "zz" }), "none for bank"},
		{"empty", []byte(`{}`), "no entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FindPCRSignature(tc.doc, SHA256, []int{11}, &key.PublicKey, pol)
			if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrBadSignature containing %q", err, tc.want)
			}
		})
	}
}

// FuzzFindPCRSignature: no document makes the lookup panic, and a document
// it accepts does hold an entry for PCR 11 with this key's fingerprint and
// this policy digest (it never hands out a signature it did not match).
func FuzzFindPCRSignature(f *testing.F) {
	key, _ := sigTestKeys(f)
	v := make([]byte, 32)
	good, err := SignPCRValues(key, SHA256, 11, [][]byte{v}, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"sha256":[{"pcrs":[11],"pkfp":"00","pol":"00","sig":"AA=="}]}`))
	f.Add([]byte(`{"sha256":null}`))
	pol, _ := PolicyDigest(SHA256, []int{11}, map[int][]byte{11: v}, nil, false)
	fp, _ := PublicKeyFingerprint(&key.PublicKey)
	f.Fuzz(func(t *testing.T, doc []byte) {
		if _, err := FindPCRSignature(doc, SHA256, []int{11}, &key.PublicKey, pol); err != nil {
			return
		}
		var m map[string][]PCRSignature
		if err := json.Unmarshal(doc, &m); err != nil {
			t.Fatalf("accepted a document that does not parse: %v", err)
		}
		for _, e := range m["sha256"] {
			if strings.EqualFold(e.PKFP, hex.EncodeToString(fp)) && strings.EqualFold(e.Pol, hex.EncodeToString(pol)) {
				return
			}
		}
		t.Fatalf("accepted a document without a matching entry: %s", doc)
	})
}
