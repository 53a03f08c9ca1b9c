package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/attest"
	"github.com/confidisk/confidisk/broker"
	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/broker/client"
	"github.com/confidisk/confidisk/provision"
	"github.com/confidisk/confidisk/recovery"
)

// brokerFlags say how to reach a broker.
type brokerFlags struct {
	url, data, ca, cert, key string
	asJSON                   bool
}

// client connects to the broker: the server certificate from --ca (default
// DATA/tls/server.crt) and, when one is there, the operator certificate
// from --cert/--key (default DATA/tls/operator.{crt,key}).
func (f *brokerFlags) client() (*client.Client, error) {
	data := f.data
	if data == "" {
		var err error
		if data, err = defaultDataDir(); err != nil {
			return nil, err
		}
	}
	files := broker.TLSPaths(filepath.Join(data, "tls"))
	ca := f.ca
	if ca == "" {
		ca = files.ServerCert
	}
	cert, key := f.cert, f.key
	if cert == "" {
		if _, err := os.Stat(files.OperatorCert); err == nil {
			cert, key = files.OperatorCert, files.OperatorKey
		}
	}
	if (cert == "") != (key == "") {
		return nil, usageError{errors.New("--cert and --key go together")}
	}
	tc, err := client.TLSConfig(ca, cert, key)
	if err != nil {
		return nil, fmt.Errorf("%w (give the broker's certificate with --ca, or its data directory with --data)", err)
	}
	return client.New(f.url, client.Options{TLS: tc})
}

func newBrokerCmd() *cobra.Command {
	var f brokerFlags
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Talk to a confidisk broker: volumes, epochs, keys (operators and tools)",
		Long: `Calls a broker started with "confidisk serve" over HTTPS.

The broker's certificate is pinned (--ca, default DATA/tls/server.crt) and the
operator client certificate (--cert/--key, default DATA/tls/operator.crt and
.key when present) is presented; DATA is --data, by default the directory
"confidisk serve" uses. So on the broker's own machine

  confidisk broker volumes

works as it is. Endpoints marked "operator" need the operator certificate.`,
	}
	p := cmd.PersistentFlags()
	p.StringVar(&f.url, "url", "https://127.0.0.1:8443", "the broker's address")
	p.StringVar(&f.data, "data", "", "the broker's data directory, for its certificates (default: that of confidisk serve)")
	p.StringVar(&f.ca, "ca", "", "PEM certificate(s) the broker's certificate must chain to (default DATA/tls/server.crt)")
	p.StringVar(&f.cert, "cert", "", "operator client certificate (default DATA/tls/operator.crt if it exists)")
	p.StringVar(&f.key, "key", "", "operator client key (default DATA/tls/operator.key)")

	// run wraps a call with the client.
	run := func(fn func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			return fn(cmd, c, args)
		}
	}
	printVolume := func(w io.Writer, v *api.Volume) {
		fmt.Fprintf(w, "volume %s\n  key id       %s\n  created      %s\n", v.UUID, v.KeyID, v.CreatedAt.Format("2006-01-02 15:04:05 MST"))
		if len(v.Measurements) > 0 {
			fmt.Fprintf(w, "  measurements %s\n", v.Measurements)
		}
		if len(v.Recovery) > 0 {
			fmt.Fprintf(w, "  recovery     escrowed (confidisk broker recover %s --operator-key KEY)\n", v.UUID)
		}
	}
	// showVolume prints a volume as text, or as JSON with --json.
	showVolume := func(cmd *cobra.Command, v *api.Volume) error {
		if f.asJSON {
			return writeJSON(cmd.OutOrStdout(), v)
		}
		printVolume(cmd.OutOrStdout(), v)
		return nil
	}

	health := &cobra.Command{
		Use:   "health",
		Short: "Check that the broker answers (GET /healthz)",
		Args:  exactArgs(0),
		RunE: run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			if err := c.Healthy(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		}),
	}
	volume := &cobra.Command{
		Use:   "volume UUID",
		Short: "Show what the broker knows of a volume: key id, creation time, measurements",
		Args:  exactArgs(1),
		RunE: run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			v, err := c.Volume(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return showVolume(cmd, v)
		}),
	}
	volumes := &cobra.Command{
		Use:   "volumes",
		Short: "List every registered volume (operator)",
		Args:  exactArgs(0),
		RunE: run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
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
	}
	epoch := &cobra.Command{
		Use:   "epoch UUID",
		Short: "Show a volume's freshness epoch (roll-back protection)",
		Args:  exactArgs(1),
		RunE: run(func(cmd *cobra.Command, c *client.Client, args []string) error {
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
	}
	registerCreation := &cobra.Command{
		Use:   "register-creation DEVICE",
		Short: "Register a volume with the creation record its first boot stored in its header",
		Long: `Reads the creation record (a vTPM quote over the volume key id, made by the
guest that created the volume) from the confidisk-creation token of the LUKS2
header on DEVICE and hands it to the broker, which checks it against its policy
and records the volume. Anyone may do this: the record proves itself.`,
		Args: exactArgs(1),
		RunE: run(func(cmd *cobra.Command, c *client.Client, args []string) error {
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
			return showVolume(cmd, v)
		}),
	}
	var uuid, keyID, keyFile string
	register := &cobra.Command{
		Use:   "register --uuid UUID --key-id HEX",
		Short: "Register a pre-encrypted volume (operator)",
		Args:  exactArgs(0),
		RunE: run(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			if uuid == "" || keyID == "" {
				return usageError{errors.New("--uuid and --key-id are required")}
			}
			v, err := c.Register(cmd.Context(), api.RegisterRequest{Volume: api.VolumeSpec{UUID: uuid, KeyID: keyID}})
			if err != nil {
				return err
			}
			return showVolume(cmd, v)
		}),
	}
	register.Flags().StringVar(&uuid, "uuid", "", "the volume's LUKS2 UUID")
	register.Flags().StringVar(&keyID, "key-id", "", "the volume key's id (hex, e.g. its fixate-volume-key= value)")
	putKey := &cobra.Command{
		Use:   "put-key UUID --key-id HEX --key-file FILE",
		Short: "Store a pre-encrypted volume's key, released later only to attested guests (operator)",
		Args:  exactArgs(1),
		RunE: run(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if keyID == "" || keyFile == "" {
				return usageError{errors.New("--key-id and --key-file are required")}
			}
			key, err := readKeyFile(keyFile)
			if err != nil {
				return err
			}
			if err := c.PutKey(cmd.Context(), args[0], keyID, key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key of volume %s stored (%d bytes)\n", args[0], len(key))
			return nil
		}),
	}
	putKey.Flags().StringVar(&keyID, "key-id", "", "the key's id (hex), as registered")
	putKey.Flags().StringVar(&keyFile, "key-file", "", "file holding the raw volume key (- for standard input)")

	for _, c := range []*cobra.Command{volume, volumes, epoch, registerCreation, register} {
		c.Flags().BoolVar(&f.asJSON, "json", false, "print JSON")
	}
	var opKey, out string
	recoverCmd := &cobra.Command{
		Use:   "recover UUID --operator-key KEY",
		Short: "Unwrap a volume's escrowed recovery passphrase (operator)",
		Long: `First boot escrows the state volume's recovery token (its recovery passphrase
sealed to the operator's X25519 key) with the broker. This fetches it with the
operator certificate and unwraps it with the operator key, for when the token
in the volume's header is gone. confidisk luks recover does the same from the
header and also checks the passphrase against the keyslot.`,
		Args: exactArgs(1),
		RunE: run(func(cmd *cobra.Command, c *client.Client, args []string) error {
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
	recoverCmd.Flags().StringVar(&opKey, "operator-key", "", "the operator's X25519 private key (PEM, PKCS #8)")
	recoverCmd.Flags().StringVarP(&out, "out", "o", "", "write the passphrase to this new file (mode 0600) instead of standard output")
	cmd.AddCommand(health, volume, volumes, epoch, registerCreation, register, putKey, recoverCmd)
	return cmd
}
