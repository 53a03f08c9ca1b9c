package tpmtest

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// TestStartDirKeepsState defines and writes an NV index, stops swtpm and
// starts another one on the same state directory, as a host would with a
// powered-off VM's vTPM state.
func TestStartDirKeepsState(t *testing.T) {
	s := Start(t)
	tp := s.Open()
	const index tpm2.TPMHandle = 0x01800300
	pub := tpm2.TPMSNVPublic{
		NVIndex: index, NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, AuthWrite: true, AuthRead: true, NoDA: true},
		DataSize:   4,
	}
	if _, err := (tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(pub),
	}).Execute(tp); err != nil {
		t.Fatal(err)
	}
	name, err := tpm2.NVName(&pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.NVWrite{
		AuthHandle: tpm2.AuthHandle{Handle: index, Name: *name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: *name},
		Data:       tpm2.TPM2BMaxNVBuffer{Buffer: []byte("host")},
	}).Execute(tp); err != nil {
		t.Fatal(err)
	}
	if err := s.control(cmdShutdown, nil); err != nil {
		t.Fatal(err)
	}
	s.cmd.Wait()

	h := StartDir(t, s.Dir())
	if h.Dir() != s.Dir() || h.Path() == s.Path() {
		t.Fatalf("StartDir: state %s, socket %s; want state %s and a new socket", h.Dir(), h.Path(), s.Dir())
	}
	rp, err := (tpm2.NVReadPublic{NVIndex: index}).Execute(h.Open())
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := (tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: index, Name: rp.NVName, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: rp.NVName},
		Size:       4,
	}).Execute(h.Open())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rsp.Data.Buffer, []byte("host")) {
		t.Fatalf("index holds %q after restarting on the state directory, want \"host\"", rsp.Data.Buffer)
	}
}
