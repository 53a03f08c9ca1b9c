package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/spf13/cobra"
	"golang.org/x/term"

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
	cmd.AddCommand(newTPMFixateCmd(), newTPMPCRsCmd(), newTPMSealCmd(), newTPMUnsealCmd(), newTPMMeasureCmd(),
		newTPMCounterCmd(), newTPMQuoteCmd(), newTPMVerifyQuoteCmd(), newTPMSRKCmd())
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

// writeOut writes a new file (mode 0600), or replaces an existing one when
// force is set.
func writeOut(path string, b []byte, force bool) error {
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
	var tf tpmFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pcrs [--pcrs LIST] [--bank BANK]",
		Short: "Read PCR values",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, list, err := tf.selection()
			if err != nil {
				return err
			}
			if list == nil {
				for i := 0; i <= tpm.MaxPCR; i++ {
					list = append(list, i)
				}
			}
			t, err := tf.open()
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
	tf.register(cmd.Flags(), "PCRs to read, e.g. 7,11,15 (default all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newTPMSealCmd() *cobra.Command {
	var (
		tf               tpmFlags
		in, out, pinFile string
	)
	var force bool
	cmd := &cobra.Command{
		Use:   "seal --in SECRET --out TOKEN.json --pcrs LIST",
		Short: "Seal a secret to the current PCR values (systemd-tpm2 token JSON)",
		Long: `Seals the contents of --in (1 to 128 bytes) under the SRK to the current values
of --pcrs, optionally with a PIN (--pin-file), and writes a systemd-tpm2 token
JSON document to --out (its keyslot field is 0); an existing --out is kept
unless --force. Unseal with "confidisk tpm unseal".`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || out == "" {
				return usageError{fmt.Errorf("--in and --out are required")}
			}
			if _, err := os.Lstat(out); err == nil && !force {
				return fmt.Errorf("%s exists; refusing to overwrite it (give --force, or another --out)", out)
			}
			b, list, err := tf.selection()
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
			t, err := tf.open()
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
			return writeOut(out, append(j, '\n'), force)
		},
	}
	tf.register(cmd.Flags(), "PCRs to seal to, e.g. 7,15")
	cmd.Flags().StringVar(&in, "in", "", "file holding the secret")
	cmd.Flags().StringVar(&out, "out", "", "token JSON to write")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing --out")
	cmd.Flags().StringVar(&pinFile, "pin-file", "", "file holding a PIN (adds PolicyAuthValue)")
	return cmd
}

func newTPMUnsealCmd() *cobra.Command {
	var (
		tf                        tpmFlags
		in, out, pinFile, sigFile string
	)
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
			t, err := tf.open()
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
	tf.registerDevice(cmd.Flags())
	cmd.Flags().StringVar(&in, "in", "", "token JSON")
	cmd.Flags().StringVar(&out, "out", "", "file to write the secret to")
	cmd.Flags().StringVar(&pinFile, "pin-file", "", "file holding the PIN")
	cmd.Flags().StringVar(&sigFile, "signature", "", "PCR signature JSON for a signed policy")
	return cmd
}

func newTPMMeasureCmd() *cobra.Command {
	var (
		tf                                  tpmFlags
		keyFile, name, uuid, logPath, banks string
	)
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
			t, err := tf.open()
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
	tf.registerDevice(cmd.Flags())
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the raw volume key")
	cmd.Flags().StringVar(&name, "name", "", "volume name")
	cmd.Flags().StringVar(&uuid, "uuid", "", "LUKS UUID")
	cmd.Flags().StringVar(&logPath, "log", "", "measurement log (default /run/log/systemd/tpm2-measure.log, - for none)")
	cmd.Flags().StringVar(&banks, "banks", "", "banks to extend, e.g. sha256 (default: all active)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the log record as JSON")
	return cmd
}

func parseNVIndex(s string) (tpm2.TPMHandle, error) {
	if s == "" {
		return 0, usageError{fmt.Errorf("--index is required, e.g. --index 0x01800100")}
	}
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil || n < 0x01000000 || n > 0x01ffffff {
		return 0, usageError{fmt.Errorf("--index %q: want an nv index handle 0x01000000..0x01ffffff (the owner's range is 0x01800000..0x01bfffff)", s)}
	}
	return tpm2.TPMHandle(n), nil
}

func newTPMCounterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "counter define|increment|read --index 0x...",
		Short: "Define, increment and read a monotonic NV counter",
		Long: `Monotonic TPM NV counters (TPM_NT_COUNTER) for roll-back protection.
"define" creates the counter (it has no value until its first increment),
"increment" adds one and prints the new value, "read" prints the value.

A counter never goes back: deleting and re-defining it makes its first
increment continue above the deleted counter's value, and until then "read"
fails with "never incremented", which after earlier increments means somebody
re-created it.`,
	}
	run := func(name, short string, f func(t transport.TPM, index tpm2.TPMHandle) (uint64, bool, error)) *cobra.Command {
		var (
			tf    tpmFlags
			index string
		)
		var asJSON bool
		c := &cobra.Command{
			Use:   name + " --index 0x...",
			Short: short,
			Args:  exactArgs(0),
			RunE: func(cmd *cobra.Command, _ []string) error {
				h, err := parseNVIndex(index)
				if err != nil {
					return err
				}
				t, err := tf.open()
				if err != nil {
					return err
				}
				defer t.Close()
				v, hasValue, err := f(t, h)
				if err != nil {
					return err
				}
				if asJSON {
					out := map[string]any{"index": fmt.Sprintf("0x%08x", uint32(h))}
					if hasValue {
						out["value"] = v
					}
					return writeJSON(cmd.OutOrStdout(), out)
				}
				if hasValue {
					fmt.Fprintln(cmd.OutOrStdout(), v)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "defined counter 0x%08x\n", uint32(h))
				}
				return nil
			},
		}
		tf.registerDevice(c.Flags())
		c.Flags().StringVar(&index, "index", "", "NV index handle, e.g. 0x01800100")
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
		return c
	}
	cmd.AddCommand(
		run("define", "Define a counter (owner hierarchy, no value until incremented)", func(t transport.TPM, h tpm2.TPMHandle) (uint64, bool, error) {
			return 0, false, tpm.DefineCounter(t, h)
		}),
		run("increment", "Increment a counter and print the new value", func(t transport.TPM, h tpm2.TPMHandle) (uint64, bool, error) {
			v, err := tpm.IncrementCounter(t, h)
			return v, err == nil, err
		}),
		run("read", "Print a counter's value", func(t transport.TPM, h tpm2.TPMHandle) (uint64, bool, error) {
			v, err := tpm.ReadCounter(t, h)
			return v, err == nil, err
		}),
	)
	return cmd
}

// quoteFile is the JSON document "tpm quote" writes and "tpm verify-quote"
// reads.
type quoteFile struct {
	Bank      tpm.Bank          `json:"bank"`
	PCRs      []int             `json:"pcrs"`
	PCRValues map[string]string `json:"pcrValues"` // pcr index → hex
	Nonce     string            `json:"nonce"`     // hex
	Attest    string            `json:"attest"`    // base64 TPMS_ATTEST
	Signature string            `json:"signature"` // base64 ASN.1 DER ECDSA
	AKPublic  string            `json:"akPublic"`  // base64 TPMT_PUBLIC
}

func parseNonce(s string) ([]byte, error) {
	if s == "" {
		return nil, usageError{fmt.Errorf("--nonce is required (hex, at most 64 bytes)")}
	}
	n, err := hex.DecodeString(s)
	if err != nil || len(n) > 64 {
		return nil, usageError{fmt.Errorf("--nonce %q: want hex of at most 64 bytes", s)}
	}
	return n, nil
}

func newTPMQuoteCmd() *cobra.Command {
	var (
		tf         tpmFlags
		nonce, out string
	)
	cmd := &cobra.Command{
		Use:   "quote --pcrs LIST --nonce HEX [--out FILE]",
		Short: "Sign PCR values with the attestation key (TPM2_Quote)",
		Long: `Creates the attestation key (an ECC P-256 restricted signing primary of the
endorsement hierarchy: the same key on every boot of this TPM), has it quote
--pcrs of --bank with --nonce, and writes a JSON document with the attestation
data and signature (base64), the AK's public area (base64 TPMT_PUBLIC) and the
quoted PCR values (hex) to --out (default standard output). Check it with
"confidisk tpm verify-quote".`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, list, err := tf.selection()
			if err != nil {
				return err
			}
			if len(list) == 0 {
				return usageError{fmt.Errorf("--pcrs is required, e.g. --pcrs 7,15")}
			}
			n, err := parseNonce(nonce)
			if err != nil {
				return err
			}
			t, err := tf.open()
			if err != nil {
				return err
			}
			defer t.Close()
			ak, err := tpm.CreateAK(t)
			if err != nil {
				return err
			}
			defer ak.Flush(t)
			q, err := tpm.Quote(t, ak, b, list, n)
			if err != nil {
				return err
			}
			f := quoteFile{
				Bank: q.Bank, PCRs: q.PCRs, PCRValues: map[string]string{}, Nonce: hex.EncodeToString(n),
				Attest:    base64.StdEncoding.EncodeToString(q.Attest),
				Signature: base64.StdEncoding.EncodeToString(q.Signature),
				AKPublic:  base64.StdEncoding.EncodeToString(ak.Public),
			}
			for p, v := range q.PCRValues {
				f.PCRValues[strconv.Itoa(p)] = hex.EncodeToString(v)
			}
			if out == "" {
				return writeJSON(cmd.OutOrStdout(), f)
			}
			j, err := json.MarshalIndent(f, "", "  ")
			if err != nil {
				return err
			}
			return os.WriteFile(out, append(j, '\n'), 0o644)
		},
	}
	tf.register(cmd.Flags(), "PCRs to quote, e.g. 7,15")
	cmd.Flags().StringVar(&nonce, "nonce", "", "verifier's nonce, hex (at most 64 bytes)")
	cmd.Flags().StringVar(&out, "out", "", "file to write the quote JSON to (default standard output)")
	return cmd
}

func newTPMVerifyQuoteCmd() *cobra.Command {
	var in, nonce string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify-quote --quote FILE --nonce HEX",
		Short: "Verify a quote from \"confidisk tpm quote\" offline",
		Long: `Checks a quote document offline: the signature of the AK public key it
carries, that the data is a TPM-generated quote, that it answers --nonce, that
it covers exactly the PCRs listed and that its PCR digest matches the listed
values. Prints the TPM's clock, reset and restart counts; fails with the reason
otherwise. Trust in the result needs trust in the AK: compare the document's
akPublic with the key enrolled for this TPM. No TPM is used.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" {
				return usageError{fmt.Errorf("--quote is required")}
			}
			n, err := parseNonce(nonce)
			if err != nil {
				return err
			}
			b, err := readFileLimited(in, 1<<20)
			if err != nil {
				return fmt.Errorf("read quote: %w", err)
			}
			if len(b) > 1<<20 {
				return fmt.Errorf("quote %s is larger than 1 MiB", in)
			}
			var f quoteFile
			if err := json.Unmarshal(b, &f); err != nil {
				return fmt.Errorf("parse quote %s: %w", in, err)
			}
			bank, err := tpm.ParseBank(string(f.Bank))
			if err != nil {
				return fmt.Errorf("quote %s: %w", in, err)
			}
			var q tpm.QuoteResult
			if q.Attest, err = base64.StdEncoding.DecodeString(f.Attest); err != nil {
				return fmt.Errorf("quote %s: attest: %w", in, err)
			}
			if q.Signature, err = base64.StdEncoding.DecodeString(f.Signature); err != nil {
				return fmt.Errorf("quote %s: signature: %w", in, err)
			}
			pubBytes, err := base64.StdEncoding.DecodeString(f.AKPublic)
			if err != nil {
				return fmt.Errorf("quote %s: akPublic: %w", in, err)
			}
			pub, err := tpm.AKPublicKey(pubBytes)
			if err != nil {
				return fmt.Errorf("quote %s: %w", in, err)
			}
			vals := map[int][]byte{}
			for k, v := range f.PCRValues {
				p, err := strconv.Atoi(k)
				if err != nil || p < 0 || p > tpm.MaxPCR {
					return fmt.Errorf("quote %s: pcr %q is not a number 0..%d", in, k, tpm.MaxPCR)
				}
				if vals[p], err = hex.DecodeString(v); err != nil {
					return fmt.Errorf("quote %s: value of pcr %d: %w", in, p, err)
				}
			}
			info, err := tpm.VerifyQuote(pub, &q, n, vals, bank)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), info)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "quote ok: %s pcrs %v\n", info.Bank, info.PCRs)
			fmt.Fprintf(w, "clock %d ms, reset count %d, restart count %d, safe %t\n", info.Clock, info.ResetCount, info.RestartCount, info.Safe)
			fmt.Fprintf(w, "firmware version 0x%016x\n", info.FirmwareVersion)
			return nil
		},
	}
	cmd.Flags().StringVar(&in, "quote", "", "quote JSON from \"confidisk tpm quote\"")
	cmd.Flags().StringVar(&nonce, "nonce", "", "the nonce the quote must answer, hex")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newTPMSRKCmd() *cobra.Command {
	var (
		tf          tpmFlags
		format, out string
	)
	cmd := &cobra.Command{
		Use:   "srk [--tpm DEVICE] [--format tpm2b|pem] [--output FILE]",
		Short: "Print the vTPM's storage root key, to seal to this vTPM offline",
		Long: `Prints the public key of the storage root key (SRK) at 0x81000001, as
"systemd-analyze srk" does: ECC P-256 or RSA (2048 bits on a TPM without ECC),
whichever is there. When the TPM has no SRK it is created first, with
systemd's template (ECC P-256, or RSA-2048 where the TPM lacks ECC;
restricted decrypt, AES-128-CFB), and made persistent, as systemd-tpm2-setup
does at boot. Whoever has this key can seal a secret to this vTPM without it,
and no other TPM can unseal that secret.

--format tpm2b (the default) writes a marshalled TPM2B_PUBLIC, what
systemd-analyze srk writes and systemd-repart --tpm2-device-key= reads. It is
binary, so it is not written to a terminal: give --output FILE. --format pem
writes the key as a PEM public key (SubjectPublicKeyInfo, as
/run/systemd/tpm2-srk-public-key.pem: the ECC point or the RSA modulus);
confidisk reads both forms.

The operator runs this on the instance (or, for an instance that is powered
off, against an swtpm started on its vTPM state: --tpm swtpm:SOCKET) and
passes the file to the build:

  confidisk tpm srk --output instance-a.srk
  confidisk image encrypt --tpm2-device-key instance-a.srk ...

image encrypt then seals the state volume's keyslot offline to instance A's
vTPM, to PCR values it is given (docs/boot.md, "Sealing offline to a vTPM's
SRK"): the volume opens on instance A and on no other instance.

Sealing to a key means trusting where it came from: a key substituted on the
way is a key somebody else can unseal with. Carry it over an authenticated
channel.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "tpm2b" && format != "pem" {
				return usageError{fmt.Errorf("--format %q: want tpm2b or pem", format)}
			}
			if out == "" && format == "tpm2b" && writerIsTerminal(cmd.OutOrStdout()) {
				return usageError{fmt.Errorf("refusing to write the binary TPM2B_PUBLIC to a terminal; give --output FILE (or --format pem, or redirect)")}
			}
			t, err := tf.open()
			if err != nil {
				return err
			}
			defer t.Close()
			b, err := srkPublic(cmd.ErrOrStderr(), t, format)
			if err != nil {
				return err
			}
			if out == "" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return os.WriteFile(out, b, 0o644)
		},
	}
	tf.registerDevice(cmd.Flags())
	cmd.Flags().StringVar(&format, "format", "tpm2b", "tpm2b (a TPM2B_PUBLIC, as systemd-analyze srk writes) or pem")
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the key to (default standard output)")
	return cmd
}

// srkPublic reads the SRK, creating it if there is none (and saying so on
// log), and renders its public key in format.
func srkPublic(log io.Writer, t transport.TPM, format string) ([]byte, error) {
	srk, created, err := tpm.GetOrCreateSRK(t)
	if err != nil {
		return nil, err
	}
	if created {
		fmt.Fprintf(log, "created the srk at 0x%08x (it is persistent: keep it, seals to it need it)\n", uint32(tpm.SRKHandle))
	}
	if format == "pem" {
		return tpm.SRKPublicPEM(&srk.Public)
	}
	return tpm.MarshalSRKPublic(&srk.Public), nil
}

// writerIsTerminal reports whether w is a terminal.
func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
