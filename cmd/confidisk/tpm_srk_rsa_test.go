package main

import (
	"bytes"
	"encoding/pem"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// TestTPMSRKCLIRSA: on a vTPM whose SRK is systemd's RSA one (what
// tpm2_get_or_create_srk makes on a TPM without ECC), `tpm srk` prints it
// as it is, in both forms, and a secret sealed offline to either unseals
// there.
func TestTPMSRKCLIRSA(t *testing.T) {
	sw := tpmtest.Start(t)
	tp := sw.Open()
	cp, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm.RSASRKTemplate())}).Execute(tp)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (tpm2.EvictControl{Auth: tpm2.TPMRHOwner, ObjectHandle: tpm2.NamedHandle{Handle: cp.ObjectHandle, Name: cp.Name},
		PersistentHandle: tpm.SRKHandle}).Execute(tp)
	if err != nil {
		t.Fatal(err)
	}
	(tpm2.FlushContext{FlushHandle: cp.ObjectHandle}).Execute(tp)

	var tpm2b bytes.Buffer
	if stderr, err := runCLIStdout(t, &tpm2b, "tpm", "srk", "--tpm", sw.Device()); err != nil || stderr != "" {
		t.Fatalf("tpm srk: %v, stderr %q (the rsa srk is there: nothing to create)", err, stderr)
	}
	pemFile := filepath.Join(t.TempDir(), "srk.pem")
	if stderr, err := runCLIStdout(t, io.Discard, "tpm", "srk", "--tpm", sw.Device(), "--format", "pem", "-o", pemFile); err != nil || stderr != "" {
		t.Fatalf("tpm srk --format pem: %v, stderr %q", err, stderr)
	}
	pemBytes := readFile(t, pemFile)
	if blk, _ := pem.Decode(pemBytes); blk == nil || blk.Type != "PUBLIC KEY" {
		t.Fatalf("tpm srk --format pem wrote %q", pemBytes)
	}
	srk, err := tpm.ReadSRK(tp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tpm2b.Bytes(), tpm.MarshalSRKPublic(&srk.Public)) {
		t.Fatal("tpm srk printed another public area than the rsa srk's")
	}
	for name, b := range map[string][]byte{"tpm2b": tpm2b.Bytes(), "pem": pemBytes} {
		pub, err := tpm.ParseSRKPublic(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if pub.Type != tpm2.TPMAlgRSA {
			t.Fatalf("%s: parsed type 0x%x, want rsa", name, pub.Type)
		}
		s, err := tpm.SealOffline(pub, []byte("offline"), tpm.SealOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := tpm.Unseal(tp, s, tpm.UnsealOptions{}); err != nil || string(got) != "offline" {
			t.Fatalf("%s: unseal of a secret sealed offline to the printed rsa key: %q, %v", name, got, err)
		}
	}
}
