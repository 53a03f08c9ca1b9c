package secureboot

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// keySetFiles lists the files WriteDir writes.
func keySetFiles() []string {
	return []string{
		"KEK.auth", "KEK.crt", "KEK.esl", "KEK.key",
		"PK.auth", "PK.crt", "PK.esl", "PK.key",
		"db.auth", "db.crt", "db.esl", "db.key", "dbx.esl",
		"owner.txt",
	}
}

func listDir(t *testing.T, dir string) map[string]os.FileMode {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]os.FileMode{}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = fi.Mode().Perm()
	}
	return m
}

func TestGenerateKeysCertificates(t *testing.T) {
	ks := testKeys(t)
	serials := map[string]bool{}
	for _, tc := range []struct {
		s  *Signer
		cn string
	}{{ks.PK, "confidisk test PK"}, {ks.KEK, "confidisk test KEK"}, {ks.DB, "confidisk test db"}} {
		c := tc.s.Certificate()
		got := struct {
			CN, Issuer       string
			Version, Bits    int
			NotBefore, After string
			SelfSigned       bool
			PositiveSerial   bool
		}{
			c.Subject.CommonName, c.Issuer.CommonName, c.Version, c.PublicKey.(*rsa.PublicKey).N.BitLen(),
			c.NotBefore.String(), c.NotAfter.String(), c.CheckSignatureFrom(c) == nil, c.SerialNumber.Sign() > 0,
		}
		want := got
		want.CN, want.Issuer, want.Version, want.Bits = tc.cn, tc.cn, 3, KeyBits
		want.NotBefore, want.After = testTime.String(), testTime.AddDate(10, 0, 0).String()
		want.SelfSigned, want.PositiveSerial = true, true
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.cn, diff)
		}
		if serials[c.SerialNumber.String()] {
			t.Errorf("%s reuses a serial number", tc.cn)
		}
		serials[c.SerialNumber.String()] = true
		if c.SignatureAlgorithm != x509.SHA256WithRSA {
			t.Errorf("%s signature algorithm %v", tc.cn, c.SignatureAlgorithm)
		}
	}
	if _, err := GenerateKeys(strings.NewReader(strings.Repeat("x", 100)), testOwner, "x", testTime, testTime); err == nil {
		t.Error("GenerateKeys accepted an empty validity")
	}
}

func TestWriteDirLoadKeySet(t *testing.T) {
	ks := testKeys(t)
	dir := t.TempDir()
	if err := ks.WriteDir(dir, testTime); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{}
	for _, f := range keySetFiles() {
		want[f] = 0o644
		if strings.HasSuffix(f, ".key") {
			want[f] = 0o600
		}
	}
	if diff := cmp.Diff(want, listDir(t, dir)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	owner, err := os.ReadFile(filepath.Join(dir, "owner.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("12345678-9abc-4def-8001-020304050607\n", string(owner)); diff != "" {
		t.Errorf("owner.txt (-want +got):\n%s", diff)
	}
	for _, name := range []string{VarPK, VarKEK, VarDB} {
		esl, err := os.ReadFile(filepath.Join(dir, name+".esl"))
		if err != nil {
			t.Fatal(err)
		}
		lists, err := ParseSignatureLists(esl)
		if err != nil {
			t.Fatal(err)
		}
		s, _, _ := ks.member(name)
		wantLists := []SignatureList{{Type: CertX509GUID, Signatures: []SignatureData{{Owner: testOwner, Data: s.Certificate().Raw}}}}
		if diff := cmp.Diff(wantLists, lists); diff != "" {
			t.Errorf("%s.esl (-want +got):\n%s", name, diff)
		}
	}

	loaded, err := LoadKeySet(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Equal(ks) {
		t.Error("LoadKeySet returned a different key set")
	}

	// The same keys and timestamp write the same derived files.
	dir2 := t.TempDir()
	if err := loaded.WriteDir(dir2, testTime); err != nil {
		t.Fatal(err)
	}
	for _, f := range keySetFiles() {
		a, _ := os.ReadFile(filepath.Join(dir, f))
		b, _ := os.ReadFile(filepath.Join(dir2, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two writes of the same keys", f)
		}
	}

	// The key files are what sbsign and openssl read.
	sbsign := needTool(t, "sbsign", "sbsigntool")
	out := filepath.Join(t.TempDir(), "sbsigned.efi")
	padded := padPE(testPE(t))
	in := writeTemp(t, "in.efi", padded)
	if o, ok := runTool(t, sbsign, "--key", filepath.Join(dir, "db.key"), "--cert", filepath.Join(dir, "db.crt"), "--output", out, in); !ok {
		t.Fatalf("sbsign with db.key/db.crt failed:\n%s", o)
	}
	// sbsign's signed image has the digest of the padded unsigned one.
	sbsigned, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	d1, err1 := AuthenticodeDigest(padded)
	d2, err2 := AuthenticodeDigest(sbsigned)
	if err1 != nil || err2 != nil || !bytes.Equal(d1, d2) {
		t.Errorf("AuthenticodeDigest: padded %x (%v), sbsign-signed %x (%v)", d1, err1, d2, err2)
	}
}

func TestWriteDirRefusesOverwrite(t *testing.T) {
	ks := testKeys(t)
	for _, existing := range []string{"PK.key", "db.auth", "owner.txt"} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, existing), []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := ks.WriteDir(dir, testTime)
			if err == nil || !strings.Contains(err.Error(), existing+" exists") {
				t.Fatalf("err = %v, want a refusal naming %s", err, existing)
			}
			if diff := cmp.Diff(map[string]os.FileMode{existing: 0o600}, listDir(t, dir)); diff != "" {
				t.Errorf("WriteDir wrote files before refusing (-want +got):\n%s", diff)
			}
		})
	}
	if err := ks.WriteDir(filepath.Join(t.TempDir(), "missing"), testTime); err == nil {
		t.Error("WriteDir accepted a missing directory")
	}
}

func TestLoadKeySetMismatch(t *testing.T) {
	ks := testKeys(t)
	for _, tc := range []struct {
		name   string
		mutate func(dir string) error
		want   string
	}{
		{"db.crt is KEK's", func(dir string) error { return copyFile(filepath.Join(dir, "KEK.crt"), filepath.Join(dir, "db.crt")) }, "db.crt does not match %s/db.key"},
		{"PK.key is db's", func(dir string) error { return copyFile(filepath.Join(dir, "db.key"), filepath.Join(dir, "PK.key")) }, "PK.crt does not match %s/PK.key"},
		{"owner.txt garbage", func(dir string) error { return os.WriteFile(filepath.Join(dir, "owner.txt"), []byte("nope\n"), 0o644) }, "owner.txt: parse guid"},
		{"KEK.key missing", func(dir string) error { return os.Remove(filepath.Join(dir, "KEK.key")) }, "KEK.key: no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := ks.WriteDir(dir, testTime); err != nil {
				t.Fatal(err)
			}
			if err := tc.mutate(dir); err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if strings.Contains(want, "%s") {
				want = strings.ReplaceAll(want, "%s", dir)
			}
			_, err := LoadKeySet(dir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want one containing %q", err, want)
			}
		})
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}
