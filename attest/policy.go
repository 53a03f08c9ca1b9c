package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/confidisk/confidisk/tpm"
)

// DefaultVolumeName is the volume name whose PCR 15 volume-key record gives
// the claims when the log holds several ("state", the name the guest boot
// flow opens its read-write volume under).
const DefaultVolumeName = "state"

// Policy is the verifier's reference values, written by image building and
// read with [ParsePolicy] or [LoadPolicy]. Its JSON format is documented in
// the package documentation and docs/attestation.md.
type Policy struct {
	// Version is 1.
	Version int `json:"version"`
	// Bank is the PCR bank the values are for; "" means sha256.
	Bank tpm.Bank `json:"bank,omitempty"`
	// PCRs maps a PCR index to the values it may hold (lowercase hex, any
	// one of them). Every listed PCR must be quoted. At least one PCR.
	PCRs map[int][]string `json:"pcrs"`
	// RootHashes are the dm-verity root hashes (the roothash=/usrhash=
	// values, hex) the guest may run.
	RootHashes []string `json:"root_hashes,omitempty"`
	// RequireRootHash refuses evidence without a verified dm-verity record
	// (see [Measurements.RootHash]).
	RequireRootHash bool `json:"require_root_hash,omitempty"`
	// AttestationKeys, when not empty, pins the attestation keys allowed:
	// each is [AKFingerprint] of one guest's AK.
	AttestationKeys []string `json:"attestation_keys,omitempty"`
	// RequireTEE refuses evidence without a verified SEV-SNP or TDX report.
	RequireTEE bool `json:"require_tee,omitempty"`
	// VolumeName is the volume whose measurement gives the claims when PCR
	// 15 holds several; "" means [DefaultVolumeName].
	VolumeName string `json:"volume_name,omitempty"`
	// SEVSNP are reference values for SEV-SNP reports (checked by the
	// verifier registered for [TEESEVSNP], package attest/snp).
	SEVSNP *SEVSNPPolicy `json:"sev_snp,omitempty"`
	// TDX are reference values for TDX quotes (package attest/tdx).
	TDX *TDXPolicy `json:"tdx,omitempty"`
}

// SEVSNPPolicy are reference values for SEV-SNP reports.
type SEVSNPPolicy struct {
	// Measurements are the launch MEASUREMENT values allowed (hex, 48
	// bytes; SEV-SNP ABI, ATTESTATION_REPORT offset 0x90); empty allows any.
	Measurements []string `json:"measurements,omitempty"`
}

// TDXPolicy are reference values for TDX quotes.
type TDXPolicy struct {
	// MRTDs are the MRTD values allowed (hex, 48 bytes: the measurement
	// of the TD's initial contents, its firmware); empty allows any.
	MRTDs []string `json:"mrtds,omitempty"`
}

// AKFingerprint is the lowercase hex SHA-256 of an attestation key's
// marshalled TPMT_PUBLIC ([Evidence.AKPublic], tpm.AK.Public): the value
// [Policy.AttestationKeys] lists.
func AKFingerprint(akPublic []byte) string {
	s := sha256.Sum256(akPublic)
	return hex.EncodeToString(s[:])
}

// LoadPolicy reads a policy file.
func LoadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy decodes a policy strictly (unknown fields are errors) and
// checks it; hex values come back lowercase.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parse policy: data after the json object")
	}
	if err := p.normalize(); err != nil {
		return nil, fmt.Errorf("parse policy: %w", err)
	}
	return &p, nil
}

// normalize checks p and fills in defaults.
func (p *Policy) normalize() error {
	if p.Version != 1 {
		return fmt.Errorf("version %d (want 1)", p.Version)
	}
	if p.Bank == "" {
		p.Bank = tpm.SHA256
	}
	b, err := tpm.ParseBank(string(p.Bank))
	if err != nil {
		return err
	}
	p.Bank = b
	h, _ := b.Hash()
	if len(p.PCRs) == 0 {
		return errors.New("no pcrs: a policy must pin at least one pcr")
	}
	for i, vals := range p.PCRs {
		if i < 0 || i > tpm.MaxPCR {
			return fmt.Errorf("pcr %d out of range 0..%d", i, tpm.MaxPCR)
		}
		if len(vals) == 0 {
			return fmt.Errorf("pcr %d: no allowed values", i)
		}
		for j, v := range vals {
			if vals[j], err = hexOf(v, h.Size()); err != nil {
				return fmt.Errorf("pcr %d: %w", i, err)
			}
		}
	}
	for i, v := range p.RootHashes {
		// A root hash is the digest of the verity hash algorithm (sha256 by
		// default, up to sha512).
		if p.RootHashes[i], err = hexOf(v, 0); err != nil {
			return fmt.Errorf("root hash: %w", err)
		}
	}
	for i, v := range p.AttestationKeys {
		if p.AttestationKeys[i], err = hexOf(v, sha256.Size); err != nil {
			return fmt.Errorf("attestation key: %w", err)
		}
	}
	if p.VolumeName == "" {
		p.VolumeName = DefaultVolumeName
	}
	if p.SEVSNP != nil {
		for i, v := range p.SEVSNP.Measurements {
			if p.SEVSNP.Measurements[i], err = hexOf(v, 48); err != nil {
				return fmt.Errorf("sev_snp measurement: %w", err)
			}
		}
	}
	if p.TDX != nil {
		for i, v := range p.TDX.MRTDs {
			if p.TDX.MRTDs[i], err = hexOf(v, 48); err != nil {
				return fmt.Errorf("tdx mrtd: %w", err)
			}
		}
	}
	return nil
}

// hexOf lowercases v and checks that it is hex of size bytes (any size
// from 16 to 64 when size is 0).
func hexOf(v string, size int) (string, error) {
	raw, err := hex.DecodeString(v)
	if err != nil {
		return "", fmt.Errorf("%q is not hex", v)
	}
	if size != 0 && len(raw) != size || size == 0 && (len(raw) < 16 || len(raw) > 64) {
		return "", fmt.Errorf("%q has %d bytes", v, len(raw))
	}
	return strings.ToLower(v), nil
}

// allowsAK says whether the policy accepts an AK.
func (p *Policy) allowsAK(akPublic []byte) bool {
	return len(p.AttestationKeys) == 0 || slices.Contains(p.AttestationKeys, AKFingerprint(akPublic))
}
