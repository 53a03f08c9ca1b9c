package provision

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const rh = "4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076"

func TestApplyCmdline(t *testing.T) {
	c := DefaultConfig()
	err := c.ApplyCmdline("BOOT_IMAGE=/vmlinuz console=ttyS0 roothash=" + rh +
		" confidisk.rw=copy confidisk.tpm2-pcrs=7+11+12 confidisk.state=data confidisk.integrity-init=full quiet systemd.foo=bar confidisk.broker=https://10.0.2.2:8443 confidisk.state-key=broker")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.RootHash = mustDecode(rh)
	want.RW = RWCopy
	want.PCRs = []int{7, 11, 12}
	want.StateLabel = "data"
	want.FastInit = false
	want.Broker = "https://10.0.2.2:8443"
	want.StateKey = KeyBroker
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func mustDecode(s string) []byte {
	c := DefaultConfig()
	if err := c.set("roothash", s, true); err != nil {
		panic(err)
	}
	return c.RootHash
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, cmdline, want string
	}{
		{"short roothash", "roothash=abcd", "root hash"},
		{"non-hex roothash", "roothash=" + strings.Repeat("zz", 32), "root hash"},
		{"unknown confidisk option", "roothash=" + rh + " confidisk.frobnicate=1", "unknown option confidisk.frobnicate"},
		{"bad rw", "confidisk.rw=tmpfs", "overlay, copy, none, clone, usr-overlay or usr"},
		{"pcr 15 listed", "confidisk.tpm2-pcrs=7+15", "PCR 15"},
		{"pcr out of range", "confidisk.tpm2-pcrs=24", "invalid PCR"},
		{"option without value", "confidisk.rw", "needs a value"},
		{"bad volatile", "systemd.volatile=state", "overlay and no"},
		{"relative sysroot", "confidisk.sysroot=sysroot", "absolute"},
		{"plain http broker", "confidisk.broker=http://10.0.2.2:8443", "https://"},
		{"broker without scheme", "confidisk.broker=10.0.2.2:8443", "https://"},
		{"relative broker ca", "confidisk.broker-ca=ca.pem", "absolute"},
		{"unknown anchor", "confidisk.rollback-anchor=disk", "tpm, broker or tpm+broker"},
		{"unknown tee", "confidisk.tee=sgx", "auto, none, sev-snp or tdx"},
		{"recovery on the console from the command line", "confidisk.recovery=console", "only from the boot.conf"},
		{"unknown recovery", "confidisk.recovery=paper", "operator-key or console"},
		{"relative recovery key", "confidisk.recovery-key=op.pub", "absolute"},
		{"device timeout not a number", "confidisk.device-timeout=soon", "whole seconds"},
		{"unknown key source", "confidisk.state-key=disk", "self, broker, broker-always or srk"},
		{"device timeout too large", "confidisk.device-timeout=70000", "whole seconds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			err := c.ApplyCmdline(tc.cmdline)
			if err == nil || !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want a bad-config error containing %q", err, tc.want)
			}
		})
	}
	c := DefaultConfig()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "no roothash=") {
		t.Errorf("missing roothash: %v", err)
	}
	c = DefaultConfig()
	if err := c.ApplyCmdline("roothash=" + rh + " confidisk.rollback-anchor=broker"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "needs confidisk.broker=") {
		t.Errorf("broker anchor without a broker: %v", err)
	}
	c = DefaultConfig()
	if err := c.ApplyCmdline("roothash=" + rh + " confidisk.state-key=broker"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "state-key=broker needs confidisk.broker=") {
		t.Errorf("key from the broker without a broker: %v", err)
	}
}

// TestAnchors checks which roll-back anchors each setting selects.
func TestAnchors(t *testing.T) {
	tests := []struct {
		cmdline        string
		useTPM, useBkr bool
	}{
		{"", true, false},
		{"confidisk.broker=https://10.0.2.2:8443", true, true},
		{"confidisk.broker=https://b confidisk.rollback-anchor=tpm", true, false},
		{"confidisk.broker=https://b confidisk.rollback-anchor=broker", false, true},
		{"confidisk.rollback-anchor=tpm+broker confidisk.broker=https://b", true, true},
	}
	for _, tc := range tests {
		c := DefaultConfig()
		if err := c.ApplyCmdline("roothash=" + rh + " " + tc.cmdline); err != nil {
			t.Fatalf("%q: %v", tc.cmdline, err)
		}
		if gotT, gotB := c.Anchors(); gotT != tc.useTPM || gotB != tc.useBkr {
			t.Errorf("%q: anchors tpm=%v broker=%v, want %v %v", tc.cmdline, gotT, gotB, tc.useTPM, tc.useBkr)
		}
	}
}

func TestApplyFile(t *testing.T) {
	c := DefaultConfig()
	err := c.ApplyFile([]byte("# state volume\nrw = none\nconfidisk.tpm2-pcrs=\n\nintegrity=aead\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.RW != RWNone || len(c.PCRs) != 0 || c.Integrity != "aead" {
		t.Errorf("config %+v", c)
	}
	for _, bad := range []string{"colour=blue\n", "rw\n", "rw=tmpfs\n", "console=ttyS0\n"} {
		if err := c.ApplyFile([]byte(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: %v, want an error naming line 1", bad, err)
		}
	}
}

func TestApplyFileTabLines(t *testing.T) {
	c := DefaultConfig()
	err := c.ApplyFile([]byte("root PARTUUID=a PARTUUID=b " + rh + " -\n" +
		"state PARTLABEL=data - tpm2-device=auto,tpm2-pcrs=7+11+15,tpm2-measure-pcr=yes\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.RootHash = mustDecode(rh)
	want.StateLabel = "data"
	want.PCRs = []int{7, 11}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	for _, bad := range []string{
		"root a b " + rh + " panic-on-corruption\n",
		"state /dev/vda3 - tpm2-device=auto\n",
		"state PARTLABEL=x /etc/key\n",
		"state PARTLABEL=x - fido2-device=auto\n",
		"usr a b c\n",
	} {
		if err := applyNew(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func applyNew(s string) error {
	c := DefaultConfig()
	return c.ApplyFile([]byte(s))
}

// TestConfigRecoveryAndTimeout: the settings only boot.conf may weaken, and
// the device timeout.
func TestConfigRecoveryAndTimeout(t *testing.T) {
	c := DefaultConfig()
	if c.DeviceTimeout != 30*time.Second || c.RecoveryConsole {
		t.Fatalf("defaults: timeout %s, console %v", c.DeviceTimeout, c.RecoveryConsole)
	}
	if err := c.ApplyFile([]byte("recovery=console\ndevice-timeout=5\nrecovery-key=/etc/op.pub\n")); err != nil {
		t.Fatal(err)
	}
	if !c.RecoveryConsole || c.DeviceTimeout != 5*time.Second || c.RecoveryKey != "/etc/op.pub" {
		t.Errorf("from boot.conf: console %v, timeout %s, key %q", c.RecoveryConsole, c.DeviceTimeout, c.RecoveryKey)
	}
	if err := c.ApplyCmdline("confidisk.recovery=operator-key"); err != nil || c.RecoveryConsole {
		t.Errorf("the command line may ask for more: %v, console %v", err, c.RecoveryConsole)
	}
}
