package secureboot

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/foxboron/go-uefi/efi/signature"
	"github.com/foxboron/go-uefi/pkcs7"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// wrapContentInfo puts a SignedData back into a ContentInfo so openssl can
// read it.
func wrapContentInfo(t *testing.T, sd []byte) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(pkcs7.OIDSignedData)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddBytes(sd)
		})
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestAuthFilesVerify(t *testing.T) {
	openssl := needTool(t, "openssl", "openssl")
	ks := testKeys(t)
	dir := t.TempDir()
	if err := ks.WriteDir(dir, testTime); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, signerName string
		signer           *Signer
		wrong            string // a certificate that must not verify it
		vendor           GUID
	}{
		{VarPK, VarPK, ks.PK, "KEK.crt", EFIGlobalVariableGUID},
		{VarKEK, VarPK, ks.PK, "KEK.crt", EFIGlobalVariableGUID},
		{VarDB, VarKEK, ks.KEK, "PK.crt", ImageSecurityDatabaseGUID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auth, err := os.ReadFile(filepath.Join(dir, tc.name+".auth"))
			if err != nil {
				t.Fatal(err)
			}
			esl, err := os.ReadFile(filepath.Join(dir, tc.name+".esl"))
			if err != nil {
				t.Fatal(err)
			}
			av, err := ParseAuthVariable(auth)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(testTime, av.Timestamp); diff != "" {
				t.Errorf("timestamp (-want +got):\n%s", diff)
			}
			if !bytes.Equal(av.Data, esl) {
				t.Error("the .auth payload is not the .esl")
			}

			// Fixed header fields, byte for byte.
			wantHdr := "ea07" + "01" + "02" + "03" + "04" + "05" + "00" + "00000000" + "0000" + "00" + "00" + // EFI_TIME 2026-01-02 03:04:05
				hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, uint32(24+len(av.SignedData)))) +
				"0002" + "f10e" + // wRevision 0x0200, WIN_CERT_TYPE_EFI_GUID
				"9dd2af4adf68ee498aa9347d375665a7" // EFI_CERT_TYPE_PKCS7_GUID
			if diff := cmp.Diff(wantHdr, hex.EncodeToString(auth[:40])); diff != "" {
				t.Errorf("descriptor header (-want +got):\n%s", diff)
			}

			// go-uefi reads the descriptor back.
			ga, err := signature.ReadEFIVariableAuthencation2(bytes.NewBuffer(auth))
			if err != nil {
				t.Fatal(err)
			}
			if ga.AuthInfo.CertType != signature.EFI_CERT_TYPE_PKCS7_GUID || !bytes.Equal(ga.AuthInfo.CertData, av.SignedData) {
				t.Error("go-uefi reads a different WIN_CERTIFICATE_UEFI_GUID")
			}

			signed := VariableSignedData(tc.name, tc.vendor, SecureBootVarAttributes, testTime, esl)
			// The signed data is UTF-16 name || vendor || attributes || time || data.
			wantPrefix := hex.EncodeToString(utf16Name(tc.name)) + hex.EncodeToString(appendGUID(nil, tc.vendor)) + "27000000" + hex.EncodeToString(auth[:16])
			if diff := cmp.Diff(wantPrefix, hex.EncodeToString(signed[:len(signed)-len(esl)])); diff != "" {
				t.Errorf("signed data prefix (-want +got):\n%s", diff)
			}

			// Go check: the SignerInfo's RSA signature is over SHA-256 of the
			// signed data (no authenticated attributes), by the signer.
			p7, err := pkcs7.ParsePKCS7(av.SignedData)
			if err != nil {
				t.Fatal(err)
			}
			if len(p7.SignerInfo) != 1 || p7.SignerInfo[0].AuthenticatedAttributes != nil {
				t.Fatalf("want one SignerInfo without authenticated attributes, have %d", len(p7.SignerInfo))
			}
			if len(p7.Certs) != 1 || !p7.Certs[0].Equal(tc.signer.Certificate()) {
				t.Errorf("SignedData does not carry the %s certificate", tc.signerName)
			}
			h := sha256.Sum256(signed)
			if err := rsa.VerifyPKCS1v15(tc.signer.Certificate().PublicKey.(*rsa.PublicKey), crypto.SHA256, h[:], p7.SignerInfo[0].EncryptedDigest); err != nil {
				t.Errorf("RSA signature: %v", err)
			}

			// Oracle: openssl cms verifies the detached signature.
			p7Path := writeTemp(t, "sig.p7", wrapContentInfo(t, av.SignedData))
			content := writeTemp(t, "signed.bin", signed)
			verify := func(ca string, data string) (string, bool) {
				return runTool(t, openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", p7Path,
					"-content", data, "-CAfile", filepath.Join(dir, ca), "-purpose", "any", "-out", "/dev/null")
			}
			if out, ok := verify(tc.signerName+".crt", content); !ok {
				t.Errorf("openssl cms -verify with %s.crt failed:\n%s", tc.signerName, out)
			}
			if out, ok := verify(tc.wrong, content); ok {
				t.Errorf("openssl cms -verify accepted %s:\n%s", tc.wrong, out)
			}
			tampered := bytes.Clone(signed)
			tampered[len(tampered)-1] ^= 1
			if out, ok := verify(tc.signerName+".crt", writeTemp(t, "tampered.bin", tampered)); ok {
				t.Errorf("openssl cms -verify accepted tampered data:\n%s", out)
			}
		})
	}
}

func TestAuthReproducible(t *testing.T) {
	ks := testKeys(t)
	a, err := ks.Auth(VarDB, testTime)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ks.Auth(VarDB, testTime.Add(999*time.Millisecond)) // sub-second is dropped
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("same keys and timestamp gave different .auth bytes")
	}
	c, err := ks.Auth(VarDB, testTime.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c) {
		t.Error("a different timestamp gave the same .auth bytes")
	}
	if _, err := ks.Auth("dbx", testTime); err == nil {
		t.Error("Auth accepted an unknown variable")
	}
	if _, err := SignVariable(ks.KEK, VarDB, ImageSecurityDatabaseGUID, SecureBootVarAttributes, time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC), nil); err == nil {
		t.Error("SignVariable accepted a year EFI_TIME cannot hold")
	}
}

func TestParseAuthVariableErrors(t *testing.T) {
	ks := testKeys(t)
	valid, err := ks.Auth(VarKEK, testTime)
	if err != nil {
		t.Fatal(err)
	}
	patch := func(off int, v ...byte) []byte {
		b := bytes.Clone(valid)
		copy(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"short", valid[:39], "descriptor needs at least 40"},
		{"nanosecond set", patch(8, 1), "must be zero"},
		{"month 13", patch(2, 13), "out of range"},
		{"february 30", patch(2, 2, 30), "is not a date"},
		{"revision", patch(20, 0x00, 0x01), "revision"},
		{"cert type", patch(22, 0x02, 0x00), "WIN_CERT_TYPE_EFI_GUID"},
		{"cert guid", patch(24, 0), "EFI_CERT_TYPE_PKCS7_GUID"},
		{"length past end", patch(16, 0xff, 0xff, 0xff, 0x7f), "dwLength"},
		{"length below header", patch(16, 23, 0, 0, 0), "dwLength"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAuthVariable(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
