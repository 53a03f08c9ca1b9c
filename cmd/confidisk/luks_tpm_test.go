package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

func TestParseTPM2PCRs(t *testing.T) {
	zero := strings.Repeat("00", 32)
	pcrs, vals, bank, err := parseTPM2PCRs("7+15:sha256=" + zero + "+11")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{7, 11, 15}, pcrs); diff != "" {
		t.Errorf("pcrs (-want +got):\n%s", diff)
	}
	if bank != "sha256" || len(vals[15]) != 32 || len(vals) != 1 {
		t.Errorf("bank %q values %v", bank, vals)
	}
	for _, bad := range []string{"x", "24", "15:sha256", "15:md5=00", "15:sha256=zz", "7:sha1=00+8:sha256=00"} {
		if _, _, _, err := parseTPM2PCRs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestEnrollTPM2AndTokenOnly enrolls a volume against swtpm with the CLI,
// unlocks it with --token-only, and is refused once a policy PCR changed.
func TestEnrollTPM2AndTokenOnly(t *testing.T) {
	sw := tpmtest.Start(t)
	_, img, key := luksImage(t)
	if _, _, err := runIn(t, "", append(append([]string{"luks", "format", "-q", "--key-file", key}, fastKDF...), img)...); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runIn(t, "", "luks", "enroll-tpm2", "--tpm2-device", sw.Device(), "--key-file", key,
		"--tpm2-pcrs", "7+15:sha256="+strings.Repeat("00", 32), img)
	if err != nil || !strings.Contains(errOut, "enrolled in keyslot 1") {
		t.Fatalf("enroll-tpm2: %v %s", err, errOut)
	}
	if _, _, err := runIn(t, "", "luks", "open", "--test-passphrase", "--token-only", "--tpm2-device", sw.Device(), img); err != nil {
		t.Fatalf("token-only unlock: %v", err)
	}
	tp := sw.Open()
	defer tp.Close()
	if err := tpm.ExtendPCR(tp, 7, map[tpm.Bank][]byte{"sha256": make([]byte, 32)}); err != nil {
		t.Fatal(err)
	}
	_, _, err = runIn(t, "", "luks", "open", "--test-passphrase", "--token-only", "--tpm2-device", sw.Device(), img)
	if !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Errorf("after PCR 7 changed: %v, want ErrPCRMismatch", err)
	}
	if out, err := cs(t, "first passphrase", "open", "--test-passphrase", "--key-file", "-", img); err != nil {
		t.Errorf("the passphrase keyslot after enrolling: %v\n%s", err, out)
	}
}
