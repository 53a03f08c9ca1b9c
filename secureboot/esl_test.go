package secureboot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/foxboron/go-uefi/efi/signature"
	"github.com/foxboron/go-uefi/efi/util"
	"github.com/google/go-cmp/cmp"
)

func TestGUIDs(t *testing.T) {
	// The canonical text of each well-known GUID, and go-uefi's value of it
	// encoded in the EFI_GUID layout (binary.Write little-endian of its
	// struct), which appendGUID must reproduce.
	for _, tc := range []struct {
		name   string
		g      GUID
		text   string
		goUEFI util.EFIGUID
	}{
		{"EFI_GLOBAL_VARIABLE", EFIGlobalVariableGUID, "8be4df61-93ca-11d2-aa0d-00e098032b8c", util.EFIGUID{Data1: 0x8BE4DF61, Data2: 0x93CA, Data3: 0x11d2, Data4: [8]uint8{0xAA, 0x0D, 0x00, 0xE0, 0x98, 0x03, 0x2B, 0x8C}}},
		{"EFI_IMAGE_SECURITY_DATABASE_GUID", ImageSecurityDatabaseGUID, "d719b2cb-3d3a-4596-a3bc-dad00e67656f", util.EFIGUID{Data1: 0xd719b2cb, Data2: 0x3d3a, Data3: 0x4596, Data4: [8]uint8{0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f}}},
		{"EFI_CERT_X509_GUID", CertX509GUID, "a5c059a1-94e4-4aa7-87b5-ab155c2bf072", signature.CERT_X509_GUID},
		{"EFI_CERT_SHA256_GUID", CertSHA256GUID, "c1c41626-504c-4092-aca9-41f936934328", signature.CERT_SHA256_GUID},
		{"EFI_CERT_TYPE_PKCS7_GUID", CertTypePKCS7GUID, "4aafd29d-68df-49ee-8aa9-347d375665a7", signature.EFI_CERT_TYPE_PKCS7_GUID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.text, tc.g.String()); diff != "" {
				t.Errorf("text (-want +got):\n%s", diff)
			}
			var want bytes.Buffer
			if err := binary.Write(&want, binary.LittleEndian, tc.goUEFI); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want.Bytes(), appendGUID(nil, tc.g)); diff != "" {
				t.Errorf("EFI_GUID layout (-go-uefi +ours):\n%s", diff)
			}
			if readGUID(want.Bytes()) != tc.g {
				t.Error("readGUID does not invert appendGUID")
			}
		})
	}
}

// goUEFILists reads b with go-uefi's reader and converts the result to this
// package's types.
func goUEFILists(t *testing.T, b []byte) []SignatureList {
	t.Helper()
	var lists []SignatureList
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		l, err := signature.ReadSignatureList(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("go-uefi ReadSignatureList: %v", err)
		}
		var buf bytes.Buffer
		if err := binary.Write(&buf, binary.LittleEndian, l.SignatureType); err != nil {
			t.Fatal(err)
		}
		sl := SignatureList{Type: readGUID(buf.Bytes())}
		for _, s := range l.Signatures {
			buf.Reset()
			if err := binary.Write(&buf, binary.LittleEndian, s.Owner); err != nil {
				t.Fatal(err)
			}
			sl.Signatures = append(sl.Signatures, SignatureData{Owner: readGUID(buf.Bytes()), Data: s.Data})
		}
		lists = append(lists, sl)
	}
	return lists
}

func TestSignatureListRoundTrip(t *testing.T) {
	ks := testKeys(t)
	h1 := sha256.Sum256([]byte("one"))
	h2 := sha256.Sum256([]byte("two"))
	other := GUID{15: 1}
	for _, tc := range []struct {
		name  string
		lists []SignatureList
	}{
		{"one x509", []SignatureList{{Type: CertX509GUID, Signatures: []SignatureData{{testOwner, ks.DB.Certificate().Raw}}}}},
		{"x509 then sha256 pair", []SignatureList{
			{Type: CertX509GUID, Signatures: []SignatureData{{testOwner, ks.KEK.Certificate().Raw}}},
			{Type: CertSHA256GUID, Signatures: []SignatureData{{testOwner, h1[:]}, {other, h2[:]}}},
		}},
		{"three x509 lists", []SignatureList{
			{Type: CertX509GUID, Signatures: []SignatureData{{testOwner, ks.PK.Certificate().Raw}}},
			{Type: CertX509GUID, Signatures: []SignatureData{{testOwner, ks.KEK.Certificate().Raw}}},
			{Type: CertX509GUID, Signatures: []SignatureData{{other, ks.DB.Certificate().Raw}}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := MarshalSignatureLists(tc.lists...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseSignatureLists(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.lists, got); diff != "" {
				t.Errorf("ParseSignatureLists (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.lists, goUEFILists(t, b)); diff != "" {
				t.Errorf("go-uefi ReadSignatureList (-want +got):\n%s", diff)
			}
		})
	}
}

func TestX509SignatureListLayout(t *testing.T) {
	der := []byte("fake DER certificate")
	b := X509SignatureList(testOwner, der)
	want := "a159c0a5e494a74a87b5ab155c2bf072" + // EFI_CERT_X509_GUID
		hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, uint32(28+16+len(der)))) +
		"00000000" + // SignatureHeaderSize
		hex.EncodeToString(binary.LittleEndian.AppendUint32(nil, uint32(16+len(der)))) +
		"78563412bc9aef4d8001020304050607" + // owner 12345678-9abc-4def-8001-020304050607
		hex.EncodeToString(der)
	if diff := cmp.Diff(want, hex.EncodeToString(b)); diff != "" {
		t.Errorf("ESL bytes (-want +got):\n%s", diff)
	}
}

func TestParseSignatureListsErrors(t *testing.T) {
	valid := X509SignatureList(testOwner, []byte("0123456789"))
	patch := func(off int, v uint32) []byte {
		b := bytes.Clone(valid)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"short header", valid[:27], "header needs 28"},
		{"list size past end", patch(16, uint32(len(valid)+1)), "exceeds the"},
		{"list size below header", patch(16, 27), "smaller than its headers"},
		{"header size past list", patch(20, 100), "smaller than its headers"},
		{"signature size below guid", patch(24, 15), "smaller than the owner GUID"},
		{"no signatures", patch(16, 28), "not a positive multiple"},
		{"partial signature", patch(24, 27), "not a positive multiple"},
		{"trailing bytes", append(bytes.Clone(valid), 1, 2, 3), "header needs 28"},
		{"huge list size", patch(16, 0xffffffff), "exceeds the"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSignatureLists(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := MarshalSignatureLists(SignatureList{Type: CertSHA256GUID, Signatures: []SignatureData{{Data: []byte{1}}, {Data: []byte{1, 2}}}}); err == nil {
		t.Error("MarshalSignatureLists accepted signatures of two sizes in one list")
	}
	if _, err := MarshalSignatureLists(SignatureList{Type: CertSHA256GUID}); err == nil {
		t.Error("MarshalSignatureLists accepted an empty list")
	}
}

// TestPlaceholderDBXMatchesVirtFwVars checks PlaceholderDBX against the
// dbx virt-fw-vars 24.2 wrote (its --output-json dump, data field; the same
// for any --set-pk owner), which an OVMF guest measured into PCR 7.
func TestPlaceholderDBXMatchesVirtFwVars(t *testing.T) {
	owner, err := ParseGUID("a0baa8a3-041d-48a8-bc87-c36d121b5e3d")
	if err != nil || owner != PlaceholderOwner {
		t.Fatalf("PlaceholderOwner is %s, want a0baa8a3-041d-48a8-bc87-c36d121b5e3d (%v)", PlaceholderOwner, err)
	}
	const want = "2616c4c14c509240aca941f9369343284c0000000000000030000000" +
		"a3a8baa01d04a848bc87c36d121b5e3d" +
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if got := hex.EncodeToString(PlaceholderDBX()); got != want {
		t.Errorf("PlaceholderDBX = %s\nwant             %s", got, want)
	}
}
