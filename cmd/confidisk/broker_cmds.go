//go:build !confidisk_guest

package main

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/recovery"
)

func brokerHealthCmd(f *brokerFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Check that the broker answers (GET /healthz)",
		Args:  exactArgs(0),
		RunE: f.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			if err := c.Healthy(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		}),
	}
}

func brokerVolumeCmd(f *brokerFlags) *cobra.Command {
	return f.jsonFlag(&cobra.Command{
		Use:   "volume UUID",
		Short: "Show what the broker knows of a volume: key id, creation time, measurements",
		Args:  exactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			v, err := c.Volume(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return f.show(cmd, v)
		}),
	})
}

func brokerVolumesCmd(f *brokerFlags) *cobra.Command {
	return f.jsonFlag(&cobra.Command{
		Use:   "volumes",
		Short: "List every registered volume (operator)",
		Args:  exactArgs(0),
		RunE: f.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			vs, err := c.Volumes(cmd.Context())
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(cmd.OutOrStdout(), api.VolumeList{Volumes: vs})
			}
			for i := range vs {
				printVolume(cmd.OutOrStdout(), &vs[i])
			}
			return nil
		}),
	})
}

func brokerEpochCmd(f *brokerFlags) *cobra.Command {
	return f.jsonFlag(&cobra.Command{
		Use:   "epoch UUID",
		Short: "Show a volume's freshness epoch (roll-back protection)",
		Args:  exactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			e, err := c.Epoch(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(cmd.OutOrStdout(), api.Epoch{Epoch: e})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "epoch %d\n", e)
			return nil
		}),
	})
}

func brokerRegisterCreationCmd(f *brokerFlags) *cobra.Command {
	return f.jsonFlag(&cobra.Command{
		Use:   "register-creation DEVICE",
		Short: "Register a volume with the creation record its first boot stored in its header",
		Long: `Reads the creation record (a vTPM quote over the volume key id, made by the
guest that created the volume) from the confidisk-creation token of the LUKS2
header on DEVICE and hands it to the broker, which checks it against its policy
and records the volume. Anyone may do this: the record proves itself.`,
		Args: exactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			d, h, err := openHeader(cmd, args[0])
			if err != nil {
				return err
			}
			defer d.close()
			rec, err := provision.CreationRecord(h)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			cr, err := attest.ParseCreationRecord(rec)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			// The record's nonce is the volume key id it is about.
			spec := api.VolumeSpec{UUID: h.UUID, KeyID: hex.EncodeToString(cr.Nonce)}
			v, err := c.Register(cmd.Context(), api.RegisterRequest{CreationRecord: rec, Volume: spec})
			if err != nil {
				return err
			}
			return f.show(cmd, v)
		}),
	})
}

func brokerRegisterCmd(f *brokerFlags) *cobra.Command {
	var uuid, keyID string
	cmd := f.jsonFlag(&cobra.Command{
		Use:   "register --uuid UUID --key-id HEX",
		Short: "Register a pre-encrypted volume (operator)",
		Args:  exactArgs(0),
		RunE: f.run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			if uuid == "" || keyID == "" {
				return usageError{errors.New("--uuid and --key-id are required")}
			}
			v, err := c.Register(cmd.Context(), api.RegisterRequest{Volume: api.VolumeSpec{UUID: uuid, KeyID: keyID}})
			if err != nil {
				return err
			}
			return f.show(cmd, v)
		}),
	})
	cmd.Flags().StringVar(&uuid, "uuid", "", "the volume's LUKS2 UUID")
	cmd.Flags().StringVar(&keyID, "key-id", "", "the volume key's id (hex, e.g. its fixate-volume-key= value)")
	return cmd
}

func brokerPutKeyCmd(f *brokerFlags) *cobra.Command {
	var keyID, keyFile string
	var req requireFlags
	cmd := &cobra.Command{
		Use:   "put-key UUID --key-id HEX --key-file FILE [--require FILE] [--require-pcr N=HEX]... [--require-ak FP] [--require-root-hash HEX] [--require-tee VALUE]",
		Short: "Store a pre-encrypted volume's key, released later only to attested guests (operator)",
		Long: `Stores the key of a registered pre-encrypted volume (confidisk broker register),
sealed under the broker's key-encryption key, replacing any stored one. A guest
gets it (POST /v1/volumes/UUID/key) HPKE-sealed to a key its evidence binds,
when the broker's policy accepts the evidence, the evidence names no volume (a
guest that has not opened it yet) or this one with this key id, and it shows
the measurements required here.

` + requireHelp,
		Example: `  confidisk broker put-key 6a1c9e0e-4f4b-4b7a-9d61-3a2b1c0d9e8f --key-id "$KEYID" \
      --key-file volume.key --require-pcr 7=<hex> --require-pcr 11=<hex> \
      --require-tee sev-snp:verified`,
		Args: exactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if keyID == "" || keyFile == "" {
				return usageError{errors.New("--key-id and --key-file are required")}
			}
			require, err := req.object()
			if err != nil {
				return err
			}
			key, err := readKeyFile(keyFile)
			if err != nil {
				return err
			}
			if err := c.PutKey(cmd.Context(), args[0], keyID, key, require); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key of volume %s stored (%d bytes)\n", args[0], len(key))
			if require != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "released only to evidence showing %s\n", require)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&keyID, "key-id", "", "the key's id (hex), as registered")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the raw volume key (- for standard input)")
	req.register(cmd.Flags())
	return cmd
}

func brokerRecoverCmd(f *brokerFlags) *cobra.Command {
	var opKey, out string
	cmd := &cobra.Command{
		Use:   "recover UUID --operator-key KEY",
		Short: "Unwrap a volume's escrowed recovery passphrase (operator)",
		Long: `First boot escrows the state volume's recovery token (its recovery passphrase
sealed to the operator's X25519 key) with the broker. This fetches it with the
operator certificate and unwraps it with the operator key, for when the token
in the volume's header is gone. confidisk luks recover does the same from the
header and also checks the passphrase against the keyslot.`,
		Args: exactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			priv, err := readOperatorKey(opKey)
			if err != nil {
				return err
			}
			v, err := c.Volume(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if len(v.Recovery) == 0 {
				return fmt.Errorf("volume %s: the broker holds no recovery token (no operator recovery key at first boot, or not asked as an operator)", v.UUID)
			}
			tok, err := recovery.ParseToken(v.Recovery)
			if err != nil {
				return err
			}
			pass, err := tok.Unwrap(priv, v.UUID)
			if err != nil {
				return err
			}
			return writeSecret(cmd, out, pass, fmt.Sprintf("recovery passphrase of %s (keyslot %d)", v.UUID, tok.Keyslot))
		}),
	}
	cmd.Flags().StringVar(&opKey, "operator-key", "", "the operator's X25519 private key (PEM, PKCS #8)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the passphrase to this new file (mode 0600) instead of standard output")
	return cmd
}
