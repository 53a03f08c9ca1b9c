package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/tpm"
)

func newStateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Operator actions on a provisioned state volume",
		Long: `A state volume provisioned by confidisk boot records, under a MAC keyed from
its volume key, the settings it was provisioned with: the roll-back anchors,
the broker and its CA, the sealing PCRs, the TEE evidence and the read-write
mode. A boot whose command line or boot.conf asks for less is refused (the
host controls an unsigned command line). Changing them is an operator action,
done with a passphrase of the volume (the recovery passphrase, see
confidisk luks recover).`,
	}
	cmd.AddCommand(newStateReconfigureCmd(), newStateResealCmd())
	return cmd
}

func newStateReconfigureCmd() *cobra.Command {
	var (
		keyFile, anchor, broker, brokerCA, pcrs, tee, rw string
		asJSON                                           bool
	)
	cmd := &cobra.Command{
		Use:   "reconfigure DEVICE [flags]",
		Short: "Change the provisioned settings of a state volume",
		Long: `Verify the state volume's authenticated metadata, change the provisioned
settings given by flags (the others are kept), and recompute the MAC in the
same header write. Run it from a booted or rescue system with a passphrase of
the volume (--key-file).

A volume provisioned before authenticated metadata (version 1 of its
provisioning record) gets its current header authenticated as it is: run it
only on a volume known to be untouched.

--tpm2-pcrs changes the PCRs later boots must ask for; it does not re-seal the
vTPM keyslot.`,
		Example: `  # the broker is retired: the vTPM counter stays the only roll-back anchor
  confidisk state reconfigure /dev/vda3 --key-file pass.txt --rollback-anchor tpm --broker ""`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := reconfiguration(cmd, anchor, broker, brokerCA, pcrs, tee, rw)
			if err != nil {
				return usageError{err}
			}
			return withHeader(cmd, args[0], func(d *device, h *luks2.Header) (bool, error) {
				vk, err := volumeKey(cmd, keyFile, d, h)
				if err != nil {
					return false, err
				}
				s, err := provision.Reconfigure(args[0], h, vk, r)
				if err != nil {
					return false, fmt.Errorf("%s: %w", args[0], err)
				}
				d.auth = nil // Reconfigure recomputed the MAC
				if asJSON {
					return true, writeJSON(cmd.OutOrStdout(), s)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "anchor %s, broker %q, PCRs %v, TEE %s\n", s.Anchor, s.Broker, s.PCRs, s.TEE)
				return true, nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&keyFile, "key-file", "d", "", "read a passphrase of the volume from this file (- for standard input)")
	f.StringVar(&anchor, "rollback-anchor", "", "roll-back anchors: tpm, broker or tpm+broker")
	f.StringVar(&broker, "broker", "", `broker URL (https://HOST:PORT), "" for none`)
	f.StringVar(&brokerCA, "broker-ca", "", "PEM certificate(s) of the broker's CA (with --broker)")
	f.StringVar(&pcrs, "tpm2-pcrs", "", `sealing PCRs later boots must ask for (7+11, "" for none)`)
	f.StringVar(&tee, "tee", "", "TEE evidence: none, sev-snp or tdx")
	f.StringVar(&rw, "rw", "", "read-write mode: overlay, copy or none (clone, usr-overlay and usr volumes keep their layout: only usr-overlay and usr swap)")
	f.BoolVar(&asJSON, "json", false, "print the recorded settings as JSON")
	return cmd
}

// reconfiguration turns the flags that were given into the changes.
func reconfiguration(cmd *cobra.Command, anchor, broker, brokerCA, pcrs, tee, rw string) (provision.Reconfiguration, error) {
	var r provision.Reconfiguration
	fl := cmd.Flags()
	cfg := provision.DefaultConfig()
	set := func(name, key, value string) error {
		if !fl.Changed(name) {
			return nil
		}
		if name == "broker" && value == "" {
			return nil
		}
		return cfg.ApplyFile([]byte(key + "=" + value + "\n"))
	}
	for _, s := range [][3]string{{"rollback-anchor", "rollback-anchor", anchor}, {"broker", "broker", broker},
		{"broker-ca", "broker-ca", brokerCA}, {"tpm2-pcrs", "tpm2-pcrs", pcrs}, {"tee", "tee", tee}, {"rw", "rw", rw}} {
		if err := set(s[0], s[1], s[2]); err != nil {
			return r, err
		}
	}
	if fl.Changed("rollback-anchor") {
		r.Anchor = &anchor
	}
	if fl.Changed("broker") {
		r.Broker, r.BrokerCA = &broker, &brokerCA
	} else if fl.Changed("broker-ca") {
		return r, errors.New("--broker-ca goes with --broker")
	}
	if fl.Changed("tpm2-pcrs") {
		r.PCRs = &cfg.PCRs
	}
	if fl.Changed("tee") {
		r.TEE = &tee
	}
	if fl.Changed("rw") {
		r.RW = &cfg.RW
	}
	if r == (provision.Reconfiguration{}) {
		return r, errors.New("nothing to change: give at least one of --rollback-anchor, --broker, --tpm2-pcrs, --tee, --rw")
	}
	return r, nil
}

func newStateResealCmd() *cobra.Command {
	var (
		keyFile, tpmDevice, pcrSpec, pubKey string
		weaker, fixate, asJSON              bool
	)
	cmd := &cobra.Command{
		Use:   "reseal DEVICE [flags]",
		Short: "Seal a state volume's key to the vTPM again (after a recovery, or to change the sealing PCRs)",
		Long: `Replace the vTPM keyslot of a state volume by one sealed to the PCR values the
vTPM holds now. Run it from the booted system after a boot that fell to the
recovery path (a firmware or Secure Boot database update changed PCR 7; the
volume was opened with the recovery passphrase, see confidisk luks recover),
or to change the sealing PCRs. It needs a passphrase of the volume
(--key-file, or asked).

Before anything is written the volume's authenticated metadata is verified
under its volume key, and the vTPM's fixation digest is compared with the
volume's: a vTPM holding another volume's digest is refused, and one holding
none (a replaced vTPM) only with --fixate. The new keyslot is sealed like first
boot's: to the --tpm2-pcrs (default: the provisioned ones) at their current
values or the values given, to PCR 15 at zero, and with --tpm2-public-key to
PCR 11 as signed by that key (the UKI's .pcrpkey). It is committed before the
old systemd-tpm2 keyslots are removed, and the provisioned PCRs become the
sealed ones, with the MAC recomputed in each header write: an interruption
leaves the volume openable with the recovery passphrase and the old or the new
keyslot.

A seal to fewer PCRs than provisioned, or without the PCR signing key the old
keyslot is sealed to, is refused unless --allow-weaker-seal: a volume is never
sealed to less by accident. Later boots must ask for the sealed PCRs
(confidisk.tpm2-pcrs= or boot.conf).

PCR values are read now: in a booted system PCRs 11 and 15 hold more than the
initrd saw, so PCR 11 is bound through --tpm2-public-key (or given as
11:sha256=HEX), and PCR 15 is always sealed at zero.`,
		Example: `  # after a dbx update: the boot asked for the recovery key
  confidisk luks recover header.img --operator-key recovery.key --out pass.txt  # the operator
  # the rescue system, PCR 7 as predicted for the new dbx (image build --dbx):
  confidisk state reseal /dev/vda4 --key-file pass.txt --tpm2-pcrs 7:sha256=HEX \
      --tpm2-public-key pcrpkey.pem`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := resealOptions(cmd, pcrSpec, pubKey)
			if err != nil {
				return err
			}
			o.AllowWeaker, o.Fixate = weaker, fixate
			return withHeader(cmd, args[0], func(d *device, h *luks2.Header) (bool, error) {
				vk, err := volumeKey(cmd, keyFile, d, h)
				if err != nil {
					return false, err
				}
				t, err := openTPMFlag(tpmDevice)
				if err != nil {
					return false, fmt.Errorf("open TPM %s: %w", tpmDevice, err)
				}
				defer t.Close()
				res, err := provision.Reseal(t, d.f, args[0], h, vk, o)
				if err != nil {
					return false, fmt.Errorf("%s: %w", args[0], err)
				}
				if asJSON {
					return false, writeJSON(cmd.OutOrStdout(), res)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Sealed to PCRs %v (and 15 at zero)%s in keyslot %d, token %d; removed keyslots %v.\n",
					res.PCRs, signedNote(res.PolicyKeyPCRs), res.Keyslot, res.Token, res.Removed)
				return false, nil // Reseal wrote the header
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&keyFile, "key-file", "d", "", "read a passphrase of the volume from this file (- for standard input)")
	f.StringVar(&tpmDevice, "tpm2-device", tpm.DefaultDevice, "TPM: /dev/tpmrm0, or swtpm:PATH")
	f.StringVar(&pcrSpec, "tpm2-pcrs", "", "PCRs to seal to literally, systemd syntax (7+4, 11:sha256=HEX; default: the provisioned ones)")
	f.StringVar(&pubKey, "tpm2-public-key", "", "PEM RSA public key whose signatures authorise PCR 11 (the UKI's .pcrpkey)")
	f.BoolVar(&weaker, "allow-weaker-seal", false, "allow fewer PCRs than provisioned, or dropping the PCR signing key")
	f.BoolVar(&fixate, "fixate", false, "store the volume's fixation digest in a vTPM that holds none (a replaced vTPM)")
	f.BoolVar(&asJSON, "json", false, "print what was done as JSON")
	return cmd
}

func signedNote(pcrs []int) string {
	if len(pcrs) == 0 {
		return ""
	}
	return fmt.Sprintf(" and PCRs %v as signed by the PCR key", pcrs)
}

// volumeKey unlocks the volume with a passphrase from keyFile (or asked).
func volumeKey(cmd *cobra.Command, keyFile string, d *device, h *luks2.Header) ([]byte, error) {
	pass, err := readKey(cmd, keyFile, "Enter a passphrase of the volume: ", false)
	if err != nil {
		return nil, err
	}
	vk, _, err := h.Unlock(d.f, pass, -1)
	return vk, err
}

// resealOptions reads --tpm2-pcrs and --tpm2-public-key.
func resealOptions(cmd *cobra.Command, pcrSpec, pubKey string) (provision.ResealOptions, error) {
	var o provision.ResealOptions
	if cmd.Flags().Changed("tpm2-pcrs") {
		pcrs, vals, bank, err := parseTPM2PCRs(pcrSpec)
		if err != nil {
			return o, usageError{err}
		}
		if bank != "" && bank != tpm.SHA256 {
			return o, usageError{fmt.Errorf("--tpm2-pcrs: state volumes are sealed in the sha256 bank, not %s", bank)}
		}
		o.PCRs, o.PCRValues = append([]int{}, pcrs...), vals
	}
	if pubKey != "" {
		b, err := os.ReadFile(pubKey)
		if err != nil {
			return o, err
		}
		o.PCRPublicKey = b
	}
	return o, nil
}
