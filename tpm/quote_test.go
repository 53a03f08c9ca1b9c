package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"maps"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2"

	"github.com/confidisk/confidisk/tpm/tpmtest"
)

func TestQuoteRoundTrip(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	extend(t, tp, 15, "volume key")
	ak, err := CreateAK(tp)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Flush(tp)
	nonce := []byte("0123456789abcdef")
	q, err := Quote(tp, ak, SHA256, []int{15, 7}, nonce)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := ReadPCRs(tp, SHA256, []int{7, 15})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cur, q.PCRValues); diff != "" {
		t.Fatalf("quoted pcr values (-current +quoted):\n%s", diff)
	}
	info, err := VerifyQuote(ak.PublicKey, q, nonce, q.PCRValues, SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{7, 15}, info.PCRs); diff != "" {
		t.Fatalf("verified pcrs (-want +got):\n%s", diff)
	}
	// Qualified Name of a primary: H(hierarchy handle ‖ Name) (Part 1,
	// section 16.5).
	qn := sha256.Sum256(append(binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMRHEndorsement)), ak.Name.Buffer...))
	if want := append([]byte{0, 0x0b}, qn[:]...); !bytes.Equal(info.Signer, want) {
		t.Fatalf("quote signer %x, want the ak's qualified name %x", info.Signer, want)
	}

	// The AK is a primary: the same key after a reboot, and its public
	// area passes AKPublicKey.
	sw.Reboot()
	tp = sw.Open()
	ak2, err := CreateAK(tp)
	if err != nil {
		t.Fatal(err)
	}
	defer ak2.Flush(tp)
	if !bytes.Equal(ak.Public, ak2.Public) {
		t.Fatal("the attestation key differs after a reboot")
	}
	if _, err := AKPublicKey(ak.Public); err != nil {
		t.Fatal(err)
	}
	q2, err := Quote(tp, ak2, SHA256, []int{7, 15}, nonce)
	if err != nil {
		t.Fatal(err)
	}
	info2, err := VerifyQuote(ak.PublicKey, q2, nonce, q2.PCRValues, SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if info2.ResetCount != info.ResetCount+1 {
		t.Fatalf("reset count %d after a reboot, was %d", info2.ResetCount, info.ResetCount)
	}
}

func TestQuoteVerifyFailures(t *testing.T) {
	tp := tpmtest.Start(t).Open()
	ak, err := CreateAK(tp)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Flush(tp)
	nonce := []byte("nonce-1")
	q, err := Quote(tp, ak, SHA256, []int{7, 15}, nonce)
	if err != nil {
		t.Fatal(err)
	}
	other := tpmtest.Start(t).Open()
	otherAK, err := CreateAK(other)
	if err != nil {
		t.Fatal(err)
	}
	defer otherAK.Flush(other)

	tampered := *q
	tampered.Attest = bytes.Clone(q.Attest)
	tampered.Attest[len(tampered.Attest)-1] ^= 1
	changed := maps.Clone(q.PCRValues)
	changed[15] = bytes.Repeat([]byte{1}, 32)
	only7 := map[int][]byte{7: q.PCRValues[7]}
	more := maps.Clone(q.PCRValues)
	more[11] = make([]byte, 32)
	sha1Vals := map[int][]byte{7: make([]byte, 20), 15: make([]byte, 20)}

	for _, tc := range []struct {
		name  string
		pub   any
		q     *QuoteResult
		nonce []byte
		vals  map[int][]byte
		bank  Bank
		want  error
	}{
		{"tampered attest byte", ak.PublicKey, &tampered, nonce, q.PCRValues, SHA256, ErrQuoteSignature},
		{"ak of another swtpm", otherAK.PublicKey, q, nonce, q.PCRValues, SHA256, ErrQuoteSignature},
		{"other nonce", ak.PublicKey, q, []byte("nonce-2"), q.PCRValues, SHA256, ErrQuoteNonce},
		{"no nonce", ak.PublicKey, q, nil, q.PCRValues, SHA256, ErrQuoteNonce},
		{"changed pcr value", ak.PublicKey, q, nonce, changed, SHA256, ErrQuotePCRDigest},
		{"fewer pcrs expected", ak.PublicKey, q, nonce, only7, SHA256, ErrQuoteSelection},
		{"more pcrs expected", ak.PublicKey, q, nonce, more, SHA256, ErrQuoteSelection},
		{"other bank expected", ak.PublicKey, q, nonce, sha1Vals, SHA1, ErrQuoteSelection},
		{"rsa key", &struct{}{}, q, nonce, q.PCRValues, SHA256, ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyQuote(tc.pub, tc.q, tc.nonce, tc.vals, tc.bank)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestVerifyQuoteMalformed signs non-quote data with a software key: a
// restricted AK would never sign it, but the verifier must still say what
// is wrong rather than accept or panic.
func TestVerifyQuoteMalformed(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(b []byte) *QuoteResult {
		d := sha256.Sum256(b)
		sig, err := ecdsa.SignASN1(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return &QuoteResult{Attest: b, Signature: sig}
	}
	good := tpm2.Marshal(tpm2.TPMSAttest{
		Magic: tpm2.TPMGeneratedValue,
		Type:  tpm2.TPMSTAttestQuote,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: selection(tpm2.TPMAlgSHA256, []int{7}),
			PCRDigest: tpm2.TPM2BDigest{Buffer: quotePCRDigest([]int{7}, map[int][]byte{7: make([]byte, 32)})},
		}),
	})
	if _, err := VerifyQuote(&k.PublicKey, sign(good), nil, map[int][]byte{7: make([]byte, 32)}, SHA256); err != nil {
		t.Fatalf("hand-built quote: %v", err)
	}
	badMagic := bytes.Clone(good)
	binary.BigEndian.PutUint32(badMagic, 0x12345678)
	certify := bytes.Clone(good)
	binary.BigEndian.PutUint16(certify[4:], uint16(tpm2.TPMSTAttestCertify))
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-3]},
		{"bad magic", badMagic},
		{"certify type", certify},
		{"trailing garbage", append(bytes.Clone(good), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyQuote(&k.PublicKey, sign(tc.b), nil, map[int][]byte{7: make([]byte, 32)}, SHA256)
			if !errors.Is(err, ErrMalformedAttest) {
				t.Fatalf("got %v, want ErrMalformedAttest", err)
			}
		})
	}
}

func TestQuoteBadInput(t *testing.T) {
	tp := tpmtest.Start(t).Open()
	ak, err := CreateAK(tp)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Flush(tp)
	for _, tc := range []struct {
		name  string
		pcrs  []int
		nonce []byte
	}{
		{"no pcrs", nil, nil},
		{"pcr 24", []int{24}, nil},
		{"long nonce", []int{7}, make([]byte, 65)},
	} {
		if _, err := Quote(tp, ak, SHA256, tc.pcrs, tc.nonce); err == nil {
			t.Errorf("%s: quote succeeded", tc.name)
		}
	}
	if _, err := AKPublicKey(tpm2.Marshal(SRKTemplate())); err == nil {
		t.Error("AKPublicKey accepted a storage key")
	}
}
