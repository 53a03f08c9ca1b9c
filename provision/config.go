// Package provision is the guest's boot flow, run from the initrd by
// `confidisk boot`: it activates the dm-verity root, encrypts the state
// partition on first boot (LUKS2 with integrity, key from the kernel RNG,
// sealed to the vTPM, measured into PCR 15), unlocks it on every later boot
// (checking that it is the volume this guest created), and mounts a
// read-write root over the verity one.
//
// First-boot provisioning is a sequence of steps whose progress is kept in
// the volume's own LUKS2 header (a "confidisk-provision" token), so a power
// cut at any point leads the next boot either to finish (once the key is
// sealed) or to start over (before that, nothing of value was written). A
// volume whose provisioning completed is never reformatted.
package provision

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RWMode is how the read-write root is made.
type RWMode string

const (
	// RWOverlay mounts overlayfs: the verity root below, upper and work
	// directories on the encrypted state volume (persistent).
	RWOverlay RWMode = "overlay"
	// RWCopy copies the verity file system into the state volume on first
	// boot and mounts the state volume as root on every boot.
	RWCopy RWMode = "copy"
	// RWNone mounts the verity root read-only and the state volume at
	// /var (StateMount).
	RWNone RWMode = "none"
	// RWClone makes the state volume the destination of a dm-clone whose
	// source is the verity root: the root is mounted from the clone at
	// once, the kernel copies (hydrates) the verity root into the encrypted
	// volume in the background, and once every region is hydrated the boot
	// maps the copy directly, without the clone or the verity source (see
	// docs/boot.md, "dm-clone mode").
	RWClone RWMode = "clone"
	// RWUsrOverlay and RWUsr are the modes of usrhash= ([Config.Usr]): the
	// root file system is made on the state volume by the first boot, /usr
	// is the verity partition mounted on it, writable through an overlay
	// whose upper layer is on the state volume (RWUsrOverlay, from
	// confidisk.rw=overlay, the default) or read-only (RWUsr, from
	// confidisk.rw=none).
	RWUsrOverlay RWMode = "usr-overlay"
	RWUsr        RWMode = "usr"
)

// usrMode reports whether m is a mode of usrhash=.
func (m RWMode) usrMode() bool { return m == RWUsrOverlay || m == RWUsr }

// CloneOptions tune dm-clone mode (confidisk.clone-*=). None of them
// weakens the volume: they trade boot-time I/O against hydration speed.
type CloneOptions struct {
	// RegionSize is the copy unit in 512-byte sectors
	// (confidisk.clone-region-size=, with a K/M/G suffix, default 64K). It
	// is fixed by the first boot: later boots use the recorded one.
	RegionSize uint64
	// Threshold is the number of regions hydrated at once
	// (confidisk.clone-hydration-threshold=, 0 for the kernel's default of 1).
	Threshold uint32
	// Batch is the number of adjacent regions copied in one request
	// (confidisk.clone-hydration-batch-size=, 0 for the kernel's default of 1).
	Batch uint32
	// Hydrate starts background hydration at boot (confidisk.clone-hydration=1,
	// the default); with 0 it waits for `confidisk clone start`.
	Hydrate bool
}

// DefaultCloneRegion is the default dm-clone region: 64 KiB.
const DefaultCloneRegion = 128

// Config is what `confidisk boot` needs to know. It comes from the kernel
// command line (roothash=, systemd.volatile=, confidisk.*) and from a config
// file in the initrd; see docs/boot.md.
type Config struct {
	// RootHash is the dm-verity root hash of the root file system
	// (roothash=), or of the /usr file system with Usr (usrhash=).
	RootHash []byte
	// Usr is set by usrhash=: the verity partitions are /usr's (DPS usr
	// partition types), and the root file system lives on the state
	// volume ([RWUsrOverlay], [RWUsr]).
	Usr bool
	// RW is the read-write root mode (confidisk.rw=, or systemd.volatile=overlay).
	RW RWMode
	// StateLabel is the GPT partition label of the state partition
	// (confidisk.state=, default "state").
	StateLabel string
	// PCRs are the PCRs the volume key is sealed to besides PCR 15
	// (confidisk.tpm2-pcrs=, default 7; "" for none). PCR 15 is always
	// included at its value before the volume is measured (all zeros in a
	// fresh boot), so nothing later in the boot can unseal the key again.
	PCRs []int
	// TPM is the TPM device (confidisk.tpm=, default /dev/tpmrm0).
	TPM string
	// PCRPublicKey and PCRSignature are where systemd-stub puts a signed
	// UKI's .pcrpkey and .pcrsig in the initrd (systemd-stub(7):
	// /.extra/tpm2-pcr-public-key.pem, /.extra/tpm2-pcr-signature.json).
	// When the key is there, first boot also seals the state key to PCR 11
	// as signed by it (TPM2_PolicyAuthorize), and unlocking uses the
	// signature. Not settable from the command line.
	PCRPublicKey, PCRSignature string
	// Integrity is the LUKS2 integrity mode (confidisk.integrity=,
	// default hmac-sha256).
	Integrity string
	// FastInit initialises integrity tags at the ends only
	// (confidisk.integrity-init=fast, the default) instead of a full wipe
	// (=full).
	FastInit bool
	// Root is where the root file system is mounted (confidisk.sysroot=,
	// default /sysroot).
	Root string
	// Init is the program switch_root hands over to (init=, default /sbin/init).
	Init string
	// SwitchRoot is false to stop after mounting (confidisk.switch-root=0).
	SwitchRoot bool
	// LUKSOptions are the command line's rd.luks.uuid=, rd.luks.name=,
	// luks.uuid= and luks.name= options (key=value): the boot refuses when
	// one names the state volume (see [OtherOpeners]).
	LUKSOptions []string
	// Broker is the URL of the confidisk broker (confidisk.broker=
	// https://HOST:PORT): when set, first boot registers the volume's
	// creation record there and every boot presents evidence and advances
	// the volume's freshness epoch there.
	Broker string
	// BrokerCA is the PEM file of the certificate(s) the broker's TLS
	// certificate must chain to (confidisk.broker-ca=, default
	// /etc/confidisk/broker.pem). It is part of the initrd, so it is
	// measured with the image.
	BrokerCA string
	// TEE is where evidence gets its hardware report (confidisk.tee=):
	// "sev-snp", "tdx", "none", or "" (auto: SEV-SNP when /dev/sev-guest
	// exists, TDX when /dev/tdx_guest exists, else none).
	TEE string
	// Anchor names the roll-back anchors (confidisk.rollback-anchor=):
	// "tpm" (the vTPM's NV counter), "broker" (the broker's epoch) or
	// "tpm+broker"; "" means tpm+broker with a broker, tpm without.
	Anchor string
	// RecoveryKey is the operator's recovery public key (X25519 PEM, package
	// recovery) in the initrd (confidisk.recovery-key=, default
	// /etc/confidisk/recovery.pub when that file exists): first boot makes a
	// recovery keyslot whose passphrase is sealed to it. Without one the
	// volume has no recovery keyslot.
	RecoveryKey string
	// RecoveryConsole prints the recovery passphrase on the console instead
	// (confidisk.recovery=console). The host reads the console of a
	// confidential VM, so this is for test machines only, and it is taken
	// from the config file in the initrd, never from the command line.
	RecoveryConsole bool
	// StateKey is where the state volume's key comes from on its first
	// boot (confidisk.state-key=): [KeySelf] (the default: the boot
	// self-encrypts a blank partition), [KeyBroker] or [KeySRK] (the volume
	// was pre-encrypted offline, by `confidisk image encrypt`). Every later
	// boot unlocks with the vTPM keyslot the first one enrolled, except with
	// [KeyBrokerAlways], where every boot gets the key from the broker.
	StateKey KeySource
	// Clone tunes dm-clone mode ([RWClone]).
	Clone CloneOptions
	// DeviceTimeout bounds how long the boot waits for its partitions and
	// the TPM device to appear (confidisk.device-timeout=SECONDS, default
	// 30), as devices show up late in a real initrd.
	DeviceTimeout time.Duration
}

// KeySource is where a state volume's key comes from on its first boot.
type KeySource string

const (
	// KeySelf: the key is made on first boot (self-encryption).
	KeySelf KeySource = "self"
	// KeyBroker: the volume is pre-encrypted and its key is released by the
	// broker to this guest's evidence.
	KeyBroker KeySource = "broker"
	// KeyBrokerAlways: like KeyBroker, but no vTPM keyslot is enrolled: the
	// broker releases the key on every boot.
	KeyBrokerAlways KeySource = "broker-always"
	// KeySRK: the volume is pre-encrypted with a keyslot sealed offline to
	// this vTPM's storage root key.
	KeySRK KeySource = "srk"
)

// PreEncrypted reports whether the source is one of a pre-encrypted volume.
func (k KeySource) PreEncrypted() bool { return k == KeyBroker || k == KeyBrokerAlways || k == KeySRK }

// fromBroker reports whether the broker releases the key.
func (k KeySource) fromBroker() bool { return k == KeyBroker || k == KeyBrokerAlways }

// DefaultRecoveryKey is where the boot looks for the operator's recovery
// public key when confidisk.recovery-key= is not given.
const DefaultRecoveryKey = "/etc/confidisk/recovery.pub"

// Anchors says which roll-back anchors the boot uses.
func (c *Config) Anchors() (useTPM, useBroker bool) {
	switch c.Anchor {
	case "tpm":
		return true, false
	case "broker":
		return false, true
	case "tpm+broker", "broker+tpm":
		return true, true
	}
	return true, c.Broker != ""
}

// DefaultConfig returns the defaults documented on [Config].
func DefaultConfig() Config {
	return Config{
		RW: RWOverlay, StateLabel: "state", PCRs: []int{7}, TPM: "/dev/tpmrm0",
		PCRPublicKey: "/.extra/tpm2-pcr-public-key.pem", PCRSignature: "/.extra/tpm2-pcr-signature.json",
		Integrity: "hmac-sha256", FastInit: true, Root: "/sysroot", Init: "/sbin/init", SwitchRoot: true,
		BrokerCA: "/etc/confidisk/broker.pem", DeviceTimeout: 30 * time.Second, StateKey: KeySelf,
		Clone: CloneOptions{RegionSize: DefaultCloneRegion, Batch: 32, Hydrate: true},
	}
}

// settleUsr turns the read-write mode into its usrhash= form: overlay
// becomes [RWUsrOverlay], none [RWUsr]; copy and clone have no meaning
// there. Without usrhash= the usr modes are refused.
func (c *Config) settleUsr() error {
	switch {
	case !c.Usr && c.RW.usrMode():
		return fmt.Errorf("%w: confidisk.rw=%s needs usrhash=", ErrBadConfig, c.RW)
	case !c.Usr || c.RW.usrMode():
	case c.RW == RWOverlay:
		c.RW = RWUsrOverlay
	case c.RW == RWNone:
		c.RW = RWUsr
	default:
		return fmt.Errorf("%w: confidisk.rw=%s does not go with usrhash= (the root is made on the state volume): use overlay (a writable /usr) or none", ErrBadConfig, c.RW)
	}
	return nil
}

// ErrBadConfig wraps every configuration error.
var ErrBadConfig = errors.New("bad boot configuration")

// set applies one key=value setting. fromCmdline is true for the kernel
// command line, where settings of other programs are ignored; in the config
// file an unknown key is an error.
func (c *Config) set(key, value string, fromCmdline bool) error {
	var why string
	switch {
	case key == "roothash" || key == "usrhash":
		b, err := hex.DecodeString(value)
		if err != nil || len(b) < 32 {
			why = "want the hex dm-verity root hash (at least 64 hex digits)"
			break
		}
		if c.RootHash != nil && c.Usr != (key == "usrhash") {
			why = "roothash= and usrhash= exclude each other (a verity root, or a verity /usr with the root on the state volume)"
			break
		}
		c.RootHash, c.Usr = b, key == "usrhash"
	case key == "systemd.volatile":
		switch value {
		case "overlay":
			c.RW = RWOverlay
		case "no", "0", "false":
			c.RW = RWNone
		default:
			why = "only overlay and no are supported"
		}
	case key == "init":
		c.Init = value
	case fromCmdline && luksOptions[key]:
		c.LUKSOptions = append(c.LUKSOptions, key+"="+value)
	case strings.HasPrefix(key, "confidisk."):
		opt, ok := options[strings.TrimPrefix(key, "confidisk.")]
		if !ok {
			return fmt.Errorf("%w: unknown option %s", ErrBadConfig, key)
		}
		why = opt(c, value, fromCmdline)
	case !fromCmdline:
		return fmt.Errorf("%w: unknown key %q", ErrBadConfig, key)
	}
	if why != "" {
		return fmt.Errorf("%w: %s=%s: %s", ErrBadConfig, key, value, why)
	}
	return nil
}

// parsePCRs reads "7+11+12" or "7,11" (systemd's tpm2-pcrs= syntax);
// "" means none. PCR 15 is refused: it is always part of the policy.
func parsePCRs(s string) ([]int, error) {
	if s == "" {
		return []int{}, nil
	}
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '+' || r == ',' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 23 {
			return nil, fmt.Errorf("invalid PCR %q (want 0..23)", f)
		}
		if n == 15 {
			return nil, errors.New("PCR 15 is always part of the policy; do not list it")
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ApplyCmdline applies the settings of a kernel command line (the contents
// of /proc/cmdline): roothash=, systemd.volatile=, init= and confidisk.*;
// other parameters are ignored, unknown confidisk.* options refused.
func (c *Config) ApplyCmdline(cmdline string) error {
	for _, w := range strings.Fields(cmdline) {
		key, value, ok := strings.Cut(w, "=")
		if !ok {
			if strings.HasPrefix(key, "confidisk.") {
				return fmt.Errorf("%w: %s needs a value", ErrBadConfig, key)
			}
			continue
		}
		if err := c.set(key, value, true); err != nil {
			return err
		}
	}
	return nil
}

// ApplyFile applies a config file: one "key=value" per line (keys as on the
// command line, with or without the "confidisk." prefix), or a veritytab /
// crypttab line where one expresses the setting (see applyTabLine); "#"
// comments and blank lines ignored. Unknown keys are refused, naming the
// line.
func (c *Config) ApplyFile(b []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Fields(line); len(f) >= 3 && !strings.Contains(f[0], "=") && !strings.HasPrefix(f[1], "=") {
			if err := c.applyTabLine(f); err != nil {
				return fmt.Errorf("line %d: %w", n, err)
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%w: line %d: want key=value, got %q", ErrBadConfig, n, line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if key != "roothash" && key != "usrhash" && key != "init" && key != "systemd.volatile" && !strings.HasPrefix(key, "confidisk.") {
			key = "confidisk." + key
		}
		if err := c.set(key, value, false); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	return sc.Err()
}

// applyTabLine takes a veritytab(5) or crypttab(5) line where it says what
// boot needs:
//
//	root <data> <hash> <roothash> [options]          (veritytab: the root hash)
//	<name> PARTLABEL=<label> - tpm2-device=…,tpm2-pcrs=7+11[,…]   (crypttab: the state volume)
//
// A veritytab line for "root" sets the root hash; a crypttab line with a
// PARTLABEL= device names the state partition, and its tpm2-pcrs= option
// the sealing PCRs. Other devices or options are refused, so that nothing in
// the file is silently ignored.
func (c *Config) applyTabLine(f []string) error {
	switch {
	case len(f) >= 4 && f[0] == "root":
		if len(f) > 5 || (len(f) == 5 && f[4] != "-" && f[4] != "") {
			return fmt.Errorf("%w: veritytab options %q are not supported", ErrBadConfig, strings.Join(f[4:], " "))
		}
		return c.set("roothash", f[3], false)
	case len(f) <= 4 && strings.HasPrefix(f[1], "PARTLABEL="):
		if f[2] != "-" && f[2] != "none" {
			return fmt.Errorf("%w: crypttab key file %q: the state volume's key comes from the vTPM", ErrBadConfig, f[2])
		}
		if err := c.set("confidisk.state", strings.TrimPrefix(f[1], "PARTLABEL="), false); err != nil {
			return err
		}
		if len(f) == 4 {
			for _, o := range strings.Split(f[3], ",") {
				k, v, _ := strings.Cut(o, "=")
				switch k {
				case "tpm2-device":
					if v != "auto" {
						if err := c.set("confidisk.tpm", v, false); err != nil {
							return err
						}
					}
				case "tpm2-pcrs":
					pcrs := strings.Split(v, "+")
					kept := pcrs[:0]
					for _, p := range pcrs { // PCR 15 is always part of the policy
						if p != "15" {
							kept = append(kept, p)
						}
					}
					if err := c.set("confidisk.tpm2-pcrs", strings.Join(kept, "+"), false); err != nil {
						return err
					}
				case "luks", "discard", "tpm2-measure-pcr", "headless", "integrity":
				default:
					return fmt.Errorf("%w: crypttab option %q is not supported", ErrBadConfig, k)
				}
			}
		}
		return nil
	}
	return fmt.Errorf("%w: %q is neither key=value nor a veritytab line for root or a crypttab line with PARTLABEL=", ErrBadConfig, strings.Join(f, " "))
}

// Validate checks that the configuration can boot.
func (c *Config) Validate() error {
	if c.RootHash == nil {
		return fmt.Errorf("%w: no roothash= (or usrhash=) on the kernel command line: refusing to boot an unverified root", ErrBadConfig)
	}
	if err := c.settleUsr(); err != nil {
		return err
	}
	if _, broker := c.Anchors(); broker && c.Broker == "" {
		return fmt.Errorf("%w: confidisk.rollback-anchor=%s needs confidisk.broker=URL", ErrBadConfig, c.Anchor)
	}
	if c.RW == RWClone && c.StateKey.PreEncrypted() {
		return fmt.Errorf("%w: confidisk.rw=clone needs a self-encrypted state volume (confidisk.state-key=self): "+
			"a pre-encrypted volume comes with its own file system", ErrBadConfig)
	}
	if c.StateKey.fromBroker() && c.Broker == "" {
		return fmt.Errorf("%w: confidisk.state-key=%s needs confidisk.broker=URL (the broker releases the key)", ErrBadConfig, c.StateKey)
	}
	return nil
}
