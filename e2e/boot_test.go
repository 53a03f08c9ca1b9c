package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/internal/testutil"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/lab/disk"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

// bootDisk is the lab's boot disk (package labdisk) with the binary that
// boots it and the operator's recovery key pair.
type bootDisk struct {
	*disk.Disk
	confidisk  string
	appendArgs []string
	// opKey and opPub are the operator's recovery private key (kept on the
	// host) and public key (in the initrd), PEM files.
	opKey, opPub string
}

// buildBootDisk makes the disk with a small ext4 root holding /etc/hello.
func buildBootDisk(t *testing.T) *bootDisk {
	t.Helper()
	bin := lab.ConfidiskBinary(t)
	testutil.LookPath(t, "mkfs.ext4", "e2fsprogs")
	dir := t.TempDir()
	d, err := disk.Build(dir, bin, map[string]string{"etc/hello": "hello from the verity root\n"})
	if err != nil {
		t.Fatal(err)
	}
	opKey, opPub, err := disk.OperatorKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	bd := &bootDisk{Disk: d, confidisk: bin, appendArgs: d.Cmdline(), opKey: opKey, opPub: opPub}
	return bd
}

// files are the initrd files of a boot of d: the binary and the operator's
// recovery public key where the boot looks for it.
func (d *bootDisk) files() map[string]string {
	return map[string]string{"/bin/confidisk": d.confidisk, provision.DefaultRecoveryKey: d.opPub}
}

// recoverPassphrase is what the operator does: `confidisk luks recover` with
// the operator key on a copy of the state partition. It returns the
// volume's recovery passphrase.
func (d *bootDisk) recoverPassphrase(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "state.img")
	if err := os.WriteFile(img, d.stateBytes(t), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(d.confidisk, "luks", "recover", img, "--operator-key", d.opKey).Output()
	if err != nil {
		t.Fatalf("confidisk luks recover: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// bootScript runs `confidisk boot` (stopping at $LAB_CUT when the lab cuts
// the power there) and then the checks.
func bootScript(checks string) string {
	return `
mkdir -p /run/log/systemd /etc
if [ -n "$LAB_CUT" ]; then # the power is cut at that point: POINT must reach the console
	confidisk boot --mkfs /usr/sbin/mkfs.ext4 --stop-at "$LAB_CUT"
	result boot fail "boot ended without reaching $LAB_CUT"
fi
` + bootRun + checks
}

// bootRun runs `confidisk boot` to its end (RESULT boot with its JSON
// result); /tmp/boot.log holds what it said.
const bootRun = `
if out=$(confidisk boot --json --mkfs /usr/sbin/mkfs.ext4 2>/tmp/boot.log); then
	result boot ok "$(echo "$out" | tr -d ' \n')"
else
	result boot fail "$(tail -3 /tmp/boot.log)"
fi
cat /tmp/boot.log
`

// refusedBootScript runs setup, then `confidisk boot`, which must refuse
// (RESULT refused: ok when it did, fail with accepted otherwise), then the
// checks; /tmp/boot.log holds what boot said.
func refusedBootScript(setup, accepted, checks string) string {
	return `
mkdir -p /run/log/systemd
` + setup + `
if confidisk boot --mkfs /usr/sbin/mkfs.ext4 2>/tmp/boot.log; then
	result refused fail "` + accepted + `"
else
	result refused ok "$(tail -4 /tmp/boot.log | tr '\n' ' ')"
fi
` + checks
}

// stateBytes reads the state partition of the disk image.
func (d *bootDisk) stateBytes(t *testing.T) []byte {
	b := make([]byte, d.State.Size)
	if _, err := d.StateDevice().ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func field(t *testing.T, res *lab.BootResult, name string) map[string]any {
	t.Helper()
	for _, r := range res.Results {
		if r.Name == name {
			var m map[string]any
			if err := json.Unmarshal([]byte(r.Detail), &m); err != nil {
				t.Fatalf("result %s is not JSON: %v: %s", name, err, r.Detail)
			}
			return m
		}
	}
	t.Fatalf("no result %s", name)
	return nil
}

// TestLabBoot is the story of a guest's state volume: first boot provisions
// it and writes a file; PCR 15 is what the host predicts from the volume key;
// the second boot (same vTPM) unlocks it and reads the file back; with PCR
// 15 already extended the key is refused and the volume left as it is.
func TestLabBoot(t *testing.T) {
	d := buildBootDisk(t)
	m := lab.TestMachine(t, lab.Disk{Path: d.Path})
	files := d.files()
	tools := []string{"mkfs.ext4"}

	res := lab.RunScenario(t, lab.Scenario{
		Name: "first-boot", Machine: m, Files: files, Tools: tools, Append: d.appendArgs,
		Script: bootScript(`
check root-readable sh -c 'test "$(cat /sysroot/etc/hello)" = "hello from the verity root"'
check write-file sh -c 'echo "written on first boot" > /sysroot/etc/from-boot-1 && sync'
check pcr15 confidisk tpm pcrs --pcrs 15 --json
check pcr7 sh -c 'confidisk tpm pcrs --pcrs 7 --json | tr -d " \n"'
check umount umount /sysroot
`),
		Expect: []string{"boot", "root-readable", "write-file", "pcr15", "pcr7", "umount"},
	})
	out := field(t, res, "boot")
	if out["FirstBoot"] != true {
		t.Errorf("first boot not reported as such: %v", out)
	}
	uuid, _ := out["VolumeUUID"].(string)
	// recovery-not-on-console: the console (the host's) holds no recovery
	// passphrase; the operator gets it with the operator key.
	start := time.Now()
	recovery := d.recoverPassphrase(t)
	console, _ := os.ReadFile(res.ConsoleLog)
	leaked := len(recovery) < 20 || bytes.Contains(console, []byte(recovery)) || bytes.Contains(console, []byte("RECOVERY KEY")) ||
		bytes.Contains(bytes.ReplaceAll(console, []byte("-"), nil), []byte(strings.ReplaceAll(recovery, "-", "")))
	fmt.Printf("LAB recovery-not-on-console %s %.1fs\n", map[bool]string{false: "PASS", true: "FAIL"}[leaked], time.Since(start).Seconds())
	if leaked {
		t.Errorf("the recovery passphrase (%d characters) is on the console, or no passphrase was recovered", len(recovery))
	}
	if !bytes.Contains(console, []byte("sealed to the operator recovery key")) {
		t.Error("first boot did not say where the recovery passphrase went")
	}
	var pcr7 []byte // what the firmware measured: the host can predict it
	for _, r := range res.Results {
		if m := regexp.MustCompile(`"7":"([0-9a-f]{64})"`).FindStringSubmatch(r.Detail); r.Name == "pcr7" && m != nil {
			pcr7, _ = hex.DecodeString(m[1])
		}
	}
	if pcr7 == nil {
		t.Fatal("no PCR 7 value from the guest")
	}

	// pcr15: the host predicts PCR 15 from the volume key (recovered with
	// the recovery key, as an operator would), the name and the UUID.
	t.Run("pcr15", func(t *testing.T) {
		start := time.Now()
		state := d.stateBytes(t)
		dev := bytes.NewReader(state)
		h, _, err := luks2.Read(dev)
		if err != nil {
			t.Fatal(err)
		}
		vk, _, err := h.Unlock(dev, []byte(recovery), 0)
		if err != nil {
			t.Fatalf("recovery key does not open the volume: %v", err)
		}
		mac := hmac.New(sha256.New, vk)
		mac.Write([]byte("cryptsetup:state:" + uuid))
		digest := mac.Sum(nil)
		ext := sha256.Sum256(append(make([]byte, 32), digest...))
		want := hex.EncodeToString(ext[:])
		var got string
		for _, r := range res.Results {
			if r.Name == "pcr15" {
				got = r.Detail
			}
		}
		ok := strings.Contains(got, want)
		fmt.Printf("LAB pcr15 %s %.1fs\n", map[bool]string{true: "PASS", false: "FAIL"}[ok], time.Since(start).Seconds())
		if !ok {
			t.Errorf("PCR 15 in the guest %s, predicted %s", got, want)
		}
		if out["KeyID"] != hex.EncodeToString(digest) {
			t.Errorf("boot's key id %v, want %x", out["KeyID"], digest)
		}
	})

	// creation-record: first boot left a vTPM quote over the volume key id in
	// the header; a verifier with the reference values accepts it.
	t.Run("creation-record", func(t *testing.T) {
		start := time.Now()
		h, _, err := luks2.Read(d.StateDevice())
		if err != nil {
			t.Fatal(err)
		}
		var raw json.RawMessage
		for _, tok := range h.Metadata.Tokens {
			var ct struct {
				Type   string          `json:"type"`
				Record json.RawMessage `json:"record"`
			}
			if json.Unmarshal(tok, &ct) == nil && ct.Type == "confidisk-creation" {
				raw = ct.Record
			}
		}
		if raw == nil {
			t.Fatal("no confidisk-creation token in the header")
		}
		rec, err := attest.ParseCreationRecord(raw)
		if err != nil {
			t.Fatal(err)
		}
		pol, err := attest.ParsePolicy([]byte(fmt.Sprintf(`{"version":1,"bank":"sha256","pcrs":{"7":[%q]},"volume_name":"state"}`, hex.EncodeToString(pcr7))))
		if err != nil {
			t.Fatal(err)
		}
		c, err := attest.VerifyCreation(context.Background(), rec, pol, time.Now())
		ok := err == nil && c.UUID == uuid && c.KeyID == out["KeyID"]
		fmt.Printf("LAB creation-record %s %.1fs\n", map[bool]string{true: "PASS", false: "FAIL"}[ok], time.Since(start).Seconds())
		if !ok {
			t.Fatalf("creation record: %+v %v, want volume %s key %v", c, err, uuid, out["KeyID"])
		}
	})

	res = lab.RunScenario(t, lab.Scenario{
		Name: "second-boot", Machine: m, Files: files, Tools: tools, Append: d.appendArgs,
		Script: bootScript(`
check file-survived sh -c 'test "$(cat /sysroot/etc/from-boot-1)" = "written on first boot"'
check umount umount /sysroot
`),
		Expect: []string{"boot", "file-survived"},
	})
	if out := field(t, res, "boot"); out["FirstBoot"] != false {
		t.Errorf("second boot reported as first: %v", out)
	}

	before := d.stateBytes(t)
	lab.RunScenario(t, lab.Scenario{
		Name: "policy-change", Machine: m, Files: files, Tools: tools, Append: d.appendArgs,
		Script: refusedBootScript(`
printf 'not the volume key' > /k
check extend-pcr15 confidisk tpm measure-volume --key-file /k --name other --uuid 00000000-0000-0000-0000-000000000000
`, "boot succeeded with a changed policy PCR", `
check clear-message grep -q 'unseal\|policy' /tmp/boot.log
check recovery-path grep -q 'luks recover' /tmp/boot.log
check state-not-mapped sh -c '! test -e /dev/mapper/state'
`),
		Expect: []string{"extend-pcr15", "refused", "clear-message", "recovery-path", "state-not-mapped"},
	})
	if !bytes.Equal(before, d.stateBytes(t)) {
		t.Error("the refused boot changed the state volume")
	}

	// swap-attack: the host replaces the state volume by one it formatted
	// itself, whose key it knows, with a systemd-tpm2 keyslot that this vTPM
	// unseals and a provisioning record that says "complete". (A real host
	// needs only the SRK's public key to make such a keyslot, with
	// TPM2_Import; here the test, as the host, uses the powered-off vTPM's
	// state directly, which gives the same blob.) The guest must refuse it.
	t.Run("host-forges-volume", func(t *testing.T) {
		sw := tpmtest.StartDir(t, m.TPMStateDir())
		tp := sw.Open()
		defer tp.Close()
		if _, err := d.ForgeState(tp, pcr7); err != nil {
			t.Fatal(err)
		}
	})
	forged := d.stateBytes(t)
	lab.RunScenario(t, lab.Scenario{
		Name: "swap-attack", Machine: m, Files: files, Tools: tools, Append: d.appendArgs,
		Script: refusedBootScript("", "the forged volume was accepted", `
check names-the-attack grep -q 'not the volume this guest created' /tmp/boot.log
check state-not-mapped sh -c '! test -e /dev/mapper/state'
`),
		Expect: []string{"refused", "names-the-attack", "state-not-mapped"},
	})
	if !bytes.Equal(forged, d.stateBytes(t)) {
		t.Error("the refused boot changed the forged volume")
	}
}

// TestLabPowerCut cuts the power at each durable step of first-boot
// provisioning and checks what the next boot does: before the key is sealed
// it starts provisioning over, after that it finishes it; either way it
// ends with a working, unlockable state volume.
func TestLabPowerCut(t *testing.T) {
	d := buildBootDisk(t)
	pristine, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		point    string
		restarts bool
	}{
		{"formatted", true}, {"initialised", true}, {"filesystem", true}, {"sealed", false}, {"fixated", false},
	} {
		t.Run(tc.point, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(img, pristine, 0o600); err != nil {
				t.Fatal(err)
			}
			m := lab.TestMachine(t, lab.Disk{Path: img})
			files := d.files()
			lab.RunScenario(t, lab.Scenario{
				Name: "power-cut-" + tc.point + "-boot-1", Machine: m, Files: files, Tools: []string{"mkfs.ext4"},
				Append: d.appendArgs, CutAt: tc.point, Script: bootScript(""),
			})
			res := lab.RunScenario(t, lab.Scenario{
				Name: "power-cut-" + tc.point, Machine: m, Files: files, Tools: []string{"mkfs.ext4"}, Append: d.appendArgs,
				Script: bootScript(`
check rw-root sh -c 'echo after-cut > /sysroot/etc/after-cut && sync && test "$(cat /sysroot/etc/hello)" = "hello from the verity root"'
`),
				Expect: []string{"boot", "rw-root"},
			})
			out := field(t, res, "boot")
			if tc.restarts {
				if out["RestartedFrom"] != tc.point || out["FirstBoot"] != true {
					t.Errorf("after a cut at %s: %v, want a restarted provisioning", tc.point, out)
				}
			} else if out["ResumedFrom"] != tc.point || out["FirstBoot"] != false {
				t.Errorf("after a cut at %s: %v, want a resumed provisioning", tc.point, out)
			}
		})
	}
}

// TestLabBootCopyMode: with confidisk.rw=copy the first boot copies the
// verity root into the state volume, which is the root from then on; a
// changed file survives the reboot. Then the host flips one ciphertext byte
// of the state partition: the next read of that data is an I/O error, never
// other data.
func TestLabBootCopyMode(t *testing.T) {
	d := buildBootDisk(t)
	m := lab.TestMachine(t, lab.Disk{Path: d.Path})
	files := d.files()
	tools := []string{"mkfs.ext4"}
	// A full tag initialisation, so that every sector of the volume reads
	// back before the tampering (checked) and only the flipped one fails after.
	args := append(append([]string{}, d.appendArgs...), "confidisk.rw=copy", "confidisk.integrity-init=full")
	lab.RunScenario(t, lab.Scenario{
		Name: "copy-mode-first-boot", Machine: m, Files: files, Tools: tools, Append: args,
		Script: bootScript(`
check copied sh -c 'test "$(cat /sysroot/etc/hello)" = "hello from the verity root"'
check change-copy sh -c 'echo changed > /sysroot/etc/hello && sync'
check big-file sh -c 'dd if=/dev/urandom of=/sysroot/big bs=1M count=40 2>/dev/null && sha256sum /sysroot/big > /sysroot/etc/big.sha && sync'
check umount umount /sysroot
`),
		Expect: []string{"boot", "copied", "change-copy", "big-file"},
	})
	lab.RunScenario(t, lab.Scenario{
		Name: "copy-mode-second-boot", Machine: m, Files: files, Tools: tools, Append: args,
		Script: bootScript(`
check change-survived sh -c 'test "$(cat /sysroot/etc/hello)" = changed'
check whole-volume-readable dd if=/dev/mapper/state of=/dev/null bs=1M
check umount umount /sysroot
`),
		Expect: []string{"boot", "change-survived", "whole-volume-readable"},
	})
	// Flip a byte 34 MiB into the encrypted data area (inside the 40 MiB file
	// or its integrity tags).
	dev := d.StateDevice()
	off := int64(16<<20 + 34<<20)
	b := make([]byte, 1)
	if _, err := dev.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := dev.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	lab.RunScenario(t, lab.Scenario{
		Name: "ciphertext-tamper", Machine: m, Files: files, Tools: tools, Append: args,
		// The flipped byte is somewhere in the volume's data or tags: reading
		// the whole mapped volume (which read back without error before) must
		// hit it as an I/O error; the file (which may or may not hold that
		// sector) reads back unchanged or fails, never with other data.
		Script: bootScript(`
out=$(dd if=/dev/mapper/state of=/dev/null bs=1M 2>&1); rc=$?
case "$rc:$out" in
  0:*) result tamper-detected fail "the whole volume read back without an error" ;;
  *"I/O error"*|*"Input/output error"*) result tamper-detected ok "$(echo "$out" | head -1)" ;;
  *) result tamper-detected fail "rc=$rc: $out" ;;
esac
if sum=$(sha256sum /sysroot/big 2>/dev/null); then
	[ "$sum" = "$(cat /sysroot/etc/big.sha)" ] && result file-unchanged-or-eio ok "unchanged" || result file-unchanged-or-eio fail "DIFFERENT DATA: $sum"
else
	result file-unchanged-or-eio ok "I/O error"
fi
check kernel-integrity-error sh -c 'dmesg | grep -i "integrity" | grep -iE "error|checksum" | tail -1'
`),
		Expect: []string{"boot", "tamper-detected", "file-unchanged-or-eio", "kernel-integrity-error"},
	})
}

// TestLabBootRefusesBadInput: no roothash= on the command line, or a state
// partition that holds something confidisk did not make (here an ext4 file
// system the host put there) → a refusal naming the problem, and the disk
// exactly as it was.
func TestLabBootRefusesBadInput(t *testing.T) {
	d := buildBootDisk(t)
	mkfs := testutil.LookPath(t, "mkfs.ext4", "e2fsprogs")
	state := filepath.Join(t.TempDir(), "state.img")
	if out, err := exec.Command(mkfs, "-q", "-F", state, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v\n%s", err, out)
	}
	fs, _ := os.ReadFile(state)
	if _, err := d.StateDevice().WriteAt(fs, 0); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(d.Path)
	lab.RunScenario(t, lab.Scenario{
		Name: "boot-bad-input", Disks: []lab.Disk{{Path: d.Path}},
		Files: d.files(), Tools: []string{"mkfs.ext4"}, Append: d.appendArgs,
		Script: `
mkdir -p /run/log/systemd
echo "console=ttyS0 confidisk.switch-root=0" > /tmp/no-roothash
if confidisk boot --cmdline /tmp/no-roothash 2>/tmp/a.log; then result no-roothash fail accepted; else result no-roothash ok "$(cat /tmp/a.log)"; fi
check names-missing-roothash grep -q 'no roothash=' /tmp/a.log
if confidisk boot --mkfs /usr/sbin/mkfs.ext4 2>/tmp/b.log; then result foreign-state fail accepted; else result foreign-state ok "$(tail -1 /tmp/b.log)"; fi
check names-what-it-found grep -q 'holds ext2/3/4' /tmp/b.log
check nothing-mapped sh -c 'ls /dev/mapper; grep confidisk /proc/mounts; tail -3 /tmp/b.log; ! test -e /dev/mapper/state && ! test -e /dev/mapper/root && ! grep -q /run/confidisk /proc/mounts'
echo "console=ttyS0 confidisk.switch-root=0 confidisk.device-timeout=2 confidisk.state=not-there $(grep -o 'roothash=[0-9a-f]*' /proc/cmdline)" > /tmp/no-disk
if confidisk boot --cmdline /tmp/no-disk 2>/tmp/c.log; then result no-disk fail accepted; else result no-disk ok "$(tail -1 /tmp/c.log)"; fi
check waits-bounded grep -q 'waited 2s for the root, root verity and state partitions' /tmp/c.log
`,
		Expect: []string{"no-roothash", "names-missing-roothash", "foreign-state", "names-what-it-found", "nothing-mapped", "no-disk", "waits-bounded"},
	})
	if after, _ := os.ReadFile(d.Path); !bytes.Equal(before, after) {
		t.Error("a refused boot changed the disk")
	}
}
