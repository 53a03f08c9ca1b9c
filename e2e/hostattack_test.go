package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/recovery"
	"github.com/confidisk/confidisk/tpm"
)

// editHeader rewrites the state volume's LUKS2 header as the host can: any
// field, with valid checksums, keyslots untouched.
func editHeader(t *testing.T, d *bootDisk, edit func(h *luks2.Header)) {
	t.Helper()
	dev := d.StateDevice()
	h, _, err := luks2.Read(dev)
	if err != nil {
		t.Fatal(err)
	}
	edit(h)
	if err := h.Write(dev); err != nil {
		t.Fatal(err)
	}
}

// hostCounter reads the vTPM's freshness counter from the host.
func hostCounter(t *testing.T, m *lab.Machine) uint64 {
	t.Helper()
	tp, stop, err := m.HostTPM()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c, err := tpm.ReadCounter(tp, provision.FreshnessCounter)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// plaintextExt4 writes an ext4 file system the host made (holding
// /host-was-here) at byte off of the state partition.
func plaintextExt4(t *testing.T, d *bootDisk, off int64) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "plain.img")
	tree := t.TempDir()
	os.WriteFile(filepath.Join(tree, "host-was-here"), []byte("the guest would write here in clear\n"), 0o644)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", tree, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.StateDevice().WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestLabHostRewrites: after boot 1 provisions the state volume (with a
// broker as second anchor), the host rewrites what it owns — the header's
// segment, its integrity object, the provisioning step, the command line —
// and every next boot refuses before it maps or writes anything: the disk
// (header included), the vTPM counter and the broker's epoch are unchanged.
// The untouched volume then still boots. creation-uuid-squat is the host
// registering a copied creation record under another UUID.
func TestLabHostRewrites(t *testing.T) {
	ctx := context.Background()
	d := buildBootDisk(t)
	m := lab.TestMachine(t, lab.Disk{Path: d.Path})
	m.UserNet = true
	files := d.files()
	tools := []string{"mkfs.ext4"}
	b := startLabBroker(t, firmwarePCR7(t, m, files))
	maps.Copy(files, b.files)
	args := append(slices.Clone(d.appendArgs), b.args...)
	res := lab.RunScenario(t, lab.Scenario{
		Name: "host-rewrites-boot-1", Machine: m, Files: files, Tools: tools, Append: args,
		Script: bootScript(`
check write sh -c 'echo written on boot 1 > /sysroot/etc/data && sync'
check umount umount /sysroot
`),
		Expect: []string{"boot", "write"},
	})
	out := field(t, res, "boot")
	uuid, _ := out["VolumeUUID"].(string)
	keyID, _ := out["KeyID"].(string)
	pristine, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	counter := hostCounter(t, m)
	epoch, err := b.Store.Epoch(ctx, uuid)
	if err != nil || epoch == 0 {
		t.Fatalf("the broker's epoch after boot 1: %d, %v", epoch, err)
	}
	h, _, err := luks2.Read(d.StateDevice())
	if err != nil {
		t.Fatal(err)
	}
	segOff := int64(h.Metadata.Segments[0].Offset)
	checkEscrow(t, ctx, b, d, uuid)

	attack := func(name string, edit func(), bootArgs []string, says string) {
		t.Helper()
		if err := os.WriteFile(d.Path, pristine, 0o600); err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit()
		}
		before, _ := os.ReadFile(d.Path)
		lab.RunScenario(t, lab.Scenario{
			Name: name, Machine: m, Files: files, Tools: tools, Append: bootArgs,
			Script: refusedBootScript("", "the host's change was accepted", `
check names-it grep -q '`+says+`' /tmp/boot.log
check state-not-mapped sh -c '! test -e /dev/mapper/state && ! test -e /dev/mapper/state_dif'
`),
			Expect: []string{"refused", "names-it", "state-not-mapped"},
		})
		if after, _ := os.ReadFile(d.Path); !bytes.Equal(before, after) {
			t.Errorf("%s: the refused boot wrote to the disk", name)
		}
		if c := hostCounter(t, m); c != counter {
			t.Errorf("%s: the vTPM counter moved from %d to %d", name, counter, c)
		}
		if e, err := b.Store.Epoch(ctx, uuid); err != nil || e != epoch {
			t.Errorf("%s: the broker's epoch moved from %d to %d (%v)", name, epoch, e, err)
		}
	}
	attack("header-cipher-null", func() {
		editHeader(t, d, func(h *luks2.Header) {
			h.Metadata.Segments[0].Encryption, h.Metadata.Segments[0].Integrity = "cipher_null-ecb", nil
		})
		plaintextExt4(t, d, segOff)
	}, args, `below the security floor: segment 0 encryption is .cipher_null-ecb.`)
	attack("header-integrity-stripped", func() {
		editHeader(t, d, func(h *luks2.Header) { h.Metadata.Segments[0].Integrity = nil })
	}, args, `below the security floor: segment 0 has no integrity protection`)
	attack("header-offset-shift", func() {
		editHeader(t, d, func(h *luks2.Header) { h.Metadata.Segments[0].Offset += 1 << 20 })
	}, args, fmt.Sprintf(`segment 0 offset is .%d., provisioned .%d.`, segOff+1<<20, segOff))
	attack("provision-token-rewind", func() {
		editHeader(t, d, func(h *luks2.Header) {
			for id, raw := range h.Metadata.Tokens {
				var tok map[string]any
				if json.Unmarshal(raw, &tok) == nil && tok["type"] == provision.TokenType {
					tok["step"] = string(provision.StepFormatted)
					h.Metadata.Tokens[id], _ = json.Marshal(tok)
				}
			}
		})
	}, args, `provisioning record was set back`)
	attack("cmdline-anchor-downgrade", nil, append(slices.Clone(d.appendArgs), "confidisk.rollback-anchor=tpm"),
		`provisioned with roll-back anchor tpm+broker, this boot asks for tpm`)

	t.Run("creation-uuid-squat", func(t *testing.T) {
		start := time.Now()
		ok := creationSquatRefused(t, ctx, b, d, uuid, keyID)
		fmt.Printf("LAB creation-uuid-squat %s %.1fs\n", map[bool]string{true: "PASS", false: "FAIL"}[ok], time.Since(start).Seconds())
	})

	// The honest volume, untouched, still boots after all of it.
	if err := os.WriteFile(d.Path, pristine, 0o600); err != nil {
		t.Fatal(err)
	}
	lab.RunScenario(t, lab.Scenario{
		Name: "host-rewrites-honest-boot", Machine: m, Files: files, Tools: tools, Append: args,
		Script: bootScript(`check data sh -c 'test "$(cat /sysroot/etc/data)" = "written on boot 1"'`),
		Expect: []string{"boot", "data"},
	})
}

// creationSquatRefused: the host copies the creation record out of the
// header (it is in clear in a token), names another UUID in its log, and
// registers it with the broker, which must refuse; nothing is registered
// under that UUID.
func creationSquatRefused(t *testing.T, ctx context.Context, b *labBroker, d *bootDisk, uuid, keyID string) bool {
	h, _, err := luks2.Read(d.StateDevice())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := provision.CreationRecord(h)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := attest.ParseCreationRecord(raw)
	if err != nil {
		t.Fatal(err)
	}
	const squat = "5bad5bad-0000-4000-8000-5bad5bad5bad"
	rec.MeasureLog = bytes.ReplaceAll(rec.MeasureLog, []byte(uuid), []byte(squat))
	if !bytes.Contains(rec.MeasureLog, []byte(squat)) {
		t.Fatal("the creation record's log does not name the volume")
	}
	edited, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tc, err := client.TLSConfig(b.TLS.ServerCert, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(b.URL, client.Options{TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ok := true
	for name, r := range map[string]json.RawMessage{"edited record": edited, "unedited record": raw} {
		_, err := c.Register(ctx, api.RegisterRequest{CreationRecord: r, Volume: api.VolumeSpec{UUID: squat, KeyID: keyID}})
		if err == nil || !strings.Contains(err.Error(), "evidence") {
			t.Errorf("%s registered under %s: %v", name, squat, err)
			ok = false
		}
	}
	if _, err := b.Store.Volume(ctx, squat); err == nil {
		t.Errorf("the broker holds a volume %s", squat)
		ok = false
	}
	return ok
}

// checkEscrow: first boot escrowed the recovery token with the broker, and
// it unwraps (operator key) to the passphrase luks recover gets from the
// header.
func checkEscrow(t *testing.T, ctx context.Context, b *labBroker, d *bootDisk, uuid string) {
	t.Helper()
	v, err := b.Store.Volume(ctx, uuid)
	if err != nil || len(v.Recovery) == 0 {
		t.Fatalf("the broker holds no escrowed recovery token for %s: %v", uuid, err)
	}
	tok, err := recovery.ParseToken(v.Recovery)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := os.ReadFile(d.opKey)
	priv, err := recovery.ParsePrivateKey(kb)
	if err != nil {
		t.Fatal(err)
	}
	pass, err := tok.Unwrap(priv, uuid)
	if err != nil || string(pass) != d.recoverPassphrase(t) {
		t.Errorf("the escrowed token unwraps to another passphrase than the header's (%v)", err)
	}
}
