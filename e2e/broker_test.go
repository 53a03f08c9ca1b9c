package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/lab"
)

// labBroker is a broker on the host's loopback, reached by guests at
// lab.HostIP through QEMU's user network, verifying their evidence with the
// real attest.Validator.
type labBroker struct {
	*brokertest.Local
	args  []string          // kernel parameters that point the boot flow at it
	files map[string]string // initrd files it needs (its certificate)
}

// firmwarePCR7 boots m once to read PCR 7 (what the lab's firmware
// measured), the value a broker policy pins.
func firmwarePCR7(t *testing.T, m *lab.Machine, files map[string]string) string {
	t.Helper()
	res := lab.RunScenario(t, lab.Scenario{
		Name: "broker-firmware-pcrs", Machine: m, Files: files,
		Script: `check pcr7 sh -c 'confidisk tpm pcrs --pcrs 7 --json | tr -d " \n"'`,
		Expect: []string{"pcr7"},
	})
	for _, r := range res.Results {
		if mm := regexp.MustCompile(`"7":"([0-9a-f]{64})"`).FindStringSubmatch(r.Detail); r.Name == "pcr7" && mm != nil {
			return mm[1]
		}
	}
	t.Fatal("no PCR 7 value from the guest")
	return ""
}

// startLabBroker starts a broker whose policy pins PCR 7 to pcr7.
func startLabBroker(t *testing.T, pcr7 string) *labBroker {
	t.Helper()
	pol, err := attest.ParsePolicy([]byte(`{"version":1,"pcrs":{"7":["` + pcr7 + `"]},"volume_name":"state"}`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.NewValidator(pol, attest.ValidatorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := brokertest.StartLocal(t.TempDir(), []string{lab.HostIP}, func(c *broker.Config) { c.Verifier = v })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("broker: %v", err)
		}
	})
	port := l.Addr.String()[strings.LastIndex(l.Addr.String(), ":")+1:]
	return &labBroker{Local: l,
		args:  []string{"confidisk.broker=https://" + lab.HostIP + ":" + port},
		files: map[string]string{"/etc/confidisk/broker.pem": l.TLS.ServerCert},
	}
}

// copyTree copies the regular files of the directory src into dst (created).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	os.RemoveAll(dst)
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// TestLabRollbackTPMAndDisk: the host restores the disk AND the vTPM state
// to what they were after boot 1. The vTPM counter agrees with the old
// copy; only the broker's epoch (the second anchor, which the guest reaches
// over the network and the host cannot roll back) shows it is old. On the
// way it checks the guest side of the broker: first boot registers the
// volume from its creation record, every boot advances the broker's epoch
// with evidence its policy accepts.
func TestLabRollbackTPMAndDisk(t *testing.T) {
	d := buildBootDisk(t)
	m := lab.TestMachine(t, lab.Disk{Path: d.Path})
	m.UserNet = true
	files := d.files()
	tools := []string{"mkfs.ext4"}
	b := startLabBroker(t, firmwarePCR7(t, m, files))
	for k, v := range b.files {
		files[k] = v
	}
	appendArgs := append(append([]string{}, d.appendArgs...), b.args...)
	ctx := context.Background()
	write := func(name, value string) uint64 {
		res := lab.RunScenario(t, lab.Scenario{
			Name: name, Machine: m, Files: files, Tools: tools, Append: appendArgs,
			Script: bootScript(`
check write sh -c 'echo ` + value + ` > /sysroot/etc/data && sync'
check umount umount /sysroot
`),
			Expect: []string{"boot", "write"},
		})
		out := field(t, res, "boot")
		uuid, _ := out["VolumeUUID"].(string)
		fr, _ := out["Freshness"].(map[string]any)
		epoch, _ := fr["Epoch"].(float64)
		got, err := b.Store.Epoch(ctx, uuid)
		if err != nil || got != uint64(epoch) || got == 0 {
			t.Fatalf("%s: the broker's epoch of %s is %d (%v), the guest's %v", name, uuid, got, err, epoch)
		}
		v, err := b.Store.Volume(ctx, uuid)
		// The creation record carries the firmware's event log (SeaBIOS
		// under QEMU), replayed by the broker against the quoted PCRs 0-7
		// (the guest quotes PCRs 0-15).
		if err != nil || v.KeyID != out["KeyID"] || !strings.Contains(string(v.Measurements), `"firmware_log":"verified:0,1,2,3,4,5,6,7"`) {
			t.Fatalf("%s: registered volume %+v, %v; want key id %v and measurements with the firmware log verified", name, v, err, out["KeyID"])
		}
		return got
	}
	first := write("rollback-tpm-and-disk-boot-1", "A")
	saved := t.TempDir()
	img, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	copyTree(t, m.TPMStateDir(), filepath.Join(saved, "tpm"))
	if second := write("rollback-tpm-and-disk-boot-2", "B"); second != first+1 {
		t.Fatalf("second boot moved the broker's epoch from %d to %d, want %d", first, second, first+1)
	}
	if err := os.WriteFile(d.Path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	copyTree(t, filepath.Join(saved, "tpm"), m.TPMStateDir())
	lab.RunScenario(t, lab.Scenario{
		Name: "rollback-tpm-and-disk", Machine: m, Files: files, Tools: tools, Append: appendArgs,
		Script: refusedBootScript("", "the restored old copy was accepted", `
check tpm-agreed sh -c '! grep -q "the vTPM counter at" /tmp/boot.log'
check names-the-broker grep -q 'older than its freshness anchor: .*volume is at epoch [0-9]*, the broker at [0-9]*' /tmp/boot.log
check state-not-mapped sh -c '! test -e /dev/mapper/state'
`),
		Expect: []string{"refused", "tpm-agreed", "names-the-broker", "state-not-mapped"},
	})
	if now, _ := os.ReadFile(d.Path); string(now) != string(img) {
		t.Error("the refused boot changed the restored disk")
	}
}
