package tpm

import (
	"crypto"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Bank is a PCR bank, named by its hash algorithm as systemd names it
// ("sha1", "sha256", "sha384", "sha512"; tpm2-util.c tpm2_hash_alg_to_string).
type Bank string

// The PCR banks systemd knows.
const (
	SHA1   Bank = "sha1"
	SHA256 Bank = "sha256"
	SHA384 Bank = "sha384"
	SHA512 Bank = "sha512"
)

var banks = []struct {
	b   Bank
	alg tpm2.TPMIAlgHash
	h   crypto.Hash
}{
	{SHA1, tpm2.TPMAlgSHA1, crypto.SHA1},
	{SHA256, tpm2.TPMAlgSHA256, crypto.SHA256},
	{SHA384, tpm2.TPMAlgSHA384, crypto.SHA384},
	{SHA512, tpm2.TPMAlgSHA512, crypto.SHA512},
}

// ParseBank reads a bank name (case-insensitive, as systemd's
// tpm2_pcr_bank_from_string).
func ParseBank(s string) (Bank, error) {
	for _, b := range banks {
		if strings.EqualFold(s, string(b.b)) {
			return b.b, nil
		}
	}
	return "", fmt.Errorf("%w: pcr bank %q (want sha1, sha256, sha384 or sha512)", ErrUnsupported, s)
}

// Alg is the TPM algorithm ID of the bank's hash (Part 2, section 6.3).
func (b Bank) Alg() (tpm2.TPMIAlgHash, error) {
	for _, x := range banks {
		if x.b == b {
			return x.alg, nil
		}
	}
	return 0, fmt.Errorf("%w: pcr bank %q", ErrUnsupported, string(b))
}

// Hash is the bank's hash function.
func (b Bank) Hash() (crypto.Hash, error) {
	for _, x := range banks {
		if x.b == b {
			return x.h, nil
		}
	}
	return 0, fmt.Errorf("%w: pcr bank %q", ErrUnsupported, string(b))
}

func bankOf(alg tpm2.TPMIAlgHash) (Bank, bool) {
	for _, x := range banks {
		if x.alg == alg {
			return x.b, true
		}
	}
	return "", false
}

// MaxPCR is the highest PCR index of a PC Client TPM (24 PCRs).
const MaxPCR = 23

func checkPCRs(pcrs []int) error {
	for _, p := range pcrs {
		if p < 0 || p > MaxPCR {
			return fmt.Errorf("pcr %d out of range 0..%d", p, MaxPCR)
		}
	}
	return nil
}

func selection(alg tpm2.TPMIAlgHash, pcrs []int) tpm2.TPMLPCRSelection {
	u := make([]uint, len(pcrs))
	for i, p := range pcrs {
		u[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
		{Hash: alg, PCRSelect: tpm2.PCClientCompatible.PCRs(u...)}}}
}

// sortedPCRs returns pcrs sorted and without duplicates: the TPM digests
// PCRs in index order (Part 1, section 17.6.2; Part 3, section 23.7).
func sortedPCRs(pcrs []int) []int {
	s := slices.Clone(pcrs)
	slices.Sort(s)
	return slices.Compact(s)
}

// ReadPCRs reads PCRs of one bank (TPM2_PCR_Read, Part 3, section 22.4),
// looping because a TPM returns at most eight digests per call.
func ReadPCRs(t transport.TPM, bank Bank, pcrs []int) (map[int][]byte, error) {
	alg, err := bank.Alg()
	if err != nil {
		return nil, err
	}
	if err := checkPCRs(pcrs); err != nil {
		return nil, err
	}
	want := sortedPCRs(pcrs)
	out := make(map[int][]byte, len(want))
	for len(want) > 0 {
		rsp, err := (tpm2.PCRRead{PCRSelectionIn: selection(alg, want)}).Execute(t)
		if err != nil {
			return nil, fmt.Errorf("read pcrs %v of bank %s: %w", want, bank, err)
		}
		var got []int
		for _, sel := range rsp.PCRSelectionOut.PCRSelections {
			for i, b := range sel.PCRSelect {
				for bit := range 8 {
					if b&(1<<bit) != 0 {
						got = append(got, i*8+bit)
					}
				}
			}
		}
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("read pcrs %v of bank %s: the tpm returned %d digests for %d pcrs (is the bank allocated?)", want, bank, len(rsp.PCRValues.Digests), len(got))
		}
		for i, p := range got {
			out[p] = rsp.PCRValues.Digests[i].Buffer
		}
		want = slices.DeleteFunc(want, func(p int) bool { return out[p] != nil })
	}
	return out, nil
}

// ActiveBanks lists the PCR banks the TPM has allocated with at least one
// PCR (TPM2_GetCapability TPM_CAP_PCRS, Part 3, section 30.2), in the
// order the TPM reports them, skipping hash algorithms systemd does not know.
func ActiveBanks(t transport.TPM) ([]Bank, error) {
	rsp, err := (tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}).Execute(t)
	if err != nil {
		return nil, fmt.Errorf("get pcr banks: %w", err)
	}
	sels, err := rsp.CapabilityData.Data.AssignedPCR()
	if err != nil {
		return nil, fmt.Errorf("get pcr banks: %w", err)
	}
	var out []Bank
	for _, s := range sels.PCRSelections {
		b, ok := bankOf(s.Hash)
		if !ok || !slices.ContainsFunc(s.PCRSelect, func(x byte) bool { return x != 0 }) {
			continue
		}
		out = append(out, b)
	}
	return out, nil
}

// ExtendPCR extends one digest per bank into pcr (TPM2_PCR_Extend, Part 3,
// section 22.2): PCR_new = H(PCR_old ‖ digest) in each bank.
func ExtendPCR(t transport.TPM, pcr int, digests map[Bank][]byte) error {
	if err := checkPCRs([]int{pcr}); err != nil {
		return err
	}
	var vals tpm2.TPMLDigestValues
	for _, b := range banks {
		d, ok := digests[b.b]
		if !ok {
			continue
		}
		if len(d) != b.h.Size() {
			return fmt.Errorf("extend pcr %d: %s digest has %d bytes, want %d", pcr, b.b, len(d), b.h.Size())
		}
		vals.Digests = append(vals.Digests, tpm2.TPMTHA{HashAlg: b.alg, Digest: d})
	}
	if len(vals.Digests) == 0 {
		return fmt.Errorf("extend pcr %d: no digests", pcr)
	}
	_, err := (tpm2.PCRExtend{PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)}, Digests: vals}).Execute(t)
	if err != nil {
		return fmt.Errorf("extend pcr %d: %w", pcr, err)
	}
	return nil
}

// ExtendValue computes what a PCR holds after extending digest into old:
// H(old ‖ digest) (Part 1, section 17.2).
func ExtendValue(bank Bank, old, digest []byte) ([]byte, error) {
	h, err := bank.Hash()
	if err != nil {
		return nil, err
	}
	x := h.New()
	x.Write(old)
	x.Write(digest)
	return x.Sum(nil), nil
}
