package secureboot

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseSignatureLists checks that ParseSignatureLists never panics and
// that whatever it accepts encodes back to the same bytes.
func FuzzParseSignatureLists(f *testing.F) {
	f.Add(X509SignatureList(GUID{1}, []byte("certificate")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		lists, err := ParseSignatureLists(b)
		if err != nil {
			return
		}
		out, err := MarshalSignatureLists(lists...)
		if err != nil {
			t.Fatalf("accepted lists do not marshal: %v", err)
		}
		if diff := cmp.Diff(b, out, cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })); diff != "" {
			t.Fatalf("round trip (-in +out):\n%s", diff)
		}
	})
}

// FuzzParseAuthVariable checks that ParseAuthVariable never panics and
// accounts for every byte of what it accepts.
func FuzzParseAuthVariable(f *testing.F) {
	f.Add(make([]byte, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		av, err := ParseAuthVariable(b)
		if err != nil {
			return
		}
		if got := 40 + len(av.SignedData) + len(av.Data); got != len(b) {
			t.Fatalf("parsed %d of %d bytes", got, len(b))
		}
		if !bytes.Equal(appendEFITime(nil, av.Timestamp), b[:16]) {
			t.Fatal("timestamp does not encode back to its EFI_TIME")
		}
	})
}

// FuzzParsePEM checks the key and certificate PEM parsers never panic.
func FuzzParsePEM(f *testing.F) {
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := ParsePrivateKeyPEM(b); err == nil && k == nil {
			t.Fatal("nil key without error")
		}
		if c, err := ParseCertificatePEM(b); err == nil && c == nil {
			t.Fatal("nil certificate without error")
		}
	})
}

// FuzzAuthenticodeDigest checks that malformed images give errors, not
// panics, in the digest and in SignPE's parsing.
func FuzzAuthenticodeDigest(f *testing.F) {
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := AuthenticodeDigest(b); err == nil && len(d) != 32 {
			t.Fatalf("digest of %d bytes", len(d))
		}
	})
}
