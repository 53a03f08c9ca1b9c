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
	var (
		keyFile, brokerURL, brokerCA string
		tf                           tpmFlags
		tokenOnly, asJSON            bool
	)
	brokerClient := func() (*client.Client, error) {
		if brokerURL == "" {
			return nil, nil
		}
		tc, err := client.TLSConfig(brokerCA, "", "")
		if err != nil {
			return nil, err
		}
		return client.New(brokerURL, client.Options{TLS: tc})
	}
	unlock := func(cmd *cobra.Command, d *device, h *luks2.Header) ([]byte, error) {
		if tokenOnly {
			return unlockWithTPM2(cmd, tf.dev, d, h)
		}
		pass, err := readKey(cmd, keyFile, "Enter a passphrase of the volume: ", false)
		if err != nil {
			return nil, err
		}
		vk, _, err := h.Unlock(d.f, pass, -1)
		return vk, err
	}
	show := &cobra.Command{
		Use:   "show DEVICE",
		Short: "Print the volume's epoch and the vTPM counter",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, h, err := openHeader(cmd, args[0])
			if err != nil {
				return err
			}
			defer d.close()
			vk, err := unlock(cmd, d, h)
			if err != nil {
				return err
			}
			t, err := tf.open()
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
			bc, err := brokerClient()
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
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
	advance := &cobra.Command{
		Use:   "advance DEVICE",
		Short: "Advance the epoch now: older copies of the volume become invalid",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHeader(cmd, args[0], func(d *device, h *luks2.Header) (bool, error) {
				vk, err := unlock(cmd, d, h)
				if err != nil {
					return false, err
				}
				t, err := tf.open()
				if err != nil {
					return false, err
				}
				defer t.Close()
				bc, err := brokerClient()
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
				if asJSON {
					return false, writeJSON(cmd.OutOrStdout(), fr)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "epoch advanced to %d\n", fr.Epoch)
				return false, nil // AdvanceEpoch wrote and synced the header
			})
		},
	}
	for _, c := range []*cobra.Command{show, advance} {
		c.Flags().StringVarP(&keyFile, "key-file", "d", "", "read a passphrase of the volume from this file (- for standard input)")
		c.Flags().BoolVar(&tokenOnly, "token-only", false, "unseal the volume key with the TPM instead")
		tf.registerDevice(c.Flags())
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
		c.Flags().StringVar(&brokerURL, "broker", "", "the broker anchoring the volume too (https://HOST:PORT); advance needs this guest's evidence (PCR 15 holding the volume)")
		c.Flags().StringVar(&brokerCA, "broker-ca", "/etc/confidisk/broker.pem", "PEM certificate(s) the broker's TLS certificate must chain to")
	}
	cmd.AddCommand(show, advance)
	return cmd
}
