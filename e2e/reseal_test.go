package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/secureboot"
)

// dbxUpdate is the operator's firmware update: a dbx with one more
// forbidden hash than the placeholder, signed by KEK as a vendor's dbx
// update is. It returns the update file and the PCR 7 a Secure Boot boot
// of the image measures with it (secureboot.PredictPCR7, what `confidisk
// image build --dbx` predicts).
func (l *imageLab) dbxUpdate(t *testing.T) (update, pcr7 string) {
	t.Helper()
	ks, err := secureboot.LoadKeySet(l.keys)
	if err != nil {
		t.Fatal(err)
	}
	revoked := sha256.Sum256([]byte("a revoked boot loader"))
	extra, err := secureboot.SignatureList{Type: secureboot.CertSHA256GUID, Signatures: []secureboot.SignatureData{{Owner: ks.Owner, Data: revoked[:]}}}.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	dbx := append(secureboot.PlaceholderDBX(), extra...)
	auth, err := secureboot.SignVariable(ks.KEK, "dbx", secureboot.ImageSecurityDatabaseGUID, secureboot.SecureBootVarAttributes, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), dbx)
	if err != nil {
		t.Fatal(err)
	}
	update = filepath.Join(l.dir, "dbxupdate.bin")
	if err := os.WriteFile(update, auth, 0o644); err != nil { // the descriptor and the lists
		t.Fatal(err)
	}
	sb, err := ks.SecureBootVars(dbx)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := secureboot.PredictPCR7(sb)
	return update, hex.EncodeToString(v[:])
}

// checkResealAfterRecovery: a guest provisioned under the old dbx boots
// after the firmware's dbx update; PCR 7 changed, the vTPM does not unseal
// and the boot falls to the recovery path, the volume untouched. The
// operator unwraps the recovery passphrase from a copy of the header
// (luks recover) and, from a rescue system on the same VM and vTPM, runs
// `confidisk state reseal` with it and the PCR 7 it predicted for the new
// dbx. The next boot unseals without the recovery key and finds the data.
// (The lab hands the rescue system the passphrase on its initramfs; a real
// rescue gets it over a channel the host cannot read.)
func (l *imageLab) checkResealAfterRecovery(t *testing.T, disk string) {
	start := time.Now()
	update, pcr7 := l.dbxUpdate(t)
	varsNew := filepath.Join(l.dir, "vars-dbx-update.fd")
	k := lab.SecureBootKeys{Owner: l.owner, PK: filepath.Join(l.keys, "PK.crt"), KEK: filepath.Join(l.keys, "KEK.crt"), DB: filepath.Join(l.keys, "db.crt"),
		SecureBootOn: true, DBXUpdate: update}
	if err := lab.EnrollKeys(context.Background(), "", k, varsNew); err != nil {
		missingOrFatal(t, err)
	}
	// The broker's policy holds the old and the predicted PCR 7.
	pol, err := attest.LoadPolicy(filepath.Join(filepath.Dir(disk), "policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	pol.PCRs[7] = append(pol.PCRs[7], pcr7)
	if err := l.broker.SetPolicy(pol); err != nil {
		t.Fatal(err)
	}
	m := l.machine(t, disk, l.varsSB)
	expect := []string{"previous", "state-writable"}
	lab.RunScenario(t, lab.Scenario{Name: "reseal-provision", Machine: m, Expect: expect})

	// The firmware update.
	newFirmware := func() {
		t.Helper()
		v := filepath.Join(m.Dir, "vars-new.fd")
		copyFile(t, varsNew, v, 0o644)
		fw, err := lab.NewFirmware(v)
		if err != nil {
			missingOrFatal(t, err)
		}
		m.Firmware = fw
	}
	newFirmware()
	before := fileDigest(t, m.Disks[0].Path)
	res := lab.RunScenario(t, lab.Scenario{Name: "reseal-recovery-prompt", Machine: m, Stops: "luks recover"})
	if c := readFile(t, res.ConsoleLog); !strings.Contains(string(c), "pcr values do not match the sealing policy") {
		t.Error("the boot fell to recovery for another reason than PCR 7")
	}
	if fileDigest(t, m.Disks[0].Path) != before {
		t.Fatal("the boot that fell to recovery changed the disk")
	}

	// The operator: the passphrase from a copy of the header.
	pass := l.recoverPassphrase(t, m.Disks[0].Path)
	fw := m.Firmware
	m.Firmware = nil // the rescue system: the lab kernel and an initramfs
	res = lab.RunScenario(t, lab.Scenario{Name: "reseal-rescue", Machine: m,
		Files: map[string]string{"/bin/confidisk": l.guest, "/pass": pass},
		Script: fmt.Sprintf(`
check reseal confidisk state reseal /dev/vda4 --key-file /pass --tpm2-device /dev/tpmrm0 --tpm2-pcrs 7:sha256=%s --json
`, pcr7), Expect: []string{"reseal"}})
	for _, r := range res.Results {
		// The same vTPM: the fixation digest matched, nothing stored.
		if r.Name == "reseal" && !strings.Contains(r.Detail, `"fixated": false`) {
			t.Errorf("reseal printed %q", r.Detail)
		}
	}
	m.Firmware = fw
	res = lab.RunScenario(t, lab.Scenario{Name: "reseal-after-recovery-boot", Machine: m, Expect: expect})
	for _, r := range res.Results {
		if r.Name == "previous" && r.Detail != "written" {
			t.Errorf("the resealed boot found %q, not the data", r.Detail)
		}
	}
	if c := readFile(t, res.ConsoleLog); strings.Contains(string(c), "luks recover") {
		t.Error("the resealed boot fell to the recovery path")
	}
	fmt.Printf("LAB reseal-after-recovery %s %.1fs\n", map[bool]string{true: "FAIL", false: "PASS"}[t.Failed()], time.Since(start).Seconds())
}

// recoverPassphrase is the operator's `confidisk luks recover` on a copy
// of the state partition's header; it returns the passphrase's file.
func (l *imageLab) recoverPassphrase(t *testing.T, disk string) string {
	t.Helper()
	off, _ := partition(t, disk, stateType)
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 16<<20)
	_, err = f.ReadAt(hdr, off)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "header.img")
	if err := os.WriteFile(copyPath, hdr, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "pass")
	run(t, l.op, "luks", "recover", copyPath, "--operator-key", filepath.Join(l.dir, "recovery.key"), "--out", out)
	return out
}
