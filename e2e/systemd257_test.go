package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confidisk/confidisk/enroll"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// trixieTokenPlugin returns cryptsetup 2.7 with systemd 257's token plugin
// (lab.TrixieTokenPlugin, downloaded and cached on first use).
func trixieTokenPlugin(t *testing.T) *lab.TokenPlugin {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := lab.TrixieTokenPlugin(ctx, "")
	if err != nil {
		missingOrFatal(t, err)
	}
	return p
}

// TestSystemd257ParsesOfflineToken: systemd 257's token plugin, loaded by
// cryptsetup 2.7 on the host, validates and parses the systemd-tpm2 token of
// a keyslot sealed offline to an SRK (enroll.AddOfflineEnrollment): its
// luksDump shows the token's fields as systemd read them, tpm2_srk
// included. Unsealing needs a kernel TPM: TestLabSystemd257OfflineSeal.
func TestSystemd257ParsesOfflineToken(t *testing.T) {
	p := trixieTokenPlugin(t)
	sw := tpmtest.Start(t)
	tc := sw.Open()
	defer tc.Close()
	srk, _, err := tpm.GetOrCreateSRK(tc)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpm.ParseSRKPublic(tpm.MarshalSRKPublic(&srk.Public))
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "vol.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 20 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	h, vk, err := luks2.Format(f, size, []byte("pw"), luks2.FormatOptions{PBKDF: luks2.PBKDF{Type: "pbkdf2", Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	vals, err := tpm.ReadPCRs(tc, tpm.SHA256, []int{7, 15})
	if err != nil {
		t.Fatal(err)
	}
	o := enroll.EnrollOptions{SealOptions: tpm.SealOptions{PCRs: []int{7, 15}, PCRValues: vals}, Keyslot: -1, TokenID: -1}
	slot, _, err := enroll.AddOfflineEnrollment(f, h, vk, pub, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Write(f); err != nil {
		t.Fatal(err)
	}
	args := append(p.Command(p.Root), "luksDump", "--debug", img)
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup 2.7 luksDump: %v\n%s", err, out)
	}
	dump := string(out)
	for _, want := range []string{
		"Token handler systemd-tpm2-1.0 systemd-v257",
		"tpm2-hash-pcrs:   7+15",
		"tpm2-pcr-bank:    sha256",
		"tpm2-pin:         false",
		"tpm2-srk:         true",
		"Keyslot:    " + strconv.Itoa(slot),
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("systemd 257's dump of the offline token lacks %q:\n%s", want, dump)
		}
	}
}

// TestLabSystemd257OfflineSeal is the oracle for sealing offline to a vTPM's
// SRK (issue 17): systemd 257's token plugin (Debian trixie's cryptsetup 2.7
// and systemd-cryptsetup, lab.TrixieTokenPlugin, run in the guest with their
// own loader) unseals the keyslot `confidisk image encrypt --tpm2-device-key`
// sealed to the guest's vTPM, from the SRK public key the host read from
// that vTPM's state, to the guest's PCR 7 and PCR 15 at zero. The same
// plugin refuses a volume sealed to another vTPM's SRK (confidisk tpm srk of
// another swtpm), and the guest's own volume once PCR 15 has changed. The
// plugin finds its TPM only through /sys/class/tpmrm, so this runs in a
// guest with a kernel TPM, not against a host swtpm.
func TestLabSystemd257OfflineSeal(t *testing.T) {
	p := trixieTokenPlugin(t)
	op := operatorBinary(t)
	dir := t.TempDir()
	ours, theirs := filepath.Join(dir, "ours.img"), filepath.Join(dir, "theirs.img")
	m := lab.TestMachine(t, lab.Disk{Path: ours, Size: 24 << 20}, lab.Disk{Path: theirs, Size: 24 << 20})
	files, err := p.GuestFiles("/trixie")
	if err != nil {
		t.Fatal(err)
	}
	bin := lab.ConfidiskBinary(t)
	files["/bin/confidisk"] = bin
	pcr7 := firmwarePCR7(t, m, map[string]string{"/bin/confidisk": bin})

	other := tpmtest.Start(t)
	otherSRK := filepath.Join(dir, "other.srk")
	run(t, op, "tpm", "srk", "--tpm", "swtpm:"+other.Path(), "--output", otherSRK)
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("operator passphrase"), 0o600); err != nil {
		t.Fatal(err)
	}
	for img, srk := range map[string]string{ours: hostSRK(t, m), theirs: otherSRK} {
		run(t, op, "image", "encrypt", img, "-q", "--size", "24M", "--key-file", key,
			"--tpm2-device-key", srk, "--tpm2-pcrs", "7:sha256="+pcr7)
	}

	cs := strings.Join(p.Command("/trixie"), " ")
	res := lab.RunScenario(t, lab.Scenario{
		Name: "systemd257-offline-seal", Machine: m, Files: files,
		Script: `
mkdir -p /run/cryptsetup
export SYSTEMD_LOG_LEVEL=debug
# attempt DEVICE NAME: one unlock through systemd's token plugin alone. Its
# debug output goes to /tmp/NAME.log and the console; what it says about the
# TPM, on one line, to stdout (the check's detail).
attempt() {
	` + cs + ` open --test-passphrase --token-only --token-type systemd-tpm2 --debug "$1" >/tmp/$2.log 2>&1
	_rc=$?
	sed "s/^/$2: /" /tmp/$2.log >/dev/console
	grep -v '^#' /tmp/$2.log | grep -iE 'fail|error|import|unseal|unlocked' | tail -n 4 | tr '\n' '|'
	grep -o 'Token handler systemd-tpm2.*loaded' /tmp/$2.log
	return $_rc
}
refused() { ! attempt "$@"; }
check versions sh -c '` + cs + ` --version && ls /sys/class/tpmrm'
check opens-ours attempt /dev/vda ours
check refuses-other-vtpm refused /dev/vdb theirs
printf '%032d' 0 > /k
check extend-pcr15 confidisk tpm measure-volume --key-file /k --name state --uuid 00000000-0000-0000-0000-000000000001
check refuses-pcr15-changed refused /dev/vda ours-pcr15
`,
		Expect: []string{"versions", "opens-ours", "refuses-other-vtpm", "extend-pcr15", "refuses-pcr15-changed"},
	})
	detail := map[string]string{}
	for _, r := range res.Results {
		detail[r.Name] = r.Detail
	}
	const plugin = "Token handler systemd-tpm2-1.0 systemd-v257"
	for _, c := range []struct {
		name      string
		want, not []string
	}{
		{"versions", []string{"cryptsetup 2.7.5", "tpmrm0"}, nil},
		// cryptsetup's own line: the plugin returned a passphrase that opens
		// the keyslot the token names.
		{"opens-ours", []string{plugin, "Key slot 1 unlocked."}, nil},
		// Refused by the TPM (TPM_RC_INTEGRITY) when it imports the seeded
		// blob under its own SRK: not for want of a device or a parse.
		{"refuses-other-vtpm", []string{plugin, "Esys_Import", "Failed to unseal secret using TPM2"}, []string{"unlocked"}},
		// Imported, then refused by the policy session (PCR 15).
		{"refuses-pcr15-changed", []string{plugin, "Failed to unseal secret using TPM2"}, []string{"Esys_Import", "unlocked"}},
	} {
		d := detail[c.name]
		for _, w := range c.want {
			if !strings.Contains(d, w) {
				t.Errorf("%s: %q lacks %q", c.name, d, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(d, n) {
				t.Errorf("%s: %q says %q", c.name, d, n)
			}
		}
	}
}
