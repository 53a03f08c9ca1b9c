package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/enroll"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
)

// operatorFile is what the operator's state file system holds, in the
// guest's root through the overlay's upper directory.
const operatorFile = "provisioned by the operator before the first boot\n"

// hostAK is the fingerprint of the attestation key of machine m's vTPM, as
// the operator learns it before the instance boots (in a cloud, from the
// provider's API for the instance's vTPM).
func hostAK(t *testing.T, m *lab.Machine) string {
	t.Helper()
	var fp string
	withHostTPM(t, m, func(tc transport.TPM) error {
		ak, err := tpm.CreateAK(tc)
		if err == nil {
			fp = attest.AKFingerprint(ak.Public)
		}
		return err
	})
	return fp
}

// withHostTPM runs fn on the host's view of powered-off machine m's vTPM.
func withHostTPM(t *testing.T, m *lab.Machine, fn func(transport.TPM) error) {
	t.Helper()
	tc, stop, err := m.HostTPM()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	defer tc.Close()
	if err := fn(tc); err != nil {
		t.Fatal(err)
	}
}

// operatorStateFS makes the state file system the operator ships: ext4
// with overlay/upper/etc/provisioned.
func operatorStateFS(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tree, "overlay", "upper", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "overlay", "upper", "etc", "provisioned"), []byte(operatorFile), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "state-fs.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", tree, img, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img
}

// brokerPut are image encrypt's flags that store the key at b.
func brokerPut(b *labBroker) []string {
	return []string{"--broker-put", "--broker-url", b.URL, "--broker-ca", b.TLS.ServerCert, "--broker-cert", b.TLS.OperatorCert, "--broker-key", b.TLS.OperatorKey}
}

// hostSRK writes the public key of machine m's storage root key, as the
// operator gets it for an instance (confidisk tpm srk, or the provider's
// API), to a file.
func hostSRK(t *testing.T, m *lab.Machine) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "srk.tpm2b_public")
	withHostTPM(t, m, func(tc transport.TPM) error {
		srk, _, err := tpm.GetOrCreateSRK(tc)
		if err != nil {
			return err
		}
		return os.WriteFile(path, tpm.MarshalSRKPublic(&srk.Public), 0o600)
	})
	return path
}

// encryptState is the operator's `confidisk image encrypt` for d's state
// partition (with the operator's file system; how the key gets to the
// guest is in how), its output written into the partition. It returns the
// volume's UUID and key id.
func encryptState(t *testing.T, op string, d *bootDisk, how ...string) (uuid, keyID string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "state.img")
	args := append([]string{"image", "encrypt", img, "--size", strconv.FormatInt(d.State.Size, 10),
		"--data", operatorStateFS(t), "--recovery-key", d.opPub, "--json"}, how...)
	var res struct {
		UUID  string `json:"uuid"`
		KeyID string `json:"key_id"`
	}
	if err := json.Unmarshal([]byte(run(t, op, args...)), &res); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(operatorFile)) {
		t.Fatal("the pre-encrypted volume holds the operator's file in clear")
	}
	if _, err := d.StateDevice().WriteAt(raw, 0); err != nil {
		t.Fatal(err)
	}
	return res.UUID, res.KeyID
}

// TestLabPreEncrypted: the operator pre-encrypts instance A's state volume
// on the host and stores its key at the broker, bound to the lab's PCR 7
// and to A's attestation key. The volume given to instance B (another vTPM)
// is refused, and so is A when its evidence names another volume already
// opened; nothing is written. A's first boot gets the key, reads the
// operator's file and enrolls a vTPM keyslot; its second boot unlocks with
// the vTPM, without a release. Then a volume whose key the broker releases
// on every boot (preEncryptedBrokerAlways), and one sealed offline to
// instance C's SRK: instance D is refused, C boots it (preEncryptedSRK).
func TestLabPreEncrypted(t *testing.T) {
	d := buildBootDisk(t)
	op := operatorBinary(t)
	ma := lab.TestMachine(t, lab.Disk{Path: d.Path})
	ma.UserNet = true
	files := d.files()
	pcr7 := firmwarePCR7(t, ma, files)
	b := startLabBroker(t, pcr7)
	for k, v := range b.files {
		files[k] = v
	}
	uuid, keyID := encryptState(t, op, d, append(brokerPut(b), "--require-pcr", "7="+pcr7, "--require-ak", hostAK(t, ma))...)
	appendArgs := append(append([]string{}, d.appendArgs...), append(b.args, "confidisk.state-key=broker")...)
	tools := []string{"mkfs.ext4"}
	pristine := d.stateBytes(t)
	unchanged := func(name string) {
		if !bytes.Equal(d.stateBytes(t), pristine) {
			t.Errorf("%s: the refused boot changed the state partition", name)
		}
	}

	mb := lab.TestMachine(t, lab.Disk{Path: d.Path})
	mb.UserNet = true
	lab.RunScenario(t, lab.Scenario{
		Name: "pre-encrypted-swap", Machine: mb, Files: files, Tools: tools, Append: appendArgs,
		Script: refusedBootScript("", "instance B got the key of a volume made for instance A", `
check names-the-ak grep -q 'measurements_mismatch\|ak is' /tmp/boot.log
check state-not-mapped sh -c '! test -e /dev/mapper/state'
`),
		Expect: []string{"refused", "names-the-ak", "state-not-mapped"},
	})
	unchanged("pre-encrypted-swap")

	lab.RunScenario(t, lab.Scenario{
		Name: "pre-encrypted-other-volume-opened", Machine: ma, Files: files, Tools: tools, Append: appendArgs,
		Script: refusedBootScript(`
printf 0123456789abcdef0123456789abcdef > /k
confidisk tpm measure-volume --key-file /k --name state --uuid 00000000-0000-0000-0000-000000000001 >/dev/null`,
			"a guest that had opened another volume got the key", `
check names-the-volume grep -q 'evidence_volume_mismatch\|evidence is about volume' /tmp/boot.log
check state-not-mapped sh -c '! test -e /dev/mapper/state'
`),
		Expect: []string{"refused", "names-the-volume", "state-not-mapped"},
	})
	unchanged("pre-encrypted-other-volume-opened")

	res := lab.RunScenario(t, lab.Scenario{
		Name: "pre-encrypted-broker", Machine: ma, Files: files, Tools: tools, Append: appendArgs,
		Script: bootScript(`
check released grep -q 'volume key released by the broker' /tmp/boot.log
check operator-file sh -c 'test "$(cat /sysroot/etc/provisioned)" = "` + operatorFile[:len(operatorFile)-1] + `"'
check write sh -c 'echo written by A > /sysroot/etc/data && sync'
check umount umount /sysroot
`),
		Expect: []string{"boot", "released", "operator-file", "write"},
	})
	out := field(t, res, "boot")
	if out["VolumeUUID"] != uuid || out["KeyID"] != keyID || out["PreEncrypted"] != true || out["FirstBoot"] != true {
		t.Errorf("first boot reports %v; want the pre-encrypted volume %s, key id %s, first boot", out, uuid, keyID)
	}
	ctx := context.Background()
	if e, err := b.Store.Epoch(ctx, uuid); err != nil || e == 0 {
		t.Errorf("the broker's epoch of %s is %d (%v) after the first boot", uuid, e, err)
	}
	lab.RunScenario(t, lab.Scenario{
		Name: "pre-encrypted-broker-second-boot", Machine: ma, Files: files, Tools: tools, Append: appendArgs,
		Script: bootScript(`
check no-release sh -c '! grep -q "released by the broker" /tmp/boot.log'
check data sh -c 'test "$(cat /sysroot/etc/data)" = "written by A"'
`),
		Expect: []string{"boot", "no-release", "data"},
	})
	preEncryptedBrokerAlways(t, op, b, pcr7)
	preEncryptedSRK(t, op, pcr7)
}

// preEncryptedBrokerAlways: with confidisk.state-key=broker-always no vTPM
// keyslot is enrolled: both boots get the key from the broker, and the
// header never holds a systemd-tpm2 token.
func preEncryptedBrokerAlways(t *testing.T, op string, b *labBroker, pcr7 string) {
	d := buildBootDisk(t)
	m := lab.TestMachine(t, lab.Disk{Path: d.Path})
	m.UserNet = true
	encryptState(t, op, d, append(brokerPut(b), "--require-pcr", "7="+pcr7)...)
	files := d.files()
	for k, v := range b.files {
		files[k] = v
	}
	appendArgs := append(append([]string{}, d.appendArgs...), append(b.args, "confidisk.state-key=broker-always")...)
	for _, name := range []string{"pre-encrypted-broker-always", "pre-encrypted-broker-always-second-boot"} {
		lab.RunScenario(t, lab.Scenario{
			Name: name, Machine: m, Files: files, Tools: []string{"mkfs.ext4"}, Append: appendArgs,
			Script: bootScript(`
check released grep -q 'volume key released by the broker' /tmp/boot.log
check operator-file test -s /sysroot/etc/provisioned
`),
			Expect: []string{"boot", "released", "operator-file"},
		})
	}
	h, _, err := luks2.Read(d.StateDevice())
	if err != nil {
		t.Fatal(err)
	}
	if ids := enroll.TokenIDs(h); len(ids) != 0 {
		t.Errorf("with broker-always the header holds systemd-tpm2 tokens %v", ids)
	}
}

// preEncryptedSRK: a volume with a keyslot sealed offline to instance C's
// SRK (to the lab's PCR 7 and PCR 15 at zero). Instance D's vTPM cannot
// unseal it and nothing is written; C's first boot loses power after its
// first epoch; the next unseals it again, reads the operator's file, and
// leaves one systemd-tpm2 token: its own vTPM keyslot, the offline one
// removed.
func preEncryptedSRK(t *testing.T, op, pcr7 string) {
	d := buildBootDisk(t)
	mc := lab.TestMachine(t, lab.Disk{Path: d.Path})
	uuid, keyID := encryptState(t, op, d, "--tpm2-device-key", hostSRK(t, mc), "--tpm2-pcrs", "7:sha256="+pcr7)
	files := d.files()
	appendArgs := append(append([]string{}, d.appendArgs...), "confidisk.state-key=srk")
	tools := []string{"mkfs.ext4"}
	pristine := d.stateBytes(t)

	md := lab.TestMachine(t, lab.Disk{Path: d.Path})
	lab.RunScenario(t, lab.Scenario{
		Name: "pre-encrypted-srk-swap", Machine: md, Files: files, Tools: tools, Append: appendArgs,
		Script: refusedBootScript("", "instance D unsealed a keyslot sealed to instance C's vTPM", `
check names-the-vtpm grep -q 'sealed offline to another vTPM' /tmp/boot.log
check state-not-mapped sh -c '! test -e /dev/mapper/state'
`),
		Expect: []string{"refused", "names-the-vtpm", "state-not-mapped"},
	})
	if !bytes.Equal(d.stateBytes(t), pristine) {
		t.Error("pre-encrypted-srk-swap: the refused boot changed the state partition")
	}

	// The power goes during C's first boot, after its first epoch: the next
	// boot unseals the offline keyslot again and goes on.
	lab.RunScenario(t, lab.Scenario{
		Name: "pre-encrypted-power-cut", Machine: mc, Files: files, Tools: tools, Append: appendArgs,
		CutAt: "epoch-written", Script: bootScript(""),
	})
	res := lab.RunScenario(t, lab.Scenario{
		Name: "pre-encrypted-srk-seal", Machine: mc, Files: files, Tools: tools, Append: appendArgs,
		Script: bootScript(`
check sealed-offline grep -q 'key from the keyslot sealed offline to this vTPM' /tmp/boot.log
check operator-file sh -c 'test "$(cat /sysroot/etc/provisioned)" = "` + operatorFile[:len(operatorFile)-1] + `"'
check umount umount /sysroot
`),
		Expect: []string{"boot", "sealed-offline", "operator-file"},
	})
	if out := field(t, res, "boot"); out["VolumeUUID"] != uuid || out["KeyID"] != keyID || out["PreEncrypted"] != true {
		t.Errorf("first boot reports %v; want the pre-encrypted volume %s, key id %s", out, uuid, keyID)
	}
	h, _, err := luks2.Read(d.StateDevice())
	if err != nil {
		t.Fatal(err)
	}
	var seeds []bool
	for _, id := range enroll.TokenIDs(h) {
		tk, err := tpm.ParseToken(h.Metadata.Tokens[id])
		if err != nil {
			t.Fatal(err)
		}
		_, _, seed, err := tpm.SplitBlob(tk.Blob)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, seed != nil)
	}
	if len(seeds) != 1 || seeds[0] {
		t.Errorf("after the first boot the systemd-tpm2 tokens are offline seals %v; want one, the vTPM's own", seeds)
	}
}
