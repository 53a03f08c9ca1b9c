package tpmtest

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func readPCR15(t *testing.T, s *SWTPM) []byte {
	t.Helper()
	rsp, err := (tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
		{Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(15)}}}}).Execute(s.Open())
	if err != nil {
		t.Fatal(err)
	}
	return rsp.PCRValues.Digests[0].Buffer
}

func TestRebootResetsPCRs(t *testing.T) {
	s := Start(t)
	d := sha256.Sum256([]byte("x"))
	_, err := (tpm2.PCRExtend{PCRHandle: tpm2.AuthHandle{Handle: 15, Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: d[:]}}}}).Execute(s.Open())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(readPCR15(t, s), make([]byte, 32)) {
		t.Fatal("PCR 15 still zero after extend")
	}
	s.Reboot()
	if got := readPCR15(t, s); !bytes.Equal(got, make([]byte, 32)) {
		t.Fatalf("PCR 15 after reboot = %x, want zeros", got)
	}
}
