package tpm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// rsaSRK makes tp's SRK an RSA one of systemd's template (as systemd's
// tpm2_get_or_create_srk does on a TPM without ECC) and reads it back.
func rsaSRK(t *testing.T, tp transport.TPM) *SRK {
	t.Helper()
	if err := persistSRK(tp, RSASRKTemplate()); err != nil {
		t.Fatal(err)
	}
	srk, created, err := GetOrCreateSRK(tp)
	if err != nil || created {
		t.Fatalf("GetOrCreateSRK over an rsa srk: created=%t, %v", created, err)
	}
	if srk.Public.Type != tpm2.TPMAlgRSA {
		t.Fatalf("srk type 0x%x, want rsa", srk.Public.Type)
	}
	return srk
}

// rsaEncodings are the three forms an RSA SRK's public key comes in.
func rsaEncodings(t *testing.T, srk *SRK) map[string][]byte {
	t.Helper()
	tpm2b := MarshalSRKPublic(&srk.Public)
	p, err := SRKPublicPEM(&srk.Public)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"tpm2b": tpm2b, "tpmt": tpm2b[2:], "pem": p}
}

func TestRSASRKOnSWTPM(t *testing.T) {
	srk := rsaSRK(t, tpmtest.Start(t).Open())
	p, err := srk.Public.Parameters.RSADetail()
	if err != nil {
		t.Fatal(err)
	}
	n, err := srk.Public.Unique.RSA()
	if err != nil {
		t.Fatal(err)
	}
	got := []any{p.KeyBits, p.Exponent, len(n.Buffer)}
	if diff := cmp.Diff([]any{tpm2.TPMKeyBits(2048), uint32(0), 256}, got); diff != "" {
		t.Fatalf("rsa srk (keyBits, exponent, modulus bytes) (-want +got):\n%s", diff)
	}
	for name, b := range rsaEncodings(t, srk) {
		pub, err := ParseSRKPublic(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(MarshalSRKPublic(&srk.Public), MarshalSRKPublic(pub)); diff != "" {
			t.Errorf("%s parses to another public area (-srk +parsed):\n%s", name, diff)
		}
		nm, err := tpm2.ObjectName(pub)
		if err != nil || !bytes.Equal(nm.Buffer, srk.Name.Buffer) {
			t.Errorf("%s: name %x, %v; want the srk's %x", name, nm, err, srk.Name.Buffer)
		}
	}
}

// TestSealOfflineRSASRK seals offline to a swtpm's RSA SRK, given in each
// encoding, and unseals there; another swtpm's RSA SRK and a changed PCR
// are refused.
func TestSealOfflineRSASRK(t *testing.T) {
	sn := &sniffer{t: tpmtest.Start(t).Open()}
	srk := rsaSRK(t, sn)
	extend(t, sn, 7, "secure boot state")
	vals := readPCRs(t, sn, 7, 15)
	secret := []byte("0123456789abcdef0123456789ABCDEF")
	o := SealOptions{PCRs: []int{7, 15}, PCRValues: vals}
	var s *Sealed
	for name, b := range rsaEncodings(t, srk) {
		pub, err := ParseSRKPublic(b)
		if err != nil {
			t.Fatal(err)
		}
		if s, err = SealOffline(pub, secret, o); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(s.SRK, srk.Serialize()) {
			t.Fatalf("%s: tpm2_srk differs from the rsa srk's serialization", name)
		}
		if n := len(s.Seed); n != 2+256 {
			t.Fatalf("%s: encrypted seed of %d bytes, want a TPM2B of the 256-byte modulus", name, n)
		}
		sn.traffic = nil
		got, err := Unseal(sn, s, UnsealOptions{})
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("%s: Unseal = %q, %v", name, got, err)
		}
		for i, m := range sn.traffic {
			if bytes.Contains(m, secret) {
				t.Fatalf("%s: message %d on the bus carries the secret in clear", name, i)
			}
		}
	}
	t.Run("online seal under the rsa srk", func(t *testing.T) {
		on, err := Seal(sn, []byte("online"), o)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(on.SRK, srk.Serialize()) {
			t.Fatal("an online seal names another parent than the rsa srk")
		}
		if got, err := Unseal(sn, on, UnsealOptions{}); err != nil || string(got) != "online" {
			t.Fatalf("Unseal = %q, %v", got, err)
		}
	})
	t.Run("token round trip", func(t *testing.T) {
		j, err := NewToken(s, 2).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		tk, err := ParseToken(j)
		if err != nil {
			t.Fatal(err)
		}
		back, err := tk.Sealed()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Unseal(sn, back, UnsealOptions{}); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Unseal from the token = %q, %v", got, err)
		}
	})
	t.Run("another tpm's rsa srk", func(t *testing.T) {
		b := tpmtest.Start(t).Open()
		other := rsaSRK(t, b)
		if bytes.Equal(other.Name.Buffer, srk.Name.Buffer) {
			t.Fatal("two swtpms made the same rsa srk")
		}
		checkOtherTPMRefuses(t, b, s)
	})
	t.Run("pcr 7 changed", func(t *testing.T) { checkPCR7ChangeRefused(t, sn, s) })
}

// TestSealOfflineRSA3072SRK: an RSA-3072 SRK (which systemd does not
// create but seals to, tpm2_calculate_seal) works as the 2048-bit one.
func TestSealOfflineRSA3072SRK(t *testing.T) {
	tp := tpmtest.Start(t).Open()
	if err := persistSRK(tp, rsaStorageTemplate(srkAttributes, 3072, 0)); err != nil {
		t.Fatal(err)
	}
	srk, err := ReadSRK(tp)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range rsaEncodings(t, srk) {
		pub, err := ParseSRKPublic(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s, err := SealOffline(pub, []byte("3072"), SealOptions{PCRs: []int{7}, PCRValues: readPCRs(t, tp, 7)})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := Unseal(tp, s, UnsealOptions{}); err != nil || string(got) != "3072" {
			t.Fatalf("%s: Unseal = %q, %v", name, got, err)
		}
	}
}

// TestUnsealDamagedRSAOfflineSeal damages each part of a seal to an RSA
// SRK: a clear error every time, never the secret.
func TestUnsealDamagedRSAOfflineSeal(t *testing.T) {
	tp := tpmtest.Start(t).Open()
	srk := rsaSRK(t, tp)
	secret := []byte("do not leak")
	s, err := SealOffline(&srk.Public, secret, SealOptions{PCRs: []int{7}, PCRValues: readPCRs(t, tp, 7)})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x40
		return b
	}
	tests := map[string]func(s *Sealed){
		"seed first byte":         func(s *Sealed) { s.Seed = flip(s.Seed, 2) },
		"seed middle":             func(s *Sealed) { s.Seed = flip(s.Seed, 130) },
		"seed last byte":          func(s *Sealed) { s.Seed = flip(s.Seed, len(s.Seed)-1) },
		"seed size":               func(s *Sealed) { s.Seed = flip(s.Seed, 1) },
		"seed truncated":          func(s *Sealed) { s.Seed = s.Seed[:len(s.Seed)-1] },
		"seed one byte short":     func(s *Sealed) { s.Seed = append([]byte{0x00, 0xff}, s.Seed[3:]...) },
		"seed of another seal":    func(s *Sealed) { s.Seed = otherSeed(t, &srk.Public) },
		"seed zero":               func(s *Sealed) { s.Seed = append([]byte{1, 0}, make([]byte, 256)...) },
		"integrity hmac":          func(s *Sealed) { s.Private = flip(s.Private, 5) },
		"encrypted sensitive":     func(s *Sealed) { s.Private = flip(s.Private, len(s.Private)-1) },
		"public area auth policy": func(s *Sealed) { s.Public = flip(s.Public, len(s.Public)-40) },
		"bytes after the seed":    func(s *Sealed) { s.Seed = append(bytes.Clone(s.Seed), 0) },
	}
	for name, change := range tests {
		t.Run(name, func(t *testing.T) {
			d := *s
			change(&d)
			got, err := Unseal(tp, &d, UnsealOptions{})
			if !errors.Is(err, ErrBadBlob) {
				t.Fatalf("Unseal of a damaged seal = %q, %v; want ErrBadBlob", got, err)
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

// rsaPublic is an RSA storage parent of the SRK template with k's modulus,
// changed by f.
func rsaPublic(k *rsa.PublicKey, f func(p *tpm2.TPMTPublic, parms *tpm2.TPMSRSAParms)) []byte {
	p := rsaStorageTemplate(srkAttributes, tpm2.TPMKeyBits(k.N.BitLen()), 0)
	parms, _ := p.Parameters.RSADetail()
	p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()})
	if f != nil {
		f(&p, parms)
	}
	p.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, parms)
	return MarshalSRKPublic(&p)
}

// sentinel names which of the package's errors err is.
func sentinel(err error) string {
	for _, s := range []struct {
		name string
		err  error
	}{{"ErrNotStorageKey", ErrNotStorageKey}, {"ErrBadPublicKey", ErrBadPublicKey}, {"ErrSRKMismatch", ErrSRKMismatch}, {"ErrUnsupported", ErrUnsupported}} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func genRSA(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseSRKPublicRSA(t *testing.T) {
	k2048, k1024, k3072 := genRSA(t, 2048), genRSA(t, 1024), genRSA(t, 3072)
	pub := &k2048.PublicKey
	aesDef := func(bits tpm2.TPMKeyBits, mode tpm2.TPMAlgID) tpm2.TPMTSymDefObject {
		return tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgAES, KeyBits: tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, bits),
			Mode: tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, mode)}
	}
	modulus := func(b []byte) func(p *tpm2.TPMTPublic, _ *tpm2.TPMSRSAParms) {
		return func(p *tpm2.TPMTPublic, _ *tpm2.TPMSRSAParms) {
			p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: b})
		}
	}
	even := new(big.Int).SetBit(k2048.N, 0, 0).Bytes()
	tests := map[string]struct {
		in   []byte
		want string // the sentinel, "" for accepted
	}{
		"template":                 {in: rsaPublic(pub, nil)},
		"exponent 65537 spelled":   {in: rsaPublic(pub, func(_ *tpm2.TPMTPublic, r *tpm2.TPMSRSAParms) { r.Exponent = 65537 })},
		"rsa 3072":                 {in: rsaPublic(&k3072.PublicKey, nil)},
		"pem rsa 3072":             {in: pemOf(t, &k3072.PublicKey)},
		"pem rsa 2048":             {in: pemOf(t, pub)},
		"rsa 1024":                 {in: rsaPublic(&k1024.PublicKey, nil), want: "ErrUnsupported"},
		"pem rsa 1024":             {in: pemOf(t, &k1024.PublicKey), want: "ErrUnsupported"},
		"pem exponent 3":           {in: pemOf(t, &rsa.PublicKey{N: k2048.N, E: 3}), want: "ErrUnsupported"},
		"exponent 3":               {in: rsaPublic(pub, func(_ *tpm2.TPMTPublic, r *tpm2.TPMSRSAParms) { r.Exponent = 3 }), want: "ErrUnsupported"},
		"keyBits 2048, 3072 bytes": {in: rsaPublic(pub, modulus(k3072.N.Bytes())), want: "ErrBadPublicKey"},
		"modulus one byte short":   {in: rsaPublic(pub, modulus(k2048.N.Bytes()[1:])), want: "ErrBadPublicKey"},
		"modulus with a zero top":  {in: rsaPublic(pub, modulus(append([]byte{0}, k2048.N.Bytes()[1:]...))), want: "ErrBadPublicKey"},
		"even modulus":             {in: rsaPublic(pub, modulus(even)), want: "ErrBadPublicKey"},
		"empty unique (template)":  {in: rsaPublic(pub, modulus(nil)), want: "ErrBadPublicKey"},
		"signing key": {in: rsaPublic(pub, func(p *tpm2.TPMTPublic, r *tpm2.TPMSRSAParms) {
			p.ObjectAttributes.Decrypt, p.ObjectAttributes.SignEncrypt = false, true
			r.Symmetric = tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull}
		}), want: "ErrNotStorageKey"},
		"not restricted": {in: rsaPublic(pub, func(p *tpm2.TPMTPublic, _ *tpm2.TPMSRSAParms) {
			p.ObjectAttributes.Restricted = false
		}), want: "ErrNotStorageKey"},
		"sign and decrypt": {in: rsaPublic(pub, func(p *tpm2.TPMTPublic, _ *tpm2.TPMSRSAParms) {
			p.ObjectAttributes.SignEncrypt = true
		}), want: "ErrNotStorageKey"},
		"no symmetric": {in: rsaPublic(pub, func(_ *tpm2.TPMTPublic, r *tpm2.TPMSRSAParms) {
			r.Symmetric = tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull}
		}), want: "ErrNotStorageKey"},
		"aes-256-cfb": {in: rsaPublic(pub, func(_ *tpm2.TPMTPublic, r *tpm2.TPMSRSAParms) { r.Symmetric = aesDef(256, tpm2.TPMAlgCFB) }), want: "ErrNotStorageKey"},
		"aes-128-cbc": {in: rsaPublic(pub, func(_ *tpm2.TPMTPublic, r *tpm2.TPMSRSAParms) { r.Symmetric = aesDef(128, tpm2.TPMAlgCBC) }), want: "ErrNotStorageKey"},
		"sha384 names": {in: rsaPublic(pub, func(p *tpm2.TPMTPublic, _ *tpm2.TPMSRSAParms) {
			p.NameAlg = tpm2.TPMAlgSHA384
		}), want: "ErrUnsupported"},
		"oaep scheme": {in: rsaPublic(pub, func(_ *tpm2.TPMTPublic, r *tpm2.TPMSRSAParms) {
			r.Scheme = tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgOAEP, Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgOAEP, &tpm2.TPMSEncSchemeOAEP{HashAlg: tpm2.TPMAlgSHA256})}
		}), want: "ErrSRKMismatch"},
		"without noDA (not the srk template)": {in: rsaPublic(pub, func(p *tpm2.TPMTPublic, _ *tpm2.TPMSRSAParms) {
			p.ObjectAttributes.NoDA = false
		}), want: "ErrSRKMismatch"},
		"with a policy": {in: rsaPublic(pub, func(p *tpm2.TPMTPublic, _ *tpm2.TPMSRSAParms) {
			p.AuthPolicy = tpm2.TPM2BDigest{Buffer: make([]byte, 32)}
		}), want: "ErrSRKMismatch"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseSRKPublic(tc.in)
			if diff := cmp.Diff(tc.want, sentinel(err)); diff != "" {
				t.Fatalf("ParseSRKPublic error (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			if got.Type != tpm2.TPMAlgRSA || checkSRKPublic(got) != nil {
				t.Fatalf("accepted a public area SealOffline refuses: %v", checkSRKPublic(got))
			}
			if _, err := SealOffline(got, []byte("s"), SealOptions{}); err != nil {
				t.Fatalf("SealOffline to an accepted rsa parent: %v", err)
			}
		})
	}
}

// TestSRKPublicPEMRSAExponentSpelledOut: an RSA SRK whose public area says
// 65537 is not the template's key (exponent 0), so its PEM, which
// ParseSRKPublic turns into the template, would seal to another Name.
func TestSRKPublicPEMRSAExponentSpelledOut(t *testing.T) {
	k := genRSA(t, 2048)
	pub, err := ParseSRKPublic(rsaPublic(&k.PublicKey, func(_ *tpm2.TPMTPublic, r *tpm2.TPMSRSAParms) { r.Exponent = 65537 }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SRKPublicPEM(pub); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("SRKPublicPEM of an rsa srk with exponent 65537 spelled out: %v, want ErrUnsupported", err)
	}
	tmpl, err := ParseSRKPublic(rsaPublic(&k.PublicKey, nil))
	if err != nil {
		t.Fatal(err)
	}
	p, err := SRKPublicPEM(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSRKPublic(p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(MarshalSRKPublic(tmpl), MarshalSRKPublic(back)); diff != "" {
		t.Fatalf("pem round trip of the rsa template (-want +got):\n%s", diff)
	}
}

// kdfa is KDFa of Part 1, section 11.4.10.2 (SP 800-108 counter mode with
// HMAC-SHA256), written out here rather than taken from go-tpm, so that
// the test checks the wrapper against the spec and not against itself.
func kdfa(key []byte, label string, contextU, contextV []byte, bits int) []byte {
	var out []byte
	for i := uint32(1); len(out)*8 < bits; i++ {
		m := hmac.New(sha256.New, key)
		m.Write(binary.BigEndian.AppendUint32(nil, i))
		m.Write(append([]byte(label), 0))
		m.Write(contextU)
		m.Write(contextV)
		m.Write(binary.BigEndian.AppendUint32(nil, uint32(bits)))
		out = m.Sum(out)
	}
	return out[:bits/8]
}

// TestRSASeedFollowsSpec opens an offline seal to an RSA key of its own
// with the private key, by the spec: the seed is RSA-OAEP (SHA-256, label
// "DUPLICATE" with its terminating zero) of 32 random bytes (Part 1,
// B.10.3); KDFa(seed, "INTEGRITY") keys the HMAC over dupSensitive ‖ Name
// and KDFa(seed, "STORAGE", Name) the AES-128-CFB (zero IV) that hides the
// TPM2B_SENSITIVE (Part 1, "Outer Duplication Wrapper"); inside is the
// secret, and the public area's unique is SHA-256(seedValue ‖ secret).
//
// It runs for each accepted size; 4096 bits only here, as swtpm 0.7.1
// (libtpms 0.9) makes no RSA-4096 keys.
func TestRSASeedFollowsSpec(t *testing.T) {
	for _, bits := range srkRSAKeyBits {
		t.Run(fmt.Sprint(bits), func(t *testing.T) { checkRSASeed(t, genRSA(t, int(bits))) })
	}
}

func checkRSASeed(t *testing.T, k *rsa.PrivateKey) {
	srk, err := ParseSRKPublic(rsaPublic(&k.PublicKey, nil))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("sealed to a key of the test's own")
	s, err := SealOffline(srk, secret, SealOptions{})
	if err != nil {
		t.Fatal(err)
	}
	enc := s.Seed[2:]
	if _, err := rsa.DecryptOAEP(sha256.New(), nil, k, enc, []byte("DUPLICATE")); err == nil {
		t.Fatal("the seed decrypts with the label lacking its terminating zero")
	}
	seed, err := rsa.DecryptOAEP(sha256.New(), nil, k, enc, []byte("DUPLICATE\x00"))
	if err != nil {
		t.Fatalf("rsa-oaep(sha256, \"DUPLICATE\\x00\") decryption of the seed: %v", err)
	}
	if len(seed) != sha256.Size {
		t.Fatalf("seed of %d bytes, want the name algorithm's %d", len(seed), sha256.Size)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](s.Public[2:])
	if err != nil {
		t.Fatal(err)
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		t.Fatal(err)
	}
	dup := s.Private[2:]
	hlen := int(binary.BigEndian.Uint16(dup))
	outer, dupSensitive := dup[2:2+hlen], dup[2+hlen:]
	m := hmac.New(sha256.New, kdfa(seed, "INTEGRITY", nil, nil, 256))
	m.Write(dupSensitive)
	m.Write(name.Buffer)
	if !hmac.Equal(m.Sum(nil), outer) {
		t.Fatal("outer hmac is not HMAC(KDFa(seed, INTEGRITY), dupSensitive ‖ name)")
	}
	block, err := aes.NewCipher(kdfa(seed, "STORAGE", name.Buffer, nil, 128))
	if err != nil {
		t.Fatal(err)
	}
	plain := make([]byte, len(dupSensitive))
	//lint:ignore SA1019 the TPM's outer wrapper is AES-CFB (Part 1, "Outer Duplication Wrapper")
	cipher.NewCFBDecrypter(block, make([]byte, aes.BlockSize)).XORKeyStream(plain, dupSensitive)
	if n := int(binary.BigEndian.Uint16(plain)); n != len(plain)-2 {
		t.Fatalf("TPM2B_SENSITIVE size %d, want %d", n, len(plain)-2)
	}
	sens, err := tpm2.Unmarshal[tpm2.TPMTSensitive](plain[2:])
	if err != nil {
		t.Fatal(err)
	}
	bits, err := sens.Sensitive.Bits()
	if err != nil {
		t.Fatal(err)
	}
	unique, err := pub.Unique.KeyedHash()
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(append(bytes.Clone(sens.SeedValue.Buffer), secret...))
	got := []any{sens.SensitiveType, bits.Buffer, unique.Buffer}
	if diff := cmp.Diff([]any{tpm2.TPMAlgKeyedHash, secret, want[:]}, got); diff != "" {
		t.Fatalf("sensitive (type, secret) and unique (-want +got):\n%s", diff)
	}
}

// eccRefused answers TPM2_TestParms of ECC parameters with TPM_RC_CURVE
// (parameter 1), as a TPM without ECC P-256 does, and passes all else to
// the swtpm.
type eccRefused struct{ t transport.TPM }

func (e eccRefused) Send(in []byte) ([]byte, error) {
	if len(in) >= 12 && tpm2.TPMCC(binary.BigEndian.Uint32(in[6:])) == tpm2.TPMCCTestParms &&
		tpm2.TPMAlgID(binary.BigEndian.Uint16(in[10:])) == tpm2.TPMAlgECC {
		rsp := binary.BigEndian.AppendUint16(nil, uint16(tpm2.TPMSTNoSessions))
		rsp = binary.BigEndian.AppendUint32(rsp, 10)
		return binary.BigEndian.AppendUint32(rsp, uint32(tpm2.TPMRCCurve)|0x140), nil
	}
	return e.t.Send(in)
}

// TestGetOrCreateSRKFallsBackToRSA: ECC P-256 first, RSA-2048 on a TPM
// that refuses it, as systemd's tpm2_get_best_srk_template.
func TestGetOrCreateSRKFallsBackToRSA(t *testing.T) {
	sw := tpmtest.Start(t)
	srk, created, err := GetOrCreateSRK(eccRefused{sw.Open()})
	if err != nil || !created {
		t.Fatalf("GetOrCreateSRK on a tpm without ecc: created=%t, %v", created, err)
	}
	tmpl := RSASRKTemplate()
	same := srk.Public
	same.Unique = tmpl.Unique
	if diff := cmp.Diff(tpm2.Marshal(&tmpl), tpm2.Marshal(&same)); diff != "" {
		t.Fatalf("srk is not of the rsa template (-want +got):\n%s", diff)
	}
	ecc, created, err := GetOrCreateSRK(tpmtest.Start(t).Open())
	if err != nil || !created || ecc.Public.Type != tpm2.TPMAlgECC {
		t.Fatalf("GetOrCreateSRK on a tpm with ecc: type 0x%x, created=%t, %v; want a new ecc srk", ecc.Public.Type, created, err)
	}
}
