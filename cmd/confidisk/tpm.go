package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/tpm"
)

func newTPMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tpm",
		Short: "Seal keys to the TPM, measure volume keys, read PCRs (systemd-compatible)",
		Long: `Commands for the guest's (v)TPM. Sealing follows systemd-cryptenroll: a secret
is sealed under the storage root key at 0x81000001 to PCR values (and
optionally a PIN), and unsealed in an encrypted session. Volume keys are
measured into PCR 15 exactly as systemd-cryptsetup's tpm2-measure-pcr=yes does.

--tpm selects the TPM: /dev/tpmrm0 (default) or swtpm:PATH for an swtpm
unix socket.`,
	}
	cmd.AddCommand(newTPMFixateCmd(), newTPMPCRsCmd(), newTPMSealCmd(), newTPMUnsealCmd(), newTPMMeasureCmd())
	return cmd
}

func openTPMFlag(spec string) (transport.TPMCloser, error) {
	d, err := tpm.ParseDevice(spec)
	if err != nil {
		return nil, usageError{err}
	}
	return tpm.Open(d)
}

func parsePCRList(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '+' }) {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n > tpm.MaxPCR {
			return nil, usageError{fmt.Errorf("pcr %q: want numbers 0..%d separated by , or +", f, tpm.MaxPCR)}
		}
		out = append(out, n)
	}
	return out, nil
}

func readKeyFile(path string) ([]byte, error) {
	if path == "" {
		return nil, usageError{fmt.Errorf("--key-file is required")}
	}
	b, err := readFileLimited(path, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if len(b) == 0 || len(b) > 1<<20 {
		return nil, fmt.Errorf("key file %s is empty or larger than 1 MiB", path)
	}
	return b, nil
}

func newTPMFixateCmd() *cobra.Command {
	var keyFile, name, uuid string
	cmd := &cobra.Command{
		Use:   "fixate --key-file FILE --name NAME --uuid UUID",
		Short: "Print the fixate-volume-key= value (HMAC-SHA256 of the volume key)",
		Long: `Prints what systemd's crypttab option fixate-volume-key= expects for a volume:
the lowercase hex of HMAC-SHA256(volume key, "cryptsetup:NAME:UUID"), which is
also the sha256 digest systemd-cryptsetup extends into PCR 15. No TPM is used.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || uuid == "" {
				return usageError{fmt.Errorf("--name and --uuid are required")}
			}
			vk, err := readKeyFile(keyFile)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tpm.FixateValue(vk, name, uuid))
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the raw volume key")
	cmd.Flags().StringVar(&name, "name", "", "volume name (as in crypttab)")
	cmd.Flags().StringVar(&uuid, "uuid", "", "LUKS UUID of the volume")
	return cmd
}

func newTPMPCRsCmd() *cobra.Command {
	var dev, bank, pcrs string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pcrs [--pcrs LIST] [--bank BANK]",
		Short: "Read PCR values",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := tpm.ParseBank(bank)
			if err != nil {
				return usageError{err}
			}
			list, err := parsePCRList(pcrs)
			if err != nil {
				return err
			}
			if list == nil {
				for i := 0; i <= tpm.MaxPCR; i++ {
					list = append(list, i)
				}
			}
			t, err := openTPMFlag(dev)
			if err != nil {
				return err
			}
			defer t.Close()
			vals, err := tpm.ReadPCRs(t, b, list)
			if err != nil {
				return err
			}
			if asJSON {
				out := map[string]string{}
				for p, v := range vals {
					out[strconv.Itoa(p)] = hex.EncodeToString(v)
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{"bank": b, "pcrs": out})
			}
			for i := 0; i <= tpm.MaxPCR; i++ {
				if v, ok := vals[i]; ok {
					fmt.Fprintf(cmd.OutOrStdout(), "%s:%-2d %x\n", b, i, v)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dev, "tpm", tpm.DefaultDevice, "TPM device, or swtpm:PATH")
	cmd.Flags().StringVar(&bank, "bank", "sha256", "PCR bank")
	cmd.Flags().StringVar(&pcrs, "pcrs", "", "PCRs to read, e.g. 7,11,15 (default all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newTPMSealCmd() *cobra.Command {
	var dev, bank, pcrs, in, out, pinFile string
	cmd := &cobra.Command{
		Use:   "seal --in SECRET --out TOKEN.json --pcrs LIST",
		Short: "Seal a secret to the current PCR values (systemd-tpm2 token JSON)",
		Long: `Seals the contents of --in (1 to 128 bytes) under the SRK to the current values
of --pcrs, optionally with a PIN (--pin-file), and writes a systemd-tpm2 token
JSON document to --out (its keyslot field is 0). Unseal with "confidisk tpm unseal".`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || out == "" {
				return usageError{fmt.Errorf("--in and --out are required")}
			}
			b, err := tpm.ParseBank(bank)
			if err != nil {
				return usageError{err}
			}
			list, err := parsePCRList(pcrs)
			if err != nil {
				return err
			}
			secret, err := readKeyFile(in)
			if err != nil {
				return err
			}
			o := tpm.SealOptions{Bank: b, PCRs: list}
			if pinFile != "" {
				if o.PIN, err = readKeyFile(pinFile); err != nil {
					return err
				}
			}
			t, err := openTPMFlag(dev)
			if err != nil {
				return err
			}
			defer t.Close()
			s, err := tpm.Seal(t, secret, o)
			if err != nil {
				return err
			}
			j, err := tpm.NewToken(s, 0).Marshal()
			if err != nil {
				return err
			}
			return os.WriteFile(out, append(j, '\n'), 0o600)
		},
	}
	cmd.Flags().StringVar(&dev, "tpm", tpm.DefaultDevice, "TPM device, or swtpm:PATH")
	cmd.Flags().StringVar(&bank, "bank", "sha256", "PCR bank")
	cmd.Flags().StringVar(&pcrs, "pcrs", "", "PCRs to seal to, e.g. 7,15")
	cmd.Flags().StringVar(&in, "in", "", "file holding the secret")
	cmd.Flags().StringVar(&out, "out", "", "token JSON to write")
	cmd.Flags().StringVar(&pinFile, "pin-file", "", "file holding a PIN (adds PolicyAuthValue)")
	return cmd
}

func newTPMUnsealCmd() *cobra.Command {
	var dev, in, out, pinFile, sigFile string
	cmd := &cobra.Command{
		Use:   "unseal --in TOKEN.json --out SECRET",
		Short: "Unseal a secret from a systemd-tpm2 token JSON",
		Long: `Unseals the secret of a systemd-tpm2 token (from "confidisk tpm seal", or
exported with "cryptsetup token export") and writes it to --out (mode 0600).
The secret is never printed.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || out == "" {
				return usageError{fmt.Errorf("--in and --out are required")}
			}
			j, err := readKeyFile(in)
			if err != nil {
				return err
			}
			tk, err := tpm.ParseToken(j)
			if err != nil {
				return err
			}
			s, err := tk.Sealed()
			if err != nil {
				return err
			}
			var o tpm.UnsealOptions
			if pinFile != "" {
				if o.PIN, err = readKeyFile(pinFile); err != nil {
					return err
				}
			}
			if sigFile != "" {
				if o.Signature, err = readKeyFile(sigFile); err != nil {
					return err
				}
			}
			t, err := openTPMFlag(dev)
			if err != nil {
				return err
			}
			defer t.Close()
			secret, err := tpm.Unseal(t, s, o)
			if err != nil {
				return err
			}
			return os.WriteFile(out, secret, 0o600)
		},
	}
	cmd.Flags().StringVar(&dev, "tpm", tpm.DefaultDevice, "TPM device, or swtpm:PATH")
	cmd.Flags().StringVar(&in, "in", "", "token JSON")
	cmd.Flags().StringVar(&out, "out", "", "file to write the secret to")
	cmd.Flags().StringVar(&pinFile, "pin-file", "", "file holding the PIN")
	cmd.Flags().StringVar(&sigFile, "signature", "", "PCR signature JSON for a signed policy")
	return cmd
}

func newTPMMeasureCmd() *cobra.Command {
	var dev, keyFile, name, uuid, logPath, banks string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "measure-volume --key-file FILE --name NAME --uuid UUID",
		Short: "Measure a volume key into PCR 15 as systemd-cryptsetup does",
		Long: `Extends HMAC(volume key, "cryptsetup:NAME:UUID") into PCR 15 of every active
bank (or --banks) and appends a "volume-key" record to the measurement log
(default /run/log/systemd/tpm2-measure.log; --log - for none).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || uuid == "" {
				return usageError{fmt.Errorf("--name and --uuid are required")}
			}
			vk, err := readKeyFile(keyFile)
			if err != nil {
				return err
			}
			o := tpm.MeasureOptions{LogPath: logPath}
			for _, s := range strings.FieldsFunc(banks, func(r rune) bool { return r == ',' }) {
				b, err := tpm.ParseBank(s)
				if err != nil {
					return usageError{err}
				}
				o.Banks = append(o.Banks, b)
			}
			t, err := openTPMFlag(dev)
			if err != nil {
				return err
			}
			defer t.Close()
			rec, err := tpm.MeasureVolumeKey(t, vk, name, uuid, o)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rec)
			}
			for _, d := range rec.Digests {
				fmt.Fprintf(cmd.OutOrStdout(), "pcr %d %s extended with %s\n", rec.PCR, d.HashAlg, d.Digest)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dev, "tpm", tpm.DefaultDevice, "TPM device, or swtpm:PATH")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the raw volume key")
	cmd.Flags().StringVar(&name, "name", "", "volume name")
	cmd.Flags().StringVar(&uuid, "uuid", "", "LUKS UUID")
	cmd.Flags().StringVar(&logPath, "log", "", "measurement log (default /run/log/systemd/tpm2-measure.log, - for none)")
	cmd.Flags().StringVar(&banks, "banks", "", "banks to extend, e.g. sha256 (default: all active)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the log record as JSON")
	return cmd
}
