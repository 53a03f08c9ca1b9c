package e2e

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/tpm"
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

// TestLabTPM2SignedTokens proves signed PCR policies (TPM2_PolicyAuthorize;
// token fields tpm2_pubkey, tpm2_pubkey_pcrs) both ways with systemd 252:
// systemd's token plugin unlocks confidisk's signed enrollment with the
// signature document confidisk wrote (systemd-measure's format, at
// /run/systemd/tpm2-pcr-signature.json where systemd looks), and confidisk
// unlocks systemd-cryptenroll --tpm2-public-key's with the same document;
// a signature over another PCR 11 value is refused by both. The guest boots
// without a stub, so PCR 11 is zero: the document signs that value.
func TestLabTPM2SignedTokens(t *testing.T) {
	bin := lab.ConfidiskBinary(t)
	dir := t.TempDir()
	key := pcrKey(t, dir, "pcr.pem")
	k, err := loadPCRKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "pub.pem")
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
	doc := func(name string, v byte) string {
		d, err := tpm.SignPCRValues(k, tpm.SHA256, 11, [][]byte{bytes.Repeat([]byte{v}, 32)}, 0)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, d, 0o644)
		return p
	}
	files := map[string]string{"/bin/confidisk": bin, "/pub.pem": pub, "/sig.json": doc("sig.json", 0), "/other.json": doc("other.json", 1)}
	const preamble = `
export DM_DISABLE_UDEV=1 LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu
printf 'passphrase' > /key
fast="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
mkdir -p /run/systemd
check format confidisk luks format -q $fast --key-file /key /dev/vda
`
	lab.RunScenario(t, lab.Scenario{
		Name: "tpm2-signed-token-systemd", Disks: []lab.Disk{{Size: 32 << 20}}, Files: files, Tools: systemdTPM2(t),
		Script: preamble + `
check ours-enroll confidisk luks enroll-tpm2 --tpm2-legacy --tpm2-pcrs 7 --tpm2-public-key /pub.pem --key-file /key /dev/vda
cp /other.json /run/systemd/tpm2-pcr-signature.json
check plugin-refuses-other sh -c '! cryptsetup open --token-only /dev/vda x'
cp /sig.json /run/systemd/tpm2-pcr-signature.json
check plugin-opens-ours cryptsetup open --token-only /dev/vda a
check plugin-close cryptsetup close a
`,
		Expect: []string{"ours-enroll", "plugin-refuses-other", "plugin-opens-ours", "plugin-close"},
	})
	lab.RunScenario(t, lab.Scenario{
		Name: "tpm2-signed-token-ours", Disks: []lab.Disk{{Size: 32 << 20}}, Files: files, Tools: systemdTPM2(t),
		Script: preamble + `
check theirs-enroll env PASSWORD=passphrase systemd-cryptenroll --tpm2-device=/dev/tpmrm0 --tpm2-pcrs=7 --tpm2-public-key=/pub.pem --tpm2-public-key-pcrs=11 /dev/vda
check ours-refuses-other sh -c 'confidisk luks open --token-only --tpm2-signature /other.json /dev/vda x 2>&1 | grep -q "no valid signature"'
check ours-opens-theirs confidisk luks open --token-only --tpm2-signature /sig.json /dev/vda b
check ours-close confidisk luks close b
`,
		Expect: []string{"theirs-enroll", "ours-refuses-other", "ours-opens-theirs", "ours-close"},
	})
}

// loadPCRKey reads the RSA key pcrKey wrote.
func loadPCRKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no pem block")
	}
	return x509.ParsePKCS1PrivateKey(blk.Bytes)
}
