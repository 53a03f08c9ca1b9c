package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/provision"
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
	cmd.AddCommand(newStateReconfigureCmd())
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
				pass, err := readKey(cmd, keyFile, "Enter a passphrase of the volume: ", false)
				if err != nil {
					return false, err
				}
				vk, _, err := h.Unlock(d.f, pass, -1)
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
	f.StringVar(&rw, "rw", "", "read-write mode: overlay, copy or none")
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
