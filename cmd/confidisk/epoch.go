package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/provision"
)

func newEpochCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "epoch",
		Short: "Show or advance a state volume's freshness epoch (roll-back protection)",
		Long: `A provisioned state volume carries a freshness epoch, authenticated with a key
derived from its volume key, anchored in a monotonic vTPM counter: at boot an
older copy of the volume (epoch below the counter) is refused; with --broker the
broker's epoch for the volume is an anchor too. confidisk boot
advances it once per boot; "epoch advance" does it now, so that every copy
taken before becomes invalid (for example after a snapshot the operator wants
to be the only valid state). See docs/rollback.md.

The volume key is needed: give a passphrase (the recovery key) with --key-file,
or --token-only to unseal with the TPM (only possible before the boot measured
the volume into PCR 15).`,
	}
	f := &epochFlags{}
	cmd.AddCommand(f.register(epochShowCmd(f)), f.register(epochAdvanceCmd(f)))
	return cmd
}

// epochFlags are the flags epoch show and advance share: how to get the
// volume key, the TPM, the broker.
type epochFlags struct {
	keyFile, brokerURL, brokerCA string
	tf                           tpmFlags
	tokenOnly, asJSON            bool
}

func (f *epochFlags) register(c *cobra.Command) *cobra.Command {
	fl := c.Flags()
	fl.StringVarP(&f.keyFile, "key-file", "d", "", "read a passphrase of the volume from this file (- for standard input)")
	fl.BoolVar(&f.tokenOnly, "token-only", false, "unseal the volume key with the TPM instead")
	f.tf.registerDevice(fl)
	fl.BoolVar(&f.asJSON, "json", false, "print JSON")
	fl.StringVar(&f.brokerURL, "broker", "", "the broker anchoring the volume too (https://HOST:PORT); advance needs this guest's evidence (PCR 15 holding the volume)")
	fl.StringVar(&f.brokerCA, "broker-ca", "/etc/confidisk/broker.pem", "PEM certificate(s) the broker's TLS certificate must chain to")
	return c
}

// broker is the broker client, nil without --broker.
func (f *epochFlags) broker() (*client.Client, error) {
	if f.brokerURL == "" {
		return nil, nil
	}
	return client.Dial(f.brokerURL, f.brokerCA, "", "")
}

// unlock gets the volume key: with the TPM (--token-only) or a passphrase.
func (f *epochFlags) unlock(cmd *cobra.Command, d *device, h *luks2.Header) ([]byte, error) {
	if f.tokenOnly {
		return unlockWithTPM2(cmd, f.tf.dev, "", d, h)
	}
	pass, err := readKey(cmd, f.keyFile, "Enter a passphrase of the volume: ", false)
	if err != nil {
		return nil, err
	}
	vk, _, err := h.Unlock(d.f, pass, -1)
	return vk, err
}

func epochShowCmd(f *epochFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show DEVICE",
		Short: "Print the volume's epoch and the vTPM counter",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, h, err := openHeader(cmd, args[0])
			if err != nil {
				return err
			}
			defer d.close()
			vk, err := f.unlock(cmd, d, h)
			if err != nil {
				return err
			}
			t, err := f.tf.open()
			if err != nil {
				return err
			}
			defer t.Close()
			e, c, err := provision.ReadEpoch(t, h, vk)
			if err != nil {
				return err
			}
			out := map[string]uint64{"epoch": e, "counter": c}
			line := fmt.Sprintf("epoch %d, vTPM counter %d", e, c)
			bc, err := f.broker()
			if err != nil {
				return err
			}
			if bc != nil {
				defer bc.Close()
				be, err := bc.Epoch(cmd.Context(), h.UUID)
				if err != nil {
					return err
				}
				out["broker"] = be
				line += fmt.Sprintf(", broker %d", be)
			}
			if f.asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
}

func epochAdvanceCmd(f *epochFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "advance DEVICE",
		Short: "Advance the epoch now: older copies of the volume become invalid",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHeader(cmd, args[0], func(d *device, h *luks2.Header) (bool, error) {
				vk, err := f.unlock(cmd, d, h)
				if err != nil {
					return false, err
				}
				t, err := f.tf.open()
				if err != nil {
					return false, err
				}
				defer t.Close()
				bc, err := f.broker()
				if err != nil {
					return false, err
				}
				if bc != nil {
					defer bc.Close()
				}
				fr, err := provision.AdvanceEpoch(cmd.Context(), t, d.f, h, vk, provision.EpochOptions{Broker: bc})
				if err != nil {
					return false, err
				}
				if f.asJSON {
					return false, writeJSON(cmd.OutOrStdout(), fr)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "epoch advanced to %d\n", fr.Epoch)
				return false, nil // AdvanceEpoch wrote and synced the header
			})
		},
	}
}
