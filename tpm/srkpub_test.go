package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// swtpmSRK returns the SRK of a fresh swtpm, created as systemd does.
func swtpmSRK(t *testing.T) *SRK {
	t.Helper()
	srk, _, err := GetOrCreateSRK(tpmtest.Start(t).Open())
	if err != nil {
		t.Fatal(err)
	}
	return srk
}

func pemOf(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func eccParms(t *testing.T, p tpm2.TPMTPublic) *tpm2.TPMSECCParms {
	t.Helper()
	e, err := p.Parameters.ECCDetail()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// withSRK returns a copy of the SRK's public area changed by f (a deep
// copy: the unions point to shared contents).
func withSRK(srk *SRK, f func(p *tpm2.TPMTPublic)) []byte {
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](tpm2.Marshal(&srk.Public))
	if err != nil {
		panic(err)
	}
	f(p)
	return MarshalSRKPublic(p)
}

// errAnotherKey marks a test input that parses, to another key than the
// swtpm's SRK.
var errAnotherKey = errors.New("another key")

func TestParseSRKPublic(t *testing.T) {
	srk := swtpmSRK(t)
	tpm2b := MarshalSRKPublic(&srk.Public)
	srkPEM, err := SRKPublicPEM(&srk.Public)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigning := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgRSA, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, SignEncrypt: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgRSASSA, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA,
				&tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})},
			KeyBits: 2048,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: rsaKey.N.Bytes()}),
	}
	rsaStorage := rsaSigning
	rsaStorage.ObjectAttributes = srkAttributes
	rsaStorage.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Symmetric: eccParms(t, SRKTemplate()).Symmetric, Scheme: tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull}, KeyBits: 2048,
	})
	tests := map[string]struct {
		in   []byte
		want error
	}{
		"tpm2b from swtpm":              {in: tpm2b},
		"bare tpmt_public":              {in: tpm2b[2:]},
		"pem of the same point":         {in: srkPEM},
		"pem with blank lines round":    {in: append(append([]byte("\n\n"), srkPEM...), "\n\n"...)},
		"rsa pem (another key)":         {in: pemOf(t, &rsaKey.PublicKey), want: errAnotherKey},
		"p-384 pem":                     {in: pemOf(t, &p384.PublicKey), want: ErrUnsupported},
		"pem of another type":           {in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), want: ErrBadPublicKey},
		"pem with trailing data":        {in: append(bytes.Clone(srkPEM), "junk"...), want: ErrBadPublicKey},
		"pem of garbage":                {in: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("nope")}), want: ErrBadPublicKey},
		"rsa signing key":               {in: MarshalSRKPublic(&rsaSigning), want: ErrNotStorageKey},
		"rsa storage key (another key)": {in: MarshalSRKPublic(&rsaStorage), want: errAnotherKey},
		"sign|decrypt key": {in: withSRK(srk, func(p *tpm2.TPMTPublic) {
			p.ObjectAttributes.Restricted, p.ObjectAttributes.SignEncrypt = false, true
		}), want: ErrNotStorageKey},
		"restricted signing key": {in: withSRK(srk, func(p *tpm2.TPMTPublic) {
			p.ObjectAttributes.Decrypt, p.ObjectAttributes.SignEncrypt = false, true
		}), want: ErrNotStorageKey},
		"no symmetric": {in: withSRK(srk, func(p *tpm2.TPMTPublic) {
			e := eccParms(t, *p)
			e.Symmetric = tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull}
			p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, e)
		}), want: ErrNotStorageKey},
		"aes-256": {in: withSRK(srk, func(p *tpm2.TPMTPublic) {
			e := eccParms(t, *p)
			e.Symmetric.KeyBits = tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(256))
			p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, e)
		}), want: ErrNotStorageKey},
		"keyed-hash object": {in: withSRK(srk, func(p *tpm2.TPMTPublic) { *p = sealedTemplate(make([]byte, 32), sealedAttributes) }), want: ErrNotStorageKey},
		"storage key without noDA (not the srk template)": {in: withSRK(srk, func(p *tpm2.TPMTPublic) {
			p.ObjectAttributes.NoDA = false
		}), want: ErrSRKMismatch},
		"point off the curve": {in: withSRK(srk, func(p *tpm2.TPMTPublic) {
			pt, _ := p.Unique.ECC()
			y := bytes.Clone(pt.Y.Buffer)
			y[31] ^= 1
			p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: pt.X, Y: tpm2.TPM2BECCParameter{Buffer: y}})
		}), want: ErrBadPublicKey},
		"empty unique (a template)": {in: withSRK(srk, func(p *tpm2.TPMTPublic) { p.Unique = SRKTemplate().Unique }), want: ErrBadPublicKey},
		"truncated":                 {in: tpm2b[:len(tpm2b)-1], want: ErrBadPublicKey},
		"trailing byte":             {in: append(bytes.Clone(tpm2b), 0), want: ErrBadPublicKey},
		"garbage":                   {in: []byte("this is not a public key at all"), want: ErrBadPublicKey},
		"empty":                     {in: nil, want: ErrBadPublicKey},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseSRKPublic(tc.in)
			if tc.want == errAnotherKey {
				if err != nil || got.Type != tpm2.TPMAlgRSA {
					t.Fatalf("rsa storage parent: %v, want it accepted", err)
				}
				return
			}
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("ParseSRKPublic error = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(MarshalSRKPublic(got), tpm2b) {
				t.Fatalf("parsed public area differs from the swtpm srk's:\n got %x\nwant %x", MarshalSRKPublic(got), tpm2b)
			}
			name, err := tpm2.ObjectName(got)
			if err != nil || !bytes.Equal(name.Buffer, srk.Name.Buffer) {
				t.Fatalf("name %x, %v; want the srk's %x", name, err, srk.Name.Buffer)
			}
		})
	}
}

func FuzzParseSRKPublic(f *testing.F) {
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := ParseSRKPublic(b)
		if err != nil {
			return
		}
		m := MarshalSRKPublic(pub)
		again, err := ParseSRKPublic(m)
		if err != nil {
			t.Fatalf("re-parse of the marshalled area: %v", err)
		}
		if !bytes.Equal(MarshalSRKPublic(again), m) {
			t.Fatal("marshal not stable")
		}
		p, err := SRKPublicPEM(pub)
		if err != nil {
			// The one accepted key without a PEM: an RSA one that spells
			// out exponent 65537, which no PEM turns back into.
			if r, rerr := pub.Parameters.RSADetail(); rerr == nil && r.Exponent == rsaDefaultExponent && errors.Is(err, ErrUnsupported) {
				return
			}
			t.Fatalf("pem of an accepted key: %v", err)
		}
		fromPEM, err := ParseSRKPublic(p)
		if err != nil || !bytes.Equal(MarshalSRKPublic(fromPEM), m) {
			t.Fatalf("pem round trip: %v", err)
		}
	})
}
