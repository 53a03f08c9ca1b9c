//go:build !confidisk_guest

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/dist"
	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/image"
	"github.com/confidisk/confidisk/internal/testutil"
)

// buildSysext runs `confidisk image sysext --json` with a stand-in binary
// and returns the report and the binary's bytes.
func buildSysext(t *testing.T, out string, args ...string) (map[string]any, []byte) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "confidisk-guest")
	content := bytes.Repeat([]byte("not really confidisk\n"), 5000)
	if err := os.WriteFile(bin, content, 0o755); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runIn(t, "", append([]string{"image", "sysext", "--json", "--confidisk", bin, "--seed", "sysext test"}, append(args, out)...)...)
	if err != nil {
		t.Fatalf("image sysext: %v\n%s", err, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	return rep, content
}

// sysextKeys makes a Secure Boot key directory (confidisk image keys) whose
// db key signs extensions in the tests.
func sysextKeys(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if _, stderr, err := runIn(t, "", "image", "keys", dir); err != nil {
		t.Fatalf("image keys: %v\n%s", err, stderr)
	}
	return dir
}

// reportSeed is the seed a --json report names.
func reportSeed(t *testing.T, rep map[string]any) image.Seed {
	t.Helper()
	var s image.Seed
	b, err := hex.DecodeString(fmt.Sprint(rep["seed"]))
	if err != nil || len(b) != len(s) {
		t.Fatalf("report's seed %v: %v", rep["seed"], err)
	}
	copy(s[:], b)
	return s
}

// TestImageSysextDissect: systemd-dissect, the oracle, recognises the image
// as an extension for the initrd with our release file, finds the usr and
// usr-verity partitions at the UUIDs the usr hash gives, and, when signed,
// the usr-verity-sig partition (libblkid's verity_hash_signature) at the
// UUID systemd-repart would give it; it reads back the binary and the unit;
// veritysetup verifies the usr partition against the hash partition and
// the reported hash; sfdisk shows the partition types.
func TestImageSysextDissect(t *testing.T) {
	dissect := testutil.LookPath(t, "systemd-dissect", "systemd-container")
	veritysetup := testutil.LookPath(t, "veritysetup", "cryptsetup-bin")
	sfdisk := testutil.LookPath(t, "sfdisk", "fdisk")
	if os.Geteuid() != 0 {
		testutil.Missing(t, "root (systemd-dissect attaches the image to a loop device)", "run the tests as root")
	}
	keys := sysextKeys(t)
	for _, tc := range []struct {
		name   string
		args   []string
		signed bool
	}{
		{"unsigned", nil, false},
		{"signed", []string{"--private-key", filepath.Join(keys, "db.key"), "--certificate", filepath.Join(keys, "db.crt")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "confidisk.raw")
			rep, bin := buildSysext(t, img, tc.args...)
			var stderr bytes.Buffer
			cmd := exec.Command(dissect, "--json=short", img)
			cmd.Stderr = &stderr
			raw, err := cmd.Output()
			if err != nil {
				t.Fatalf("systemd-dissect: %v: %s", err, stderr.Bytes())
			}
			var d struct {
				ExtensionRelease []string `json:"extensionRelease"`
				InitRD           bool     `json:"useInitRDExtension"`
				System           bool     `json:"useSystemExtension"`
				Mounts           []struct {
					Designator string `json:"designator"`
					UUID       string `json:"partition_uuid"`
					Label      string `json:"partition_label"`
					FSType     string `json:"fstype"`
				} `json:"mounts"`
			}
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatalf("systemd-dissect --json: %v: %s", err, raw)
			}
			hash := fmt.Sprint(rep["root_hash"])
			hb, _ := hex.DecodeString(hash)
			dataUUID, hashUUID := gpt.VerityUUIDs(hb)
			type mount struct{ Designator, UUID, Label, FSType string }
			var got []mount
			for _, m := range d.Mounts {
				got = append(got, mount{m.Designator, m.UUID, m.Label, m.FSType})
			}
			want := []mount{
				{"usr", dataUUID.String(), "usr-x86-64", "erofs"},
				{"usr-verity", hashUUID.String(), "usr-x86-64-verity", "DM_verity_hash"},
			}
			sigUUID := image.VeritySigUUID(reportSeed(t, rep))
			if tc.signed {
				want = append(want, mount{"usr-verity-sig", sigUUID.String(), "usr-x86-64-verity-sig", "verity_hash_signature"})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("systemd-dissect's partitions (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"ID=_any", "SYSEXT_SCOPE=initrd", "ARCHITECTURE=x86-64"}, d.ExtensionRelease); diff != "" {
				t.Errorf("extension-release (-want +got):\n%s", diff)
			}
			if !d.InitRD || d.System {
				t.Errorf("systemd-dissect: extension for the initrd %v, for the system %v: want only the initrd", d.InitRD, d.System)
			}
			for p, want := range map[string][]byte{"/usr/bin/confidisk": bin, "/usr/lib/systemd/system/confidisk-boot.service": dist.BootUnit} {
				out := filepath.Join(t.TempDir(), "copy")
				if b, err := exec.Command(dissect, "--copy-from", img, p, out).CombinedOutput(); err != nil {
					t.Fatalf("systemd-dissect --copy-from %s: %v: %s", p, err, b)
				}
				if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
					t.Errorf("%s in the image differs from what was given (%d bytes, want %d)", p, len(got), len(want))
				}
			}
			parts := rep["partitions"].([]any)
			files := make([]string, len(parts))
			for i, p := range parts {
				m := p.(map[string]any)
				files[i] = filepath.Join(t.TempDir(), fmt.Sprint(m["name"]))
				extract(t, img, files[i], int64(m["start"].(float64)), int64(m["size"].(float64)))
			}
			if b, err := exec.Command(veritysetup, "verify", files[0], files[1], hash).CombinedOutput(); err != nil {
				t.Errorf("veritysetup verify: %v: %s", err, b)
			}
			dump, err := exec.Command(sfdisk, "--dump", img).Output()
			if err != nil {
				t.Fatalf("sfdisk --dump: %v", err)
			}
			var types []string
			for _, line := range strings.Split(string(dump), "\n") {
				if _, attrs, ok := strings.Cut(line, " : "); ok {
					for _, f := range strings.Split(attrs, ", ") {
						if k, v, _ := strings.Cut(f, "="); k == "type" || k == "name" || k == "uuid" {
							types = append(types, k+"="+v)
						}
					}
				}
			}
			wantTypes := []string{
				"type=8484680C-9521-48C6-9C11-B0720656F69E", "uuid=" + strings.ToUpper(dataUUID.String()), `name="usr-x86-64"`,
				"type=77FF5F63-E7B6-4633-ACF4-1565B864C0E6", "uuid=" + strings.ToUpper(hashUUID.String()), `name="usr-x86-64-verity"`,
			}
			if tc.signed {
				wantTypes = append(wantTypes, "type=E7BB33FB-06CF-4E81-8273-E543B413E2E2", "uuid="+strings.ToUpper(sigUUID.String()), `name="usr-x86-64-verity-sig"`)
			}
			if diff := cmp.Diff(wantTypes, types); diff != "" {
				t.Errorf("sfdisk --dump (-want +got):\n%s", diff)
			}
		})
	}
}

// TestImageSysextSignature: the usr-verity-sig partition holds the usr
// hash, the db certificate's fingerprint and a PKCS#7 signature OpenSSL
// verifies against the db certificate the way systemd's userspace check
// does (smime -nointern -noverify, validate_signature_userspace) and as a
// full CMS check; it refuses a tampered root hash and a certificate the
// guest would not have been given (KEK's).
func TestImageSysextSignature(t *testing.T) {
	openssl := testutil.LookPath(t, "openssl", "openssl")
	testutil.LookPath(t, "mkfs.erofs", "erofs-utils")
	keys := sysextKeys(t)
	img := filepath.Join(t.TempDir(), "confidisk.raw")
	rep, _ := buildSysext(t, img, "--private-key", filepath.Join(keys, "db.key"), "--certificate", filepath.Join(keys, "db.crt"))
	parts := rep["partitions"].([]any)
	if len(parts) != 3 {
		t.Fatalf("%d partitions, want usr, usr-verity and usr-verity-sig", len(parts))
	}
	m := parts[2].(map[string]any)
	if m["name"] != "usr-x86-64-verity-sig" || m["size"].(float64) != image.VeritySigSize {
		t.Fatalf("third partition %v, want usr-x86-64-verity-sig of %d bytes", m, image.VeritySigSize)
	}
	b := readFile(t, img)
	start := int64(m["start"].(float64))
	v, root, err := image.ParseVeritySig(b[start : start+image.VeritySigSize])
	if err != nil {
		t.Fatal(err)
	}
	hash := fmt.Sprint(rep["root_hash"])
	certPEM := readFile(t, filepath.Join(keys, "db.crt"))
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatal("db.crt: no PEM block")
	}
	fp := sha256.Sum256(blk.Bytes)
	if diff := cmp.Diff([]string{hash, hash, hex.EncodeToString(fp[:])}, []string{v.RootHash, hex.EncodeToString(root), v.CertificateFingerprint}); diff != "" {
		t.Errorf("root hash, parsed root hash, certificate fingerprint (-want +got):\n%s", diff)
	}
	dir := t.TempDir()
	sig := filepath.Join(dir, "sig.p7s")
	if err := os.WriteFile(sig, v.Signature, 0o600); err != nil {
		t.Fatal(err)
	}
	tampered := []byte(hash)
	tampered[0] ^= 1 // '4' <-> '5', 'a' <-> '`': another string either way
	for _, tc := range []struct {
		name    string
		content []byte
		args    []string
		ok      bool
	}{
		{"systemd userspace, db", []byte(hash), []string{"smime", "-certfile", filepath.Join(keys, "db.crt"), "-nointern", "-noverify"}, true},
		{"cms, db", []byte(hash), []string{"cms", "-CAfile", filepath.Join(keys, "db.crt"), "-purpose", "any"}, true},
		{"systemd userspace, tampered root hash", tampered, []string{"smime", "-certfile", filepath.Join(keys, "db.crt"), "-nointern", "-noverify"}, false},
		{"cms, tampered root hash", tampered, []string{"cms", "-CAfile", filepath.Join(keys, "db.crt"), "-purpose", "any"}, false},
		{"systemd userspace, KEK", []byte(hash), []string{"smime", "-certfile", filepath.Join(keys, "KEK.crt"), "-nointern", "-noverify"}, false},
		{"cms, KEK", []byte(hash), []string{"cms", "-CAfile", filepath.Join(keys, "KEK.crt"), "-purpose", "any"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			content := filepath.Join(t.TempDir(), "roothash")
			if err := os.WriteFile(content, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			args := append([]string{tc.args[0], "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", content, "-out", os.DevNull}, tc.args[1:]...)
			out, err := exec.Command(openssl, args...).CombinedOutput()
			if tc.ok && err != nil {
				t.Errorf("openssl %s refused the signature: %v: %s", strings.Join(args, " "), err, out)
			}
			if !tc.ok && err == nil {
				t.Errorf("openssl %s accepted the signature", strings.Join(args, " "))
			}
		})
	}
}

// extract copies size bytes at off of img into out.
func extract(t *testing.T, img, out string, off, size int64) {
	t.Helper()
	b := readFile(t, img)
	if err := os.WriteFile(out, b[off:off+size], 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestImageSysextReproducible: the same inputs and seed give the same bytes.
func TestImageSysextReproducible(t *testing.T) {
	testutil.LookPath(t, "mkfs.erofs", "erofs-utils")
	keys := sysextKeys(t)
	for _, args := range [][]string{nil, {"--private-key", filepath.Join(keys, "db.key"), "--certificate", filepath.Join(keys, "db.crt")}} {
		a, b := filepath.Join(t.TempDir(), "confidisk.raw"), filepath.Join(t.TempDir(), "confidisk.raw")
		buildSysext(t, a, args...)
		buildSysext(t, b, args...)
		if !bytes.Equal(readFile(t, a), readFile(t, b)) {
			t.Errorf("two builds with the same seed and %q differ", args)
		}
	}
}

// TestImageSysextInitrdRelease: an extension that matches the target
// initrd's release file is built.
func TestImageSysextInitrdRelease(t *testing.T) {
	testutil.LookPath(t, "mkfs.erofs", "erofs-utils")
	rel := filepath.Join(t.TempDir(), "initrd-release")
	if err := os.WriteFile(rel, []byte("ID=debian\nVERSION_ID=\"13\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "confidisk.raw")
	rep, _ := buildSysext(t, img, "--os-id", "debian", "--os-version-id", "13", "--initrd-release", rel)
	if rep["root_hash"] == nil || !pathExists(img) {
		t.Fatalf("no image: %v", rep)
	}
}

// TestImageSysextRefuses: bad input is refused before anything is written.
func TestImageSysextRefuses(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "old.raw")
	if err := os.WriteFile(existing, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := sysextKeys(t)
	dbKey, dbCert, kekCert := filepath.Join(keys, "db.key"), filepath.Join(keys, "db.crt"), filepath.Join(keys, "KEK.crt")
	notPEM := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notPEM, []byte("not a PEM file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "confidisk-guest")
	if err := os.WriteFile(bin, []byte("not really confidisk\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	debian := filepath.Join(dir, "initrd-release")
	if err := os.WriteFile(debian, []byte("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\nVERSION_ID=\"13\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	signing := func(key, cert string) []string {
		return []string{"--confidisk", bin, "--private-key", key, "--certificate", cert}
	}
	for _, tc := range []struct {
		name string
		args []string
		out  string
		says string
	}{
		{"not .raw", nil, filepath.Join(dir, "confidisk.img"), "must be called NAME.raw"},
		{"exists", nil, existing, "exists (use --force"},
		{"bad name", nil, filepath.Join(dir, ".hidden.raw"), `extension name ".hidden"`},
		{"os id without version", []string{"--os-id", "fedora"}, filepath.Join(dir, "a.raw"), "a VERSION_ID= is needed"},
		{"no binary", []string{"--confidisk", filepath.Join(dir, "missing")}, filepath.Join(dir, "b.raw"), "confidisk binary"},
		{"key without certificate", []string{"--confidisk", bin, "--private-key", dbKey}, filepath.Join(dir, "c.raw"), "--private-key and --certificate go together"},
		{"certificate without key", []string{"--confidisk", bin, "--certificate", dbCert}, filepath.Join(dir, "d.raw"), "--private-key and --certificate go together"},
		{"certificate of another key", signing(dbKey, kekCert), filepath.Join(dir, "e.raw"), kekCert + " does not match " + dbKey},
		{"key not PEM", signing(notPEM, dbCert), filepath.Join(dir, "f.raw"), notPEM + ": no PEM block"},
		{"certificate not PEM", signing(dbKey, notPEM), filepath.Join(dir, "g.raw"), notPEM + ": no PEM block"},
		{"missing key", signing(filepath.Join(dir, "missing.key"), dbCert), filepath.Join(dir, "h.raw"), "missing.key: no such file"},
		{"version with _any", []string{"--confidisk", bin, "--os-version-id", "42"}, filepath.Join(dir, "i.raw"), "ignores the version"},
		{"id not os-release", []string{"--confidisk", bin, "--os-id", "Debian", "--os-version-id", "13"}, filepath.Join(dir, "j.raw"), `extension OS ID "Debian"`},
		{"initrd of another OS", []string{"--confidisk", bin, "--os-id", "fedora", "--os-version-id", "42", "--initrd-release", debian}, filepath.Join(dir, "k.raw"), "but the initrd is ID=debian"},
		{"initrd of another version", []string{"--confidisk", bin, "--os-id", "debian", "--os-version-id", "12", "--initrd-release", debian}, filepath.Join(dir, "l.raw"), "the initrd is VERSION_ID=13"},
		{"initrd release missing", []string{"--confidisk", bin, "--os-id", "debian", "--os-version-id", "13", "--initrd-release", filepath.Join(dir, "missing")}, filepath.Join(dir, "m.raw"), "--initrd-release"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runIn(t, "", append(append([]string{"image", "sysext"}, tc.args...), tc.out)...)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("image sysext %s: %v, want an error saying %q", tc.out, err, tc.says)
			}
			if tc.out != existing && pathExists(tc.out) {
				t.Errorf("%s was written", tc.out)
			}
		})
	}
	if b := readFile(t, existing); string(b) != "keep" {
		t.Error("the existing file changed")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("%s was left behind: refused input must be refused before anything is written", e.Name())
		}
	}
}
