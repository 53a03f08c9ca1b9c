package image

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/secureboot"
)

// testSigner writes a key of the given kind ("rsa" or "ec") and a
// self-signed certificate valid from notBefore to notAfter into dir as
// NAME.key and NAME.crt, and returns their paths.
func testSigner(t *testing.T, dir, name, kind string, notBefore, notAfter time.Time) (keyPath, certPath string) {
	t.Helper()
	var (
		key any
		pub any
	)
	switch kind {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		key, pub = k, &k.PublicKey
	case "ec":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key, pub = k, &k.PublicKey
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sysext test " + name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPath, certPath = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".crt")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return keyPath, certPath
}

// validNow is a validity period around the present.
func validNow() (time.Time, time.Time) {
	return time.Now().Add(-time.Hour), time.Now().Add(24 * time.Hour)
}

// opensslVerify runs the oracle: with systemd, OpenSSL's
// `smime -verify -nointern -noverify -certfile CERT` is exactly
// validate_signature_userspace's PKCS7_verify(p7, certs, NULL, hex, NULL,
// PKCS7_NOINTERN|PKCS7_NOVERIFY); otherwise `cms -verify -CAfile CERT
// -purpose any`, a full check of the signer's chain to CERT.
func opensslVerify(t *testing.T, systemd bool, sig []byte, content, cert string) error {
	t.Helper()
	openssl := testutil.LookPath(t, "openssl", "openssl")
	dir := t.TempDir()
	sigFile, contentFile := filepath.Join(dir, "sig.p7s"), filepath.Join(dir, "roothash")
	if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(contentFile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", sigFile, "-content", contentFile, "-CAfile", cert, "-purpose", "any", "-out", os.DevNull}
	if systemd {
		args = []string{"smime", "-verify", "-binary", "-inform", "DER", "-in", sigFile, "-content", contentFile, "-certfile", cert, "-nointern", "-noverify", "-out", os.DevNull}
	}
	if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("openssl %s: %w: %s", args[0], err, out)
	}
	return nil
}

// TestSysextSigPartition: the partition is the JSON object systemd-repart
// writes, NUL-padded to 16 KiB; its fingerprint is the certificate's and
// OpenSSL, the oracle, accepts the signature of the hex root hash (both as
// a full CMS check and as systemd's userspace check does it) and refuses
// it for a different root hash or a certificate systemd was not given.
func TestSysextSigPartition(t *testing.T) {
	dir := t.TempDir()
	nb, na := validNow()
	keyPath, certPath := testSigner(t, dir, "good", "rsa", nb, na)
	_, otherCert := testSigner(t, dir, "other", "rsa", nb, na)
	s, err := LoadSysextSigner(keyPath, certPath)
	if err != nil {
		t.Fatal(err)
	}
	root := sha256.Sum256([]byte("a usr partition"))
	b, err := VeritySigPartition(s, root[:])
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != VeritySigSize || VeritySigSize%4096 != 0 {
		t.Fatalf("partition is %d bytes, want %d (a multiple of 4096)", len(b), VeritySigSize)
	}
	text := bytes.TrimRight(b, "\x00")
	if !bytes.HasPrefix(text, []byte(`{"rootHash":"`+hex.EncodeToString(root[:])+`","certificateFingerprint":"`)) || !bytes.HasSuffix(text, []byte(`"}`)) {
		t.Errorf("JSON is not repart's compact object: %.120s…", text)
	}
	v, gotRoot, err := ParseVeritySig(b)
	if err != nil {
		t.Fatal(err)
	}
	fp := sha256.Sum256(s.Certificate().Raw)
	want := VeritySig{RootHash: hex.EncodeToString(root[:]), CertificateFingerprint: hex.EncodeToString(fp[:]), Signature: v.Signature}
	if diff := cmp.Diff(want, *v); diff != "" {
		t.Errorf("signature object (-want +got):\n%s", diff)
	}
	if !bytes.Equal(gotRoot, root[:]) {
		t.Errorf("root hash %x, want %x", gotRoot, root)
	}
	again, err := VeritySigPartition(s, root[:])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, b) {
		t.Error("signing the same root hash twice gave different partitions")
	}
	hexRoot := hex.EncodeToString(root[:])
	tampered := hex.EncodeToString(append(root[:31:31], root[31]^1))
	for _, tc := range []struct {
		name    string
		systemd bool
		content string
		cert    string
		ok      bool
	}{
		{"cms, signer's certificate", false, hexRoot, certPath, true},
		{"cms, other root hash", false, tampered, certPath, false},
		{"cms, root hash with newline", false, hexRoot + "\n", certPath, false},
		{"cms, other certificate", false, hexRoot, otherCert, false},
		{"systemd verity.d, signer's certificate", true, hexRoot, certPath, true},
		{"systemd verity.d, other root hash", true, tampered, certPath, false},
		{"systemd verity.d, other certificate", true, hexRoot, otherCert, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := opensslVerify(t, tc.systemd, v.Signature, tc.content, tc.cert)
			if tc.ok && err != nil {
				t.Errorf("the signature is refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Error("openssl accepted the signature")
			}
		})
	}
}

// TestSysextSigExpiredCertificate: an expired certificate is accepted, as
// systemd accepts it (PKCS7_NOVERIFY checks no validity period).
func TestSysextSigExpiredCertificate(t *testing.T) {
	dir := t.TempDir()
	keyPath, certPath := testSigner(t, dir, "expired", "rsa", time.Now().AddDate(-2, 0, 0), time.Now().AddDate(-1, 0, 0))
	s, err := LoadSysextSigner(keyPath, certPath)
	if err != nil {
		t.Fatalf("expired certificate refused: %v", err)
	}
	root := sha256.Sum256([]byte("usr"))
	sig, err := SignRootHash(s, root[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := opensslVerify(t, true, sig, hex.EncodeToString(root[:]), certPath); err != nil {
		t.Errorf("systemd's check refuses a signature by an expired certificate: %v", err)
	}
}

// TestLoadSysextSignerRefuses: bad keys and certificates are refused with
// an error naming the problem.
func TestLoadSysextSignerRefuses(t *testing.T) {
	dir := t.TempDir()
	nb, na := validNow()
	key, cert := testSigner(t, dir, "a", "rsa", nb, na)
	_, otherCert := testSigner(t, dir, "b", "rsa", nb, na)
	ecKey, ecCert := testSigner(t, dir, "ec", "ec", nb, na)
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not a PEM file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key, cert, says string
	}{
		{"key without certificate", key, "", "the private key needs its certificate"},
		{"certificate without key", "", cert, "the certificate needs its private key"},
		{"certificate of another key", key, otherCert, otherCert + " does not match " + key},
		{"key not PEM", text, cert, text + ": no PEM block"},
		{"certificate not PEM", key, text, text + ": no PEM block"},
		{"certificate given as key", cert, cert, `PEM block "CERTIFICATE" is not a private key`},
		{"key given as certificate", key, key, `PEM block "PRIVATE KEY" is not a certificate`},
		{"ECDSA key", ecKey, ecCert, "want RSA"},
		{"missing key", filepath.Join(dir, "missing.key"), cert, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadSysextSigner(tc.key, tc.cert)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("LoadSysextSigner: %v, %v; want an error saying %q", s, err, tc.says)
			}
		})
	}
	if s, err := LoadSysextSigner("", ""); s != nil || err != nil {
		t.Errorf("no key and no certificate: %v, %v; want no signer and no error", s, err)
	}
}

// TestSysextParseSigRefuses: what systemd-dissect refuses in a signature
// partition is refused.
func TestSysextParseSigRefuses(t *testing.T) {
	pad := func(s string) []byte { return append([]byte(s), make([]byte, 64)...) }
	for _, tc := range []struct {
		name string
		b    []byte
		says string
	}{
		{"data after the padding", append(pad(`{"rootHash":"00","signature":"AA=="}`), 'x'), "data after the NUL padding"},
		{"not JSON", pad("rootHash"), "verity signature json"},
		{"root hash not hex", pad(`{"rootHash":"xy","signature":"AA=="}`), "rootHash"},
		{"no signature", pad(`{"rootHash":"00"}`), "no signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseVeritySig(tc.b); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("ParseVeritySig: %v, want an error saying %q", err, tc.says)
			}
		})
	}
}

// TestSysextSignRootHashRefuses: no signer, a short root hash and a non-RSA key
// are refused.
func TestSysextSignRootHashRefuses(t *testing.T) {
	dir := t.TempDir()
	nb, na := validNow()
	key, cert := testSigner(t, dir, "ec", "ec", nb, na)
	ec, err := secureboot.LoadSigner(key, cert)
	if err != nil {
		t.Fatal(err)
	}
	rk, rc := testSigner(t, dir, "rsa", "rsa", nb, na)
	rs, err := secureboot.LoadSigner(rk, rc)
	if err != nil {
		t.Fatal(err)
	}
	root := make([]byte, 32)
	for _, tc := range []struct {
		name string
		s    *secureboot.Signer
		root []byte
		says string
	}{
		{"no signer", nil, root, "no signer"},
		{"ECDSA key", ec, root, "needs an RSA key"},
		{"short root hash", rs, root[:16], "want a SHA-256 verity root hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SignRootHash(tc.s, tc.root); err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("SignRootHash: %v, want an error saying %q", err, tc.says)
			}
		})
	}
}

// TestSysextSigUUID: the signature partition's UUID is systemd-repart's
// HMAC-SHA256(seed, type UUID) with the version 4 and variant bits, the
// type UUID in its text byte order (sd_id128_t), and differs between seeds.
func TestSysextSigUUID(t *testing.T) {
	seed := NewSeed("sig uuid test")
	typ, err := hex.DecodeString(strings.ReplaceAll("e7bb33fb-06cf-4e81-8273-e543b413e2e2", "-", ""))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, seed[:])
	m.Write(typ)
	var want gpt.GUID
	copy(want[:], m.Sum(nil))
	want[6] = want[6]&0x0f | 0x40
	want[8] = want[8]&0x3f | 0x80
	if diff := cmp.Diff(want.String(), VeritySigUUID(seed).String()); diff != "" {
		t.Errorf("UUID (-want +got):\n%s", diff)
	}
	if VeritySigUUID(NewSeed("another")) == VeritySigUUID(seed) {
		t.Error("two seeds give the same UUID")
	}
}

// TestSysextSigMatchesRepart: systemd-repart, the oracle, builds a /usr
// verity pair with Verity=signature from the same key and certificate; its
// signature partition is byte for byte what VeritySigPartition writes for
// repart's root hash (JSON, field order, the PKCS#7 DER, the NUL padding,
// the size), its label is ours and its UUID is repartUUID of repart's seed.
func TestSysextSigMatchesRepart(t *testing.T) {
	repart := testutil.LookPath(t, "systemd-repart", "systemd")
	if os.Geteuid() != 0 {
		testutil.Missing(t, "root (systemd-repart formats the verity hash partition)", "run the tests as root")
	}
	dir := t.TempDir()
	nb, na := validNow()
	keyPath, certPath := testSigner(t, dir, "repart", "rsa", nb, na)
	data := filepath.Join(dir, "usr.img")
	if err := os.WriteFile(data, bytes.Repeat([]byte("usr data block\n"), 65536), 0o644); err != nil {
		t.Fatal(err)
	}
	defs := filepath.Join(dir, "repart.d")
	if err := os.Mkdir(defs, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, conf := range map[string]string{
		"10-usr.conf":            "[Partition]\nType=usr\nCopyBlocks=" + data + "\nVerity=data\nVerityMatchKey=usr\n",
		"20-usr-verity.conf":     "[Partition]\nType=usr-verity\nVerity=hash\nVerityMatchKey=usr\nSizeMinBytes=1M\n",
		"30-usr-verity-sig.conf": "[Partition]\nType=usr-verity-sig\nVerity=signature\nVerityMatchKey=usr\n",
	} {
		if err := os.WriteFile(filepath.Join(defs, name), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const seed = "0c0b1a2f-3e4d-4c5b-8a69-78879695a4b3"
	img := filepath.Join(dir, "repart.raw")
	cmd := exec.Command(repart, "--empty=create", "--size=auto", "--dry-run=no", "--definitions="+defs,
		"--private-key="+keyPath, "--certificate="+certPath, "--seed="+seed, "--json=short", img)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("systemd-repart: %v: %s", err, stderr.Bytes())
	}
	var parts []struct {
		Type     string  `json:"type"`
		Label    string  `json:"label"`
		UUID     string  `json:"uuid"`
		Offset   int64   `json:"offset"`
		Size     int64   `json:"raw_size"`
		RootHash *string `json:"roothash"`
	}
	if err := json.Unmarshal(out, &parts); err != nil || len(parts) != 3 || parts[1].RootHash == nil {
		t.Fatalf("systemd-repart --json: %v: %s", err, out)
	}
	root, err := hex.DecodeString(*parts[1].RootHash)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSysextSigner(keyPath, certPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := VeritySigPartition(s, root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	sp := parts[2]
	if sp.Size != VeritySigSize || sp.Offset+sp.Size > int64(len(b)) {
		t.Fatalf("repart's signature partition: %d bytes at %d, want %d", sp.Size, sp.Offset, VeritySigSize)
	}
	got := b[sp.Offset : sp.Offset+sp.Size]
	if diff := cmp.Diff(string(bytes.TrimRight(want, "\x00")), string(bytes.TrimRight(got, "\x00"))); diff != "" {
		t.Errorf("signature JSON (-ours +systemd-repart):\n%s", diff)
	}
	if !bytes.Equal(want, got) {
		t.Error("the signature partitions differ (padding)")
	}
	seedGUID, err := gpt.ParseGUID(seed)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{veritySigLabel, repartUUID(seedGUID[:], gpt.TypeUsrVeritySigX86_64).String()}, []string{sp.Label, sp.UUID}); diff != "" {
		t.Errorf("label and UUID (-ours +systemd-repart):\n%s", diff)
	}
}
