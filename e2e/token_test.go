package e2e

import (
	"path/filepath"
	"testing"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
)

// systemdTPM2 are the programs and libraries systemd 252 needs in the guest
// to enroll and unlock systemd-tpm2 tokens: systemd-cryptenroll,
// cryptsetup with systemd's token plugin, and the tpm2-tss libraries that
// systemd loads with dlopen (so ldd does not list them).
func systemdTPM2(t *testing.T) []string {
	const lib = "/usr/lib/x86_64-linux-gnu"
	tools := []string{
		testutil.LookPath(t, "cryptsetup", "cryptsetup-bin"),
		testutil.LookPath(t, "systemd-cryptenroll", "systemd"),
		// cryptsetup looks for token plugins in /lib/…/cryptsetup (the guest
		// has no merged /usr: copy it there).
		"/lib/x86_64-linux-gnu/cryptsetup/libcryptsetup-token-systemd-tpm2.so",
	}
	for _, so := range []string{"libtss2-esys.so.0", "libtss2-rc.so.0", "libtss2-mu.so.0", "libtss2-sys.so.1", "libtss2-tctildr.so.0", "libtss2-tcti-device.so.0"} {
		tools = append(tools, filepath.Join(lib, so))
	}
	return tools
}

// TestLabTPM2Tokens proves the systemd-tpm2 token both ways in a guest with
// a vTPM: systemd's token plugin (through cryptsetup) unlocks a volume
// confidisk enrolled, and confidisk unlocks a volume systemd-cryptenroll
// enrolled.
func TestLabTPM2Tokens(t *testing.T) {
	bin := lab.ConfidiskBinary(t)
	const preamble = `
export DM_DISABLE_UDEV=1 LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu
printf 'passphrase' > /key
fast="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
check format confidisk luks format -q $fast --key-file /key /dev/vda
`
	// confidisk enrolls; systemd's plugin unlocks (systemd 252 needs the
	// legacy primary: it does not know tpm2_srk).
	lab.RunScenario(t, lab.Scenario{
		Name: "tpm2-token-systemd", Disks: []lab.Disk{{Size: 32 << 20}},
		Files: map[string]string{"/bin/confidisk": bin}, Tools: systemdTPM2(t),
		Script: preamble + `
check ours-enroll confidisk luks enroll-tpm2 --tpm2-legacy --tpm2-pcrs 7 --key-file /key /dev/vda
check plugin-opens-ours cryptsetup open --token-only /dev/vda a
check plugin-close cryptsetup close a
`,
		Expect: []string{"ours-enroll", "plugin-opens-ours", "plugin-close"},
	})
	// systemd-cryptenroll enrolls; confidisk unlocks.
	lab.RunScenario(t, lab.Scenario{
		Name: "tpm2-token-ours", Disks: []lab.Disk{{Size: 32 << 20}},
		Files: map[string]string{"/bin/confidisk": bin}, Tools: systemdTPM2(t),
		Script: preamble + `
check theirs-enroll env PASSWORD=passphrase systemd-cryptenroll --tpm2-device=/dev/tpmrm0 --tpm2-pcrs=7 /dev/vda
check ours-opens-theirs confidisk luks open --token-only /dev/vda b
check ours-close confidisk luks close b
`,
		Expect: []string{"theirs-enroll", "ours-opens-theirs", "ours-close"},
	})
}
