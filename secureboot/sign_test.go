package secureboot

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/foxboron/go-uefi/authenticode"
	"github.com/google/go-cmp/cmp"
)

// osslDigests returns the "Current message digest" and "Calculated message
// digest" lines of osslsigncode verify output, lowercased.
func osslDigests(t *testing.T, out string) (current, calculated string) {
	t.Helper()
	cur := regexp.MustCompile(`Current message digest\s*:\s*([0-9A-F]+)`).FindStringSubmatch(out)
	calc := regexp.MustCompile(`Calculated message digest\s*:\s*([0-9A-F]+)`).FindStringSubmatch(out)
	if cur == nil || calc == nil {
		t.Fatalf("no message digests in osslsigncode output:\n%s", out)
	}
	return strings.ToLower(cur[1]), strings.ToLower(calc[1])
}

func TestSignPEVerifiesWithOracles(t *testing.T) {
	ossl := needTool(t, "osslsigncode", "osslsigncode")
	sbverify := needTool(t, "sbverify", "sbsigntool")
	ks := testKeys(t)
	dir := t.TempDir()
	if err := ks.WriteDir(dir, testTime); err != nil {
		t.Fatal(err)
	}
	img := testPE(t)
	signed, err := ks.DB.SignPE(img)
	if err != nil {
		t.Fatal(err)
	}
	signedPath := writeTemp(t, "signed.efi", signed)

	// The signed file starts with the zero-padded unsigned image except for
	// the CheckSum and certificate table directory entry.
	padded := padPE(img)
	if len(padded)%8 != 0 || len(signed)%8 != 0 {
		t.Fatalf("padded %d / signed %d bytes: not multiples of 8", len(padded), len(signed))
	}

	digest := func(b []byte) string {
		t.Helper()
		d, err := AuthenticodeDigest(b)
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(d)
	}
	want := digest(padded)

	out, ok := runTool(t, ossl, "verify", "-in", signedPath, "-CAfile", filepath.Join(dir, "db.crt"))
	if !ok {
		t.Fatalf("osslsigncode verify failed:\n%s", out)
	}
	cur, calc := osslDigests(t, out)
	if strings.Contains(out, "invalid PE checksum") {
		t.Errorf("osslsigncode reports an invalid PE checksum:\n%s", out)
	}

	// An independent signer: osslsigncode signs the padded unsigned image
	// with the same key and reports its own digest.
	osslSigned := filepath.Join(t.TempDir(), "ossl.efi")
	if out, ok := runTool(t, ossl, "sign", "-certs", filepath.Join(dir, "db.crt"), "-key", filepath.Join(dir, "db.key"),
		"-h", "sha256", "-in", writeTemp(t, "padded.efi", padded), "-out", osslSigned); !ok {
		t.Fatalf("osslsigncode sign failed:\n%s", out)
	}
	out2, ok := runTool(t, ossl, "verify", "-in", osslSigned, "-CAfile", filepath.Join(dir, "db.crt"))
	if !ok {
		t.Fatalf("osslsigncode verify of its own signature failed:\n%s", out2)
	}
	osslCur, _ := osslDigests(t, out2)

	got := map[string]string{
		"AuthenticodeDigest(unpadded)":        digest(img),
		"AuthenticodeDigest(signed)":          digest(signed),
		"osslsigncode current (ours)":         cur,
		"osslsigncode calculated (ours)":      calc,
		"osslsigncode current (osslsigncode)": osslCur,
	}
	wantAll := map[string]string{}
	for k := range got {
		wantAll[k] = want
	}
	if diff := cmp.Diff(wantAll, got); diff != "" {
		t.Errorf("digests differ from AuthenticodeDigest(padded unsigned) (-want +got):\n%s", diff)
	}

	if out, ok := runTool(t, sbverify, "--cert", filepath.Join(dir, "db.crt"), signedPath); !ok {
		t.Errorf("sbverify --cert db.crt failed:\n%s", out)
	}
	if out, ok := runTool(t, sbverify, "--cert", filepath.Join(dir, "KEK.crt"), signedPath); ok {
		t.Errorf("sbverify --cert KEK.crt accepted a db-signed image:\n%s", out)
	}

	// The SpcIndirectDataContent carries the same digest. (go-uefi's
	// Verify cannot check it: it dereferences the authenticated attributes
	// this signature leaves out, which sbsign also leaves out.)
	p, err := authenticode.Parse(bytes.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := p.Signatures()
	if err != nil || len(sigs) != 1 {
		t.Fatalf("signatures: %d, %v", len(sigs), err)
	}
	ac, err := authenticode.ParseAuthenticode(sigs[0].Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, hex.EncodeToString(ac.Digest)); diff != "" {
		t.Errorf("SpcIndirectDataContent digest (-want +got):\n%s", diff)
	}
}

func TestSignPEDeterministic(t *testing.T) {
	ks := testKeys(t)
	img := testPE(t)
	a, err := ks.DB.SignPE(img)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ks.DB.SignPE(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two signatures of the same image with the same key differ")
	}
	// An image already a multiple of 8 bytes is signed without a padded
	// copy; the caller's bytes must stay as they were.
	aligned := padPE(img)
	before := bytes.Clone(aligned)
	if _, err := ks.DB.SignPE(aligned); err != nil || !bytes.Equal(aligned, before) {
		t.Errorf("SignPE changed its input (err %v)", err)
	}
	if _, err := ks.DB.SignPE(a); err == nil || !strings.Contains(err.Error(), "already has an attribute certificate table") {
		t.Errorf("re-signing a signed image: err = %v, want refusal", err)
	}
}

func TestSignPETamperedFails(t *testing.T) {
	ossl := needTool(t, "osslsigncode", "osslsigncode")
	sbverify := needTool(t, "sbverify", "sbsigntool")
	ks := testKeys(t)
	dir := t.TempDir()
	if err := ks.WriteDir(dir, testTime); err != nil {
		t.Fatal(err)
	}
	img := testPE(t)
	signed, err := ks.DB.SignPE(img)
	if err != nil {
		t.Fatal(err)
	}
	p, err := authenticode.Parse(bytes.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := p.Signatures()
	if err != nil || len(sigs) != 1 {
		t.Fatalf("signatures: %d, %v", len(sigs), err)
	}
	sig := sigs[0].Certificate
	// The RSA signature is the last 256 bytes of the SignedData.
	sigOff := bytes.Index(signed, sig) + len(sig) - 10
	for _, tc := range []struct {
		name string
		off  int
	}{
		{"section data", len(img) / 2},
		{"first section header", 0x190},
		{"trailing data", len(img) - 1},
		{"rsa signature", sigOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(signed)
			b[tc.off] ^= 0x01
			path := writeTemp(t, "tampered.efi", b)
			if out, ok := runTool(t, ossl, "verify", "-in", path, "-CAfile", filepath.Join(dir, "db.crt")); ok {
				t.Errorf("osslsigncode verified a file with byte %d flipped:\n%s", tc.off, out)
			}
			if out, ok := runTool(t, sbverify, "--cert", filepath.Join(dir, "db.crt"), path); ok {
				t.Errorf("sbverify verified a file with byte %d flipped:\n%s", tc.off, out)
			}
		})
	}
}

func TestSignPERefusesNonPE(t *testing.T) {
	ks := testKeys(t)
	elf, err := os.ReadFile("/bin/true")
	if err != nil {
		elf = []byte("\x7fELF\x02\x01\x01")
	}
	mzOnly := make([]byte, 0x80)
	copy(mzOnly, "MZ")
	mzOnly[0x3c] = 0x40 // PE header offset pointing at zeros
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"text", []byte("this is not an EFI application\n")},
		{"elf", elf},
		{"mz without pe header", mzOnly},
		{"truncated pe", testPE(t)[:0x200]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ks.DB.SignPE(tc.in); err == nil || !strings.Contains(err.Error(), "PE/COFF image") {
				t.Errorf("SignPE err = %v, want a not-a-PE error", err)
			}
			if _, err := AuthenticodeDigest(tc.in); err == nil {
				t.Error("AuthenticodeDigest accepted a non-PE")
			}
		})
	}
}

// writePEM writes a PEM block to dir/name and returns the path.
func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func selfSigned(t *testing.T, key any, pub any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"}, NotBefore: testTime, NotAfter: testTime.AddDate(1, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestLoadSigner(t *testing.T) {
	ks := testKeys(t)
	dir := t.TempDir()
	rsaKey := ks.DB.Key().(*rsa.PrivateKey)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	dbCrt := writePEM(t, dir, "db.crt", "CERTIFICATE", ks.DB.Certificate().Raw)
	kekCrt := writePEM(t, dir, "KEK.crt", "CERTIFICATE", ks.KEK.Certificate().Raw)
	ecCrt := writePEM(t, dir, "ec.crt", "CERTIFICATE", selfSigned(t, ecKey, &ecKey.PublicKey))
	pkcs1Key := writePEM(t, dir, "pkcs1.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))
	pkcs8Key := writePEM(t, dir, "db.key", "PRIVATE KEY", pkcs8)
	ecKeyPath := writePEM(t, dir, "ec.key", "EC PRIVATE KEY", ecDER)
	certAsKey := writePEM(t, dir, "cert-as.key", "CERTIFICATE", ks.DB.Certificate().Raw)
	garbage := writeTemp(t, "garbage.key", []byte("not pem"))

	for _, tc := range []struct {
		name, key, cert string
		wantErr         string // "" for success
	}{
		{"pkcs8 rsa", pkcs8Key, dbCrt, ""},
		{"pkcs1 rsa", pkcs1Key, dbCrt, ""},
		{"sec1 ec", ecKeyPath, ecCrt, ""},
		{"wrong cert", pkcs8Key, kekCrt, "load signer: " + kekCrt + " does not match " + pkcs8Key},
		{"ec key rsa cert", ecKeyPath, dbCrt, "load signer: " + dbCrt + " does not match " + ecKeyPath},
		{"cert as key", certAsKey, dbCrt, `load signer: ` + certAsKey + `: PEM block "CERTIFICATE" is not a private key`},
		{"key as cert", pkcs8Key, pkcs1Key, `load signer: ` + pkcs1Key + `: PEM block "RSA PRIVATE KEY" is not a certificate`},
		{"not pem", garbage, dbCrt, "load signer: " + garbage + ": no PEM block"},
		{"missing", filepath.Join(dir, "nope.key"), dbCrt, "load signer: open " + filepath.Join(dir, "nope.key") + ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadSigner(tc.key, tc.cert)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff(tc.wantErr, gotErr); diff != "" {
				t.Fatalf("LoadSigner error (-want +got):\n%s", diff)
			}
			if err == nil && s.Certificate() == nil {
				t.Error("signer without certificate")
			}
		})
	}

	// An EC signer loads but cannot sign: go-uefi writes RSA SignedData only.
	ec, err := LoadSigner(ecKeyPath, ecCrt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.SignPE(testPE(t)); err == nil || !strings.Contains(err.Error(), "needs an RSA key") {
		t.Errorf("SignPE with an EC key: err = %v, want an RSA-only refusal", err)
	}
}
