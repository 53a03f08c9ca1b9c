package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/confidisk/confidisk/enroll"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
)

// parseTPM2PCRs reads systemd-cryptenroll's --tpm2-pcrs syntax: PCRs
// separated by "+" (or ","), each optionally with an expected value
// "15:sha256=<hex>" instead of the current one. It returns the PCRs, the
// explicit values and the bank named in them (if any).
func parseTPM2PCRs(s string) ([]int, map[int][]byte, tpm.Bank, error) {
	var pcrs []int
	vals := map[int][]byte{}
	var bank tpm.Bank
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '+' || r == ',' }) {
		idx, spec, hasValue := strings.Cut(f, ":")
		n, err := strconv.Atoi(idx)
		if err != nil || n < 0 || n > tpm.MaxPCR {
			return nil, nil, "", fmt.Errorf("invalid PCR %q in --tpm2-pcrs", f)
		}
		if hasValue {
			b, hexval, ok := strings.Cut(spec, "=")
			if !ok {
				return nil, nil, "", fmt.Errorf("PCR value %q: want PCR:BANK=HEX", f)
			}
			pb, err := tpm.ParseBank(b)
			if err != nil {
				return nil, nil, "", err
			}
			if bank != "" && pb != bank {
				return nil, nil, "", errors.New("all PCR values in --tpm2-pcrs must use the same bank")
			}
			bank = pb
			v, err := hex.DecodeString(hexval)
			if err != nil {
				return nil, nil, "", fmt.Errorf("PCR %d value is not hex: %w", n, err)
			}
			vals[n] = v
		}
		if !slices.Contains(pcrs, n) {
			pcrs = append(pcrs, n)
		}
	}
	slices.Sort(pcrs)
	return pcrs, vals, bank, nil
}

func newLUKSEnrollTPM2Cmd() *cobra.Command {
	var (
		tpmDevice, pcrSpec, keyFile, pubKey string
		withPIN, legacy                     bool
	)
	cmd := &cobra.Command{
		Use:   "enroll-tpm2 DEVICE",
		Short: "Seal a new keyslot to the TPM (a systemd-tpm2 token, as systemd-cryptenroll)",
		Long: `Unlock DEVICE with an existing passphrase and add a keyslot whose passphrase is
a random secret sealed by the TPM, described by a systemd-tpm2 token — field for
field what systemd-cryptenroll --tpm2-device writes, so systemd-cryptsetup and
cryptsetup's systemd token plugin unlock it too.

--tpm2-pcrs uses systemd's syntax: "7+11" seals to the current values,
"7+15:sha256=0000…0000" to the given one (PCR 15 at zero: nothing can unseal
once a volume key was measured). --tpm2-legacy seals under systemd's older
transient ECC primary instead of the persistent SRK, for systemd < 255.`,
		Example: `  confidisk luks enroll-tpm2 /dev/vdb --tpm2-pcrs 7+15:sha256=0000000000000000000000000000000000000000000000000000000000000000
  confidisk luks enroll-tpm2 disk.img --tpm2-device swtpm:/run/swtpm/sock --tpm2-pcrs 7 --tpm2-with-pin`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pcrs, vals, bank, err := parseTPM2PCRs(pcrSpec)
			if err != nil {
				return usageError{err}
			}
			so := tpm.SealOptions{Bank: bank, PCRs: pcrs, PCRValues: vals, Legacy: legacy}
			if pubKey != "" {
				if so.PolicyKeyPEM, err = os.ReadFile(pubKey); err != nil {
					return err
				}
				so.PolicyKeyPCRs = []int{11}
			}
			if _, err := tpm.ParseDevice(tpmDevice); err != nil {
				return usageError{err}
			}
			return withHeader(cmd, args[0], func(d *device, h *luks2.Header) (bool, error) {
				pass, err := readKey(cmd, keyFile, "Enter any existing passphrase: ", false)
				if err != nil {
					return false, err
				}
				vk, _, err := h.Unlock(d.f, pass, -1)
				if err != nil {
					return false, err
				}
				if err := d.auth.unlocked(h, vk); err != nil {
					return false, err
				}
				if withPIN {
					if so.PIN, err = readKey(cmd, "", "Enter new TPM2 PIN: ", true); err != nil {
						return false, err
					}
				}
				t, err := openTPMFlag(tpmDevice)
				if err != nil {
					return false, fmt.Errorf("open TPM %s: %w", tpmDevice, err)
				}
				defer t.Close()
				slot, tok, err := enroll.AddEnrollment(t, d.f, h, vk, enroll.EnrollOptions{SealOptions: so, SaltPIN: withPIN && !legacy, Keyslot: -1, TokenID: -1})
				if err != nil {
					return false, err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "New TPM2 token %d enrolled in keyslot %d.\n", tok, slot)
				return true, nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&tpmDevice, "tpm2-device", tpm.DefaultDevice, "TPM: /dev/tpmrm0, or swtpm:PATH")
	fl.StringVar(&pcrSpec, "tpm2-pcrs", "7", "PCRs to seal to, systemd syntax (7+11, 15:sha256=HEX)")
	fl.BoolVar(&withPIN, "tpm2-with-pin", false, "also require a PIN (asked twice)")
	fl.StringVar(&pubKey, "tpm2-public-key", "", "PEM RSA public key that signs PCR 11 policies (systemd-measure)")
	fl.BoolVar(&legacy, "tpm2-legacy", false, "seal under systemd's transient ECC primary (systemd < 255)")
	fl.StringVarP(&keyFile, "key-file", "d", "", "read an existing passphrase from this file (- for standard input)")
	return cmd
}

// defaultPCRSignatures are where a signed PCR policy's signature is looked
// for when none is given, as systemd-cryptsetup does: systemd's copy in
// /run, then systemd-stub's in the initrd.
var defaultPCRSignatures = []string{"/run/systemd/tpm2-pcr-signature.json", "/.extra/tpm2-pcr-signature.json"}

// unlockWithTPM2 opens a volume with its systemd-tpm2 token, asking for the
// PIN when the token needs one. sigFile is the PCR signature document for a
// token with a signed policy ("" looks in [defaultPCRSignatures]).
func unlockWithTPM2(cmd *cobra.Command, device, sigFile string, d *device, h *luks2.Header) ([]byte, error) {
	sig, err := pcrSignature(sigFile)
	if err != nil {
		return nil, err
	}
	t, err := openTPMFlag(device)
	if err != nil {
		return nil, fmt.Errorf("open TPM %s: %w", device, err)
	}
	defer t.Close()
	vk, _, err := enroll.UnlockWithToken(t, d.f, h, -1, tpm.UnsealOptions{Signature: sig})
	if errors.Is(err, tpm.ErrPINRequired) {
		pin, perr := readKey(cmd, "", "Enter TPM2 PIN: ", false)
		if perr != nil {
			return nil, perr
		}
		vk, _, err = enroll.UnlockWithToken(t, d.f, h, -1, tpm.UnsealOptions{PIN: pin, Signature: sig})
	}
	return vk, err
}

// pcrSignature reads the signature document sigFile, or the first of
// [defaultPCRSignatures] that exists (nil when none does).
func pcrSignature(sigFile string) ([]byte, error) {
	if sigFile != "" {
		b, err := os.ReadFile(sigFile)
		if err != nil {
			return nil, fmt.Errorf("--tpm2-signature: %w", err)
		}
		return b, nil
	}
	for _, p := range defaultPCRSignatures {
		if b, err := os.ReadFile(p); err == nil {
			return b, nil
		}
	}
	return nil, nil
}
