package main

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/recovery"
)

func newLUKSRecoverCmd() *cobra.Command {
	var opKey, out string
	cmd := &cobra.Command{
		Use:   "recover DEVICE --operator-key KEY",
		Short: "Unwrap a state volume's recovery passphrase with the operator key",
		Long: `A state volume provisioned by confidisk boot with an operator recovery public
key (confidisk.recovery-key=) keeps its recovery passphrase sealed to that key
in a confidisk-recovery token; nothing of it is ever shown on the guest's
console, which the host reads. This command, run by the operator on a copy of
the volume or of its header (confidisk luks header-backup), unwraps it with the
private key, checks that it opens the recovery keyslot, and prints it (or
writes it to --out, mode 0600). Open the volume with it from a rescue system:
confidisk luks open DEVICE state --key-file FILE (or cryptsetup open).

Keys are X25519 (docs/boot.md):
  openssl genpkey -algorithm X25519 -out recovery.key
  openssl pkey -in recovery.key -pubout -out recovery.pub   # into the initrd`,
		Example: `  confidisk luks recover state.img --operator-key recovery.key --out pass.txt`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			priv, err := readOperatorKey(opKey)
			if err != nil {
				return err
			}
			if err := refuseExisting(out); err != nil {
				return err
			}
			d, h, err := openHeader(cmd, args[0])
			if err != nil {
				return err
			}
			defer d.close()
			tok, err := recovery.Find(h.Metadata.Tokens)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			pass, err := tok.Unwrap(priv, h.UUID)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if _, _, err := h.Unlock(d.f, pass, tok.Keyslot); err != nil {
				return fmt.Errorf("%s: the unwrapped passphrase does not open keyslot %d: %w", args[0], tok.Keyslot, err)
			}
			return writeSecret(cmd, out, pass, fmt.Sprintf("recovery passphrase of %s (keyslot %d)", h.UUID, tok.Keyslot))
		},
	}
	cmd.Flags().StringVar(&opKey, "operator-key", "", "the operator's X25519 private key (PEM, PKCS #8)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the passphrase to this new file (mode 0600) instead of standard output")
	return cmd
}

// readOperatorKey reads the operator's X25519 private key (--operator-key).
func readOperatorKey(path string) (*ecdh.PrivateKey, error) {
	if path == "" {
		return nil, usageError{errors.New("--operator-key is required")}
	}
	kb, err := readFileLimited(path, 64<<10)
	if err != nil {
		return nil, err
	}
	priv, err := recovery.ParsePrivateKey(kb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return priv, nil
}

func refuseExisting(out string) error {
	if out == "" {
		return nil
	}
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s exists; not overwriting it", out)
	}
	return nil
}

// writeSecret prints secret, or writes it to the new file out (mode 0600)
// and says what it wrote on standard error.
func writeSecret(cmd *cobra.Command, out string, secret []byte, what string) error {
	if out == "" {
		_, err := fmt.Fprintln(cmd.OutOrStdout(), string(secret))
		return err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(secret); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s written to %s\n", what, out)
	return nil
}
