package tpm

import (
	"bytes"
	"testing"
)

func FuzzParseToken(f *testing.F) {
	f.Add([]byte(`{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AAA=","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"00","tpm2-pin":false}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tk, err := ParseToken(b)
		if err != nil {
			return
		}
		j, err := tk.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed token: %v", err)
		}
		tk2, err := ParseToken(j)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		j2, _ := tk2.Marshal()
		if !bytes.Equal(j, j2) {
			t.Fatalf("marshal not stable:\n%s\n%s", j, j2)
		}
	})
}

func FuzzParseMeasureLog(f *testing.F) {
	f.Add([]byte("\x1e{\"pcr\":15,\"digests\":[{\"hashAlg\":\"sha1\",\"digest\":\"3809c45c926270cd9e4fa2d05fcb0fe4cbc47875\"}],\"content_type\":\"systemd\",\"content\":{\"string\":\"cryptsetup:root:u\",\"eventType\":\"volume-key\"}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := ParseMeasureLog(b)
		if err != nil {
			return
		}
		for _, bank := range []Bank{SHA1, SHA256, SHA384, SHA512} {
			if _, err := ReplayPCR(recs, 15, bank); err != nil {
				t.Fatalf("replay of a parsed log: %v", err)
			}
		}
	})
}
