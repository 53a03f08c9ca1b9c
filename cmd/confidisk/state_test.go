package main

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/luks2/metamac"
	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/recovery"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// stateImage is a LUKS2 image with a (version 1) confidisk provisioning
// token, as a volume from before authenticated metadata.
func stateImage(t *testing.T) (dir, img, key string) {
	t.Helper()
	dir, img, key = luksImage(t)
	if _, _, err := runIn(t, "", append(append([]string{"luks", "format", "-q", "--key-file", key}, fastKDF...), img)...); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "tok.json")
	os.WriteFile(tok, []byte(`{"type":"confidisk-provision","keyslots":[],"version":1,"step":"complete","recovery_keyslot":0,"rw":"overlay"}`), 0o600)
	if _, _, err := runIn(t, "", "luks", "token", "import", img, "--json-file", tok); err != nil {
		t.Fatal(err)
	}
	return dir, img, key
}

func header(t *testing.T, img string) (*luks2.Header, []byte) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, _, err := luks2.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	vk, _, err := h.Unlock(f, []byte("first passphrase"), -1)
	if err != nil {
		t.Fatal(err)
	}
	return h, vk
}

func verified(t *testing.T, img string) error {
	t.Helper()
	h, vk := header(t, img)
	return provision.VerifyMetadata(img, h, vk)
}

// TestAuthenticatedMetadataCLI: state reconfigure authenticates a volume;
// keyslot commands keep its MAC valid, refuse to change it without a
// passphrase, and refuse a header the host rewrote — without writing.
func TestAuthenticatedMetadataCLI(t *testing.T) {
	dir, img, key := stateImage(t)
	if err := verified(t, img); !errors.Is(err, provision.ErrUnauthenticated) {
		t.Fatalf("version 1 volume: %v, want ErrUnauthenticated", err)
	}
	if _, _, err := runIn(t, "", "state", "reconfigure", img, "--key-file", key); err == nil {
		t.Error("reconfigure with nothing to change accepted")
	}
	out, _, err := runIn(t, "", "state", "reconfigure", img, "--key-file", key, "--rollback-anchor", "tpm", "--tpm2-pcrs", "7+11")
	if err != nil || !strings.Contains(out, "anchor tpm") || !strings.Contains(out, "[7 11]") {
		t.Fatalf("reconfigure: %q %v", out, err)
	}
	if err := verified(t, img); err != nil {
		t.Fatalf("after reconfigure: %v", err)
	}
	if _, _, err := runIn(t, "", "state", "reconfigure", img, "--key-file", key, "--rollback-anchor", "broker"); err == nil {
		t.Error("a broker anchor without a broker accepted")
	}

	newKey := filepath.Join(dir, "new")
	os.WriteFile(newKey, []byte("second passphrase"), 0o600)
	if _, _, err := runIn(t, "", append(append([]string{"luks", "add-key", "--key-file", key}, fastKDF...), img, newKey)...); err != nil {
		t.Fatal(err)
	}
	if err := verified(t, img); err != nil {
		t.Fatalf("after add-key: %v", err)
	}
	before, _ := os.ReadFile(img)
	if _, _, err := runIn(t, "", "luks", "kill-slot", img, "1"); !errors.Is(err, ErrNeedsKey) && (err == nil || !strings.Contains(err.Error(), "passphrase")) {
		t.Errorf("kill-slot without a passphrase: %v, want a refusal", err)
	}
	if after, _ := os.ReadFile(img); !bytes.Equal(before, after) {
		t.Fatal("the refused kill-slot changed the image")
	}
	if _, _, err := runIn(t, "", "luks", "kill-slot", img, "1", "--key-file", key); err != nil {
		t.Fatal(err)
	}
	if err := verified(t, img); err != nil {
		t.Fatalf("after kill-slot: %v", err)
	}

	// The host shifts the IV: the next keyslot change refuses and writes nothing.
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	h, _, _ := luks2.Read(f)
	h.Metadata.Segments[0].IVTweak = 8
	if err := h.Write(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tampered, _ := os.ReadFile(img)
	_, _, err = runIn(t, "", append(append([]string{"luks", "add-key", "--key-file", key}, fastKDF...), img, newKey)...)
	if !errors.Is(err, metamac.ErrChanged) || !strings.Contains(err.Error(), "iv_tweak") {
		t.Errorf("add-key on a rewritten header: %v, want ErrChanged naming iv_tweak", err)
	}
	if after, _ := os.ReadFile(img); !bytes.Equal(tampered, after) {
		t.Fatal("the refused add-key changed the image")
	}
}

// TestLUKSRecover: the operator unwraps the recovery passphrase from the
// header with the operator key; another key gets nothing.
func TestLUKSRecover(t *testing.T) {
	dir, img, _ := stateImage(t)
	op, _ := ecdh.X25519().GenerateKey(rand.Reader)
	privPEM, _, err := recovery.MarshalKeys(op)
	if err != nil {
		t.Fatal(err)
	}
	opFile := filepath.Join(dir, "op.key")
	os.WriteFile(opFile, privPEM, 0o600)
	h, _ := header(t, img)
	rt, err := recovery.Wrap(op.PublicKey(), h.UUID, 0, []byte("first passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := rt.Marshal()
	tok := filepath.Join(dir, "rec.json")
	os.WriteFile(tok, raw, 0o600)
	if _, _, err := runIn(t, "", "luks", "token", "import", img, "--json-file", tok); err != nil {
		t.Fatal(err)
	}
	out, _, err := runIn(t, "", "luks", "recover", img, "--operator-key", opFile)
	if err != nil || strings.TrimSpace(out) != "first passphrase" {
		t.Fatalf("recover: %q %v", out, err)
	}
	pass := filepath.Join(dir, "pass")
	if _, _, err := runIn(t, "", "luks", "recover", img, "--operator-key", opFile, "--out", pass); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(pass); string(b) != "first passphrase" {
		t.Errorf("--out wrote %q", b)
	}
	if st, _ := os.Stat(pass); st.Mode().Perm() != 0o600 {
		t.Errorf("--out mode %v", st.Mode().Perm())
	}
	if _, _, err := runIn(t, "", "luks", "recover", img, "--operator-key", opFile, "--out", pass); err == nil {
		t.Error("recover overwrote an existing --out file")
	}
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	otherPEM, _, _ := recovery.MarshalKeys(other)
	os.WriteFile(opFile, otherPEM, 0o600)
	if out, _, err := runIn(t, "", "luks", "recover", img, "--operator-key", opFile); !errors.Is(err, recovery.ErrWrongKey) || out != "" {
		t.Errorf("recover with another key: %q %v, want ErrWrongKey", out, err)
	}
	if _, _, err := runIn(t, "", "luks", "recover", img); err == nil {
		t.Error("recover without --operator-key accepted")
	}
}

// TestStateResealCLI: a state volume whose vTPM keyslot no longer unseals
// (PCR 7 changed) is resealed with a passphrase; the vTPM opens it again,
// its metadata verifies. A volume without authenticated metadata, a seal
// to fewer PCRs and a vTPM without the volume's fixation digest are
// refused with what to do.
func TestStateResealCLI(t *testing.T) {
	sw := tpmtest.Start(t)
	_, img, key := stateImage(t)
	if _, _, err := runIn(t, "", "state", "reseal", img, "--key-file", key, "--tpm2-device", sw.Device()); !errors.Is(err, provision.ErrUnauthenticated) {
		t.Errorf("reseal of a version 1 volume: %v, want ErrUnauthenticated", err)
	}
	if _, _, err := runIn(t, "", "state", "reconfigure", img, "--key-file", key, "--rollback-anchor", "tpm"); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runIn(t, "", "luks", "enroll-tpm2", "--tpm2-device", sw.Device(), "--key-file", key,
		"--tpm2-pcrs", "7+15:sha256="+strings.Repeat("00", 32), img); err != nil {
		t.Fatalf("enroll-tpm2: %v %s", err, errOut)
	}
	tp := sw.Open()
	if err := tpm.ExtendPCR(tp, 7, map[tpm.Bank][]byte{tpm.SHA256: make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	tokenOpens := func() error {
		_, _, err := runIn(t, "", "luks", "open", "--test-passphrase", "--token-only", "--tpm2-device", sw.Device(), img)
		return err
	}
	if err := tokenOpens(); err == nil {
		t.Fatal("the token opens after PCR 7 changed")
	}
	before, _ := os.ReadFile(img)
	for _, tc := range []struct {
		args    []string
		wantErr error
	}{
		{[]string{"--tpm2-pcrs", "4"}, provision.ErrWeakerSeal},
		{nil, provision.ErrNoFixation},
	} {
		args := append([]string{"state", "reseal", img, "--key-file", key, "--tpm2-device", sw.Device()}, tc.args...)
		if _, _, err := runIn(t, "", args...); !errors.Is(err, tc.wantErr) {
			t.Errorf("reseal %v: %v, want %v", tc.args, err, tc.wantErr)
		}
	}
	if after, _ := os.ReadFile(img); !bytes.Equal(before, after) {
		t.Error("a refused reseal changed the volume")
	}
	// The volume was enrolled outside a first boot: this vTPM never held
	// its fixation digest.
	out, _, err := runIn(t, "", "state", "reseal", img, "--key-file", key, "--tpm2-device", sw.Device(), "--fixate", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"removed_keyslots": [`) || !strings.Contains(out, `"fixated": true`) {
		t.Errorf("reseal --json printed %s", out)
	}
	if err := tokenOpens(); err != nil {
		t.Errorf("the token after reseal: %v", err)
	}
	if err := verified(t, img); err != nil {
		t.Errorf("the metadata after reseal: %v", err)
	}
}
