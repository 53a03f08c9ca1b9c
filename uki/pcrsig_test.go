package uki_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/uki"
)

// TestPCRSignatureSystemdMeasure signs PCR 11 of a 252 UKI for the empty
// phase and systemd's default phases, and compares the document, entry by
// entry (key fingerprint, policy digest, RSA signature), with what
// systemd-measure 252 sign writes for the same sections and key (it needs
// a TPM for the policy digest: swtpm).
func TestPCRSignatureSystemdMeasure(t *testing.T) {
	measure := "/usr/lib/systemd/systemd-measure"
	if _, err := os.Stat(measure); err != nil {
		testutil.Missing(t, "systemd-measure", "apt-get install -y systemd")
	}
	swtpm := testutil.LookPath(t, "swtpm", "swtpm")
	dir := t.TempDir()
	sock := filepath.Join(dir, "tpm.sock")
	os.Mkdir(filepath.Join(dir, "state"), 0o700)
	// The tss2 swtpm TCTI (path=) wants the control socket at PATH.ctrl.
	cmd := exec.Command(swtpm, "socket", "--tpm2", "--tpmstate", "dir="+filepath.Join(dir, "state"),
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+sock+".ctrl", "--flags", "not-need-init,startup-clear")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100 && !exists(sock); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	priv := filepath.Join(dir, "key.pem")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	pubPath := filepath.Join(dir, "pub.pem")
	os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)

	parts := []uki.Part{
		{Name: ".osrel", Data: []byte("ID=confidisk\n")},
		{Name: ".cmdline", Data: []byte("console=ttyS0")},
		{Name: ".linux", Data: random(t, 100_000)},
		{Name: ".initrd", Data: random(t, 50_001)},
	}
	img, err := uki.Assemble(readFile(t, stubs(t, 252).Linux), parts)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := uki.KernelBootEvents(img)
	if err != nil {
		t.Fatal(err)
	}
	base := uki.Extend(ev)
	var values [][]byte
	for _, ph := range uki.ConfidiskPhases() {
		v := uki.PhaseValue(base, ph)
		values = append(values, v[:])
	}
	ours, err := tpm.SignPCRValues(key, tpm.SHA256, 11, values, 0)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"sign", "--bank=sha256", "--private-key=" + priv, "--public-key=" + pubPath,
		"--tpm2-device=swtpm:path=" + sock, "--json=short"}
	for _, ph := range uki.ConfidiskPhases() {
		args = append(args, "--phase="+ph)
	}
	for _, p := range parts {
		f := filepath.Join(dir, p.Name[1:])
		os.WriteFile(f, p.Data, 0o644)
		args = append(args, "--"+p.Name[1:]+"="+f)
	}
	theirs, err := exec.Command(measure, args...).Output()
	if err != nil {
		t.Fatalf("systemd-measure sign: %v", err)
	}
	var a, b map[string][]tpm.PCRSignature
	if err := json.Unmarshal(ours, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(theirs, &b); err != nil {
		t.Fatalf("systemd-measure output %q: %v", theirs, err)
	}
	if len(b["sha256"]) != len(uki.ConfidiskPhases()) {
		t.Fatalf("systemd-measure wrote %d entries, want %d", len(b["sha256"]), len(uki.ConfidiskPhases()))
	}
	if diff := cmp.Diff(b, a); diff != "" {
		t.Errorf("signature document (-systemd-measure +ours):\n%s", diff)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
