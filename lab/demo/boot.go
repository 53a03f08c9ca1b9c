package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/brokertest"
	"github.com/confidisk/confidisk/lab"
	"github.com/confidisk/confidisk/lab/disk"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/provision"
)

const bootScript = `
say() { echo "DEMO $*"; }
mkdir -p /run/log/systemd
say "# confidisk boot"
if confidisk boot --mkfs /usr/sbin/mkfs.ext4 > /tmp/boot.json; then
	result boot ok done
else
	result boot fail refused
	say "Boot stopped: the state volume was left exactly as it was."
	exit 0
fi
`

// startBroker starts a broker on the host's loopback whose policy pins PCR 7.
func startBroker(dir, pcr7 string) (*brokertest.Local, error) {
	pol, err := attest.ParsePolicy([]byte(`{"version":1,"pcrs":{"7":["` + pcr7 + `"]}}`))
	if err != nil {
		return nil, err
	}
	v, err := attest.NewValidator(pol, attest.ValidatorOptions{})
	if err != nil {
		return nil, err
	}
	bdir := filepath.Join(dir, "broker")
	if err := os.MkdirAll(bdir, 0o700); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(brokerLog{}, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	return brokertest.StartLocal(bdir, []string{lab.HostIP}, func(c *broker.Config) { c.Verifier, c.Logger = v, log })
}

// brokerLog prints the broker's log lines about volumes and epochs.
type brokerLog struct{}

func (brokerLog) Write(p []byte) (int, error) {
	if line := strings.TrimSpace(string(p)); !strings.Contains(line, "msg=request") {
		fmt.Println("  broker│ " + line)
	}
	return len(p), nil
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// runBoot is the second act: first boot, the broker, second boot, roll-back
// of disk and vTPM, swap attack.
func runBoot(bin string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	k, err := lab.Kernel(ctx, "")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "confidisk-demo-boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, err := disk.Build(dir, bin, map[string]string{"etc/hello": "hello from the verity root\n"})
	if err != nil {
		return err
	}
	m, err := lab.NewMachine(dir, k, lab.Disk{Path: d.Path})
	if err != nil {
		return err
	}
	m.UserNet = true
	opKey, opPub, err := disk.OperatorKeys(dir)
	if err != nil {
		return err
	}
	files := map[string]string{"/bin/confidisk": bin, provision.DefaultRecoveryKey: opPub}
	var brokerArgs []string
	boot := func(title, checks string) (*lab.BootResult, error) {
		fmt.Printf("\n  ── %s ──\n", title)
		initrd := filepath.Join(dir, "initrd.cpio")
		ir := lab.Initramfs{Modules: lab.DefaultModules(), Files: files,
			Tools: []string{"mkfs.ext4"}, Init: bootScript + checks}
		if err := ir.Build(ctx, k, initrd); err != nil {
			return nil, err
		}
		return m.Boot(ctx, lab.BootOptions{Initrd: initrd, Append: append(d.Cmdline(), brokerArgs...), Console: console{}})
	}
	// bootOK boots and requires every RESULT to be ok.
	bootOK := func(title, checks string) (*lab.BootResult, error) {
		res, err := boot(title, checks)
		if err != nil {
			return nil, err
		}
		if f := res.Failed(); len(f) > 0 {
			return nil, fmt.Errorf("%s: %v (console: %s)", title, f, res.ConsoleLog)
		}
		return res, nil
	}
	refused := func(res *lab.BootResult) bool {
		for _, r := range res.Results {
			if r.Name == "boot" && r.OK {
				return false
			}
		}
		return true
	}

	fmt.Println("  The host hands the guest a disk: a dm-verity root (roothash= on the kernel")
	fmt.Println("  command line) and a blank partition labelled \"state\". The vTPM is swtpm.")
	res, err := boot("first boot: the guest encrypts its own state volume", `
say "# echo 'my secret' > /sysroot/etc/secret"
echo 'my secret' > /sysroot/etc/secret && sync
say "PCR 15 now holds the volume's measurement: $(confidisk tpm pcrs --pcrs 15 --json | tr -d ' \n')"
say "PCR7 $(confidisk tpm pcrs --pcrs 7 --json | tr -d ' \n')"
umount /sysroot
`)
	if err != nil {
		return err
	}
	console, _ := os.ReadFile(res.ConsoleLog)
	mm := regexp.MustCompile(`"7":"([0-9a-f]{64})"`).FindSubmatch(console)
	if mm == nil {
		return fmt.Errorf("no PCR 7 value on the console")
	}
	if err := showRecovery(bin, d, opKey, console); err != nil {
		return err
	}
	pcr7, _ := hex.DecodeString(string(mm[1]))

	fmt.Println("\n  The operator starts the broker (confidisk serve) on the host, with a policy")
	fmt.Printf("  that pins PCR 7 to what this firmware measures (%.16s…), and points the guest\n", mm[1])
	fmt.Println("  at it: confidisk.broker=https://10.0.2.2:PORT, its certificate in the initrd.")
	fmt.Println("  The guest reaches it through QEMU's user network; the host cannot forge its")
	fmt.Println("  answers (TLS pinned) and cannot roll its store back.")
	b, err := startBroker(dir, string(mm[1]))
	if err != nil {
		return err
	}
	defer b.Close()
	files["/etc/confidisk/broker.pem"] = b.TLS.ServerCert
	brokerArgs = []string{"confidisk.broker=https://" + lab.HostIP + ":" + port(b.Addr.String())}

	if _, err := bootOK("second boot: unsealed by the vTPM, checked, opened; registered with the broker", `
say "# cat /sysroot/etc/secret"
say "  $(cat /sysroot/etc/secret)"
umount /sysroot
`); err != nil {
		return err
	}

	fmt.Println("\n  ── the host copies the disk AND the vTPM state ──")
	img, err := os.ReadFile(d.Path)
	if err != nil {
		return err
	}
	saved := filepath.Join(dir, "saved-tpm")
	if err := os.CopyFS(saved, os.DirFS(m.TPMStateDir())); err != nil {
		return err
	}
	if _, err := bootOK("third boot: the guest writes something new", `
say "# echo 'new secret' > /sysroot/etc/secret"
echo 'new secret' > /sysroot/etc/secret && sync
umount /sysroot
`); err != nil {
		return err
	}
	fmt.Println("\n  ── the host restores the old disk and the old vTPM state together ──")
	if err := os.WriteFile(d.Path, img, 0o600); err != nil {
		return err
	}
	if err := os.RemoveAll(m.TPMStateDir()); err != nil {
		return err
	}
	if err := os.CopyFS(m.TPMStateDir(), os.DirFS(saved)); err != nil {
		return err
	}
	res, err = boot("fourth boot: the rolled-back disk", "")
	if err != nil {
		return err
	}
	if !refused(res) {
		return fmt.Errorf("UNEXPECTED: the guest accepted the rolled-back volume")
	}
	fmt.Println("\n  The restored vTPM agreed with the old copy (its counter went back too), but")
	fmt.Println("  the broker's epoch did not: the old secret was never handed out.")

	fmt.Println("\n  ── the host rewrites the header: segment 0 becomes cipher_null, no integrity ──")
	fmt.Println("  LUKS2 metadata carries no authentication (CVE-2025-59054): the keyslots still")
	fmt.Println("  give the right key, and a guest that trusted the segment would write plaintext.")
	if err := rewriteCipherNull(d); err != nil {
		return err
	}
	res, err = boot("fifth boot: the rewritten header", "")
	if err != nil {
		return err
	}
	if !refused(res) {
		return fmt.Errorf("UNEXPECTED: the guest accepted the rewritten header")
	}
	fmt.Println("\n  Refused before anything was unlocked, mapped or written: below the security")
	fmt.Println("  floor. A subtler change (offset, sector size, IV tweak) is caught by the MAC the")
	fmt.Println("  guest keeps over its metadata, under a key derived from the volume key.")

	fmt.Println("\n  ── the host swaps the state volume ──")
	fmt.Println("  The host formats the state partition itself (so it knows the key), marks it")
	fmt.Println("  provisioned, and adds a systemd-tpm2 keyslot that this vTPM unseals — which")
	fmt.Println("  needs only the SRK's public key. If the guest used it, its secrets would be")
	fmt.Println("  readable by the host.")
	tp, stop, err := m.HostTPM()
	if err != nil {
		return err
	}
	_, err = d.ForgeState(tp, pcr7)
	stop()
	if err != nil {
		return err
	}
	res, err = boot("sixth boot: the swapped volume", "")
	if err != nil {
		return err
	}
	if !refused(res) {
		return fmt.Errorf("UNEXPECTED: the guest accepted the swapped volume")
	}
	fmt.Println("\n  The vTPM unsealed the host's keyslot, but the volume's key does not match the")
	fmt.Println("  fixation digest this guest stored in the vTPM at first boot: refused.")
	return nil
}

// showRecovery: nothing secret reached the console; the operator unwraps
// the recovery passphrase from the header with the operator key.
func showRecovery(bin string, d *disk.Disk, opKey string, console []byte) error {
	fmt.Println("\n  The guest printed no recovery key: the host reads a confidential VM's console.")
	fmt.Println("  It sealed the recovery passphrase to the operator's key instead; the operator")
	fmt.Println("  unwraps it from a copy of the header:")
	state := filepath.Join(filepath.Dir(opKey), "state-copy.img")
	b := make([]byte, d.State.Size)
	if _, err := d.StateDevice().ReadAt(b, 0); err != nil {
		return err
	}
	if err := os.WriteFile(state, b, 0o600); err != nil {
		return err
	}
	defer os.Remove(state)
	out, err := exec.Command(bin, "luks", "recover", state, "--operator-key", opKey).Output()
	if err != nil {
		return fmt.Errorf("confidisk luks recover: %w", err)
	}
	pass := strings.TrimSpace(string(out))
	if pass == "" || strings.Contains(string(console), pass) {
		return fmt.Errorf("UNEXPECTED: the recovery passphrase is on the console")
	}
	fmt.Printf("  $ confidisk luks recover state.img --operator-key recovery.key\n  %.9s… (%d characters; it opens keyslot 0, and is on no console)\n", pass, len(pass))
	return nil
}

// rewriteCipherNull is the host's header rewrite of CVE-2025-59054.
func rewriteCipherNull(d *disk.Disk) error {
	dev := d.StateDevice()
	h, _, err := luks2.Read(dev)
	if err != nil {
		return err
	}
	h.Metadata.Segments[0].Encryption, h.Metadata.Segments[0].Integrity = "cipher_null-ecb", nil
	return h.Write(dev)
}
