package attest

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"

	"github.com/confidisk/confidisk/tpm"
)

// Version is the evidence and creation-record format version.
const Version = 1

// Limits of [ParseEvidence]; larger fields are refused as malformed.
const (
	// MaxEvidenceSize bounds the whole JSON document.
	MaxEvidenceSize = 8 << 20
	// MaxNonceSize is the TPM's bound on qualifying data (TPM2B_DATA holds
	// at most sizeof(TPMT_HA), 64 bytes; TPM 2.0 Part 2, section 10.4.3).
	MaxNonceSize = 64
	// MaxReleaseKeySize admits an uncompressed P-521 point (133 bytes) with
	// room to spare.
	MaxReleaseKeySize = 256
	// MaxPublicSize bounds the AK's TPMT_PUBLIC (TPM 2.0 Part 2,
	// section 12.2.4; an ECC P-256 key is about 90 bytes).
	MaxPublicSize = 1024
)

// TEE report types for [TEEReport.Type].
const (
	// TEESEVSNP is an AMD SEV-SNP ATTESTATION_REPORT (SEV-SNP ABI
	// specification, Table 22), from /dev/sev-guest or configfs-tsm.
	TEESEVSNP = "sev-snp"
	// TEETDX is an Intel TDX quote (TDX DCAP Quote Generation Library,
	// quote format v4), whose TDREPORT REPORTDATA is the binding.
	TEETDX = "tdx"
)

// Evidence is what a guest sends a verifier: a TPM quote with the logs
// that explain the quoted PCRs and, when the guest has one, a
// confidential-computing report. It is JSON (byte strings as base64), and
// its shape is versioned by Version; see docs/attestation.md.
//
// # Binding
//
// The quote's qualifying data (TPMS_ATTEST.extraData, TPM 2.0 Part 2,
// section 10.12.12) is [Binding] of Nonce, ReleaseKey, AKPublic and both
// logs, never the bare nonce, so that none of them can be replaced after
// the guest signed: another release key would have keys wrapped to an
// attacker, another AK would let a software TPM speak for the guest, and
// other log content would change what the verifier reads out of it
// (record strings such as the volume UUID are not covered by the PCR
// digests). A TEE report's report_data is [TEEReportData] of the same
// inputs, which ties the AK to the hardware-rooted report.
type Evidence struct {
	// Version is [Version].
	Version int `json:"version"`
	// Nonce is the verifier's nonce the guest answers (for a
	// [CreationRecord]: the volume key id, 32 bytes).
	Nonce []byte `json:"nonce"`
	// AKPublic is the attestation key's marshalled TPMT_PUBLIC (TPM 2.0
	// Part 2, section 12.2.4), as tpm.AK.Public.
	AKPublic []byte `json:"ak_public"`
	// Quote is the TPM2_Quote output (Part 3, section 18.4).
	Quote Quote `json:"quote"`
	// Bank is the quoted PCR bank.
	Bank tpm.Bank `json:"bank"`
	// PCRs are the quoted PCR values by index (JSON object keys are the
	// decimal indices).
	PCRs map[int][]byte `json:"pcrs"`
	// MeasureLog is systemd's userspace measurement log as read from
	// /run/log/systemd/tpm2-measure.log (RFC 7464 JSON text sequence;
	// systemd src/shared/tpm2-util.c tpm2_userspace_log), possibly empty.
	MeasureLog []byte `json:"measure_log"`
	// FirmwareLog is the TCG PC Client firmware event log (crypto-agile
	// TCG_PCR_EVENT2 records; TCG PC Client Platform Firmware Profile,
	// section 10) from /sys/kernel/security/tpm0/binary_bios_measurements,
	// if the guest could read it. It is carried and bound, not yet replayed.
	FirmwareLog []byte `json:"firmware_log,omitempty"`
	// ReleaseKey is the public key (an uncompressed P-256 point) the guest
	// wants released keys wrapped to, if any.
	ReleaseKey []byte `json:"release_key,omitempty"`
	// TEEReport is the guest's SEV-SNP or TDX report, if it has one.
	TEEReport *TEEReport `json:"tee_report,omitempty"`
}

// Quote is a TPM2_Quote result.
type Quote struct {
	// Attest is the signed TPMS_ATTEST (Part 2, section 10.12.12), without
	// the TPM2B_ATTEST size prefix.
	Attest []byte `json:"attest"`
	// Signature is the AK's ECDSA signature over SHA-256(Attest), ASN.1 DER.
	Signature []byte `json:"signature"`
}

// TEEReport is a confidential-computing attestation report whose
// report_data (SEV-SNP REPORT_DATA, TDX REPORTDATA; 64 bytes in both) is
// [TEEReportData] of the evidence.
type TEEReport struct {
	// Type is [TEESEVSNP] or [TEETDX].
	Type string `json:"type"`
	// Report is the raw report or quote.
	Report []byte `json:"report"`
	// Certs is the certificate chain that comes with it (SEV-SNP
	// VCEK/ASK/ARK table; TDX PCK chain), if the guest got one.
	Certs []byte `json:"certs,omitempty"`
}

// Binding is the quote's qualifying data for fresh evidence:
//
//	SHA-256("confidisk attest v1 quote\x00" ‖ lp(nonce) ‖ lp(releaseKey) ‖ lp(akPublic)
//	        ‖ lp(SHA-256(measureLog)) ‖ lp(SHA-256(firmwareLog)))
//
// where lp(x) is x prefixed by its length as a 4-byte big-endian integer, so
// no two different inputs give the same byte string.
func Binding(nonce, releaseKey, akPublic, measureLog, firmwareLog []byte) []byte {
	return bind(sha256.New(), "confidisk attest v1 quote", nonce, releaseKey, akPublic, measureLog, firmwareLog)
}

// TEEReportData is the 64-byte report_data a SEV-SNP or TDX report must
// carry: the same inputs as [Binding] under SHA-512 and another label.
func TEEReportData(nonce, releaseKey, akPublic, measureLog, firmwareLog []byte) [64]byte {
	var out [64]byte
	copy(out[:], bind(sha512.New(), "confidisk attest v1 tee", nonce, releaseKey, akPublic, measureLog, firmwareLog))
	return out
}

func bind(h hash.Hash, label string, nonce, releaseKey, akPublic, measureLog, firmwareLog []byte) []byte {
	ml, fl := sha256.Sum256(measureLog), sha256.Sum256(firmwareLog)
	return lpHash(h, label, nonce, releaseKey, akPublic, ml[:], fl[:])
}

// lpHash hashes label, a zero byte and each field prefixed by its length
// (4 bytes, big-endian).
func lpHash(h hash.Hash, label string, fields ...[]byte) []byte {
	h.Write([]byte(label))
	h.Write([]byte{0})
	for _, f := range fields {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	return h.Sum(nil)
}

// Marshal encodes e as JSON.
func (e *Evidence) Marshal() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("marshal evidence: %w", err)
	}
	return b, nil
}

// ParseEvidence decodes evidence strictly (unknown fields and trailing data
// are errors) and checks its shape: version, field sizes, a known bank, PCR
// indices and value sizes, a known TEE type. It does not verify anything;
// see [Validator]. Every error wraps [ErrMalformedEvidence].
func ParseEvidence(b []byte) (*Evidence, error) {
	if len(b) > MaxEvidenceSize {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrMalformedEvidence, len(b), MaxEvidenceSize)
	}
	var e Evidence
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedEvidence, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the json object", ErrMalformedEvidence)
	}
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedEvidence, err)
	}
	return &e, nil
}

func (e *Evidence) check() error {
	switch {
	case e.Version != Version:
		return fmt.Errorf("version %d (want %d)", e.Version, Version)
	case len(e.Nonce) == 0 || len(e.Nonce) > MaxNonceSize:
		return fmt.Errorf("nonce of %d bytes (want 1 to %d)", len(e.Nonce), MaxNonceSize)
	case len(e.AKPublic) == 0 || len(e.AKPublic) > MaxPublicSize:
		return fmt.Errorf("ak_public of %d bytes (want 1 to %d)", len(e.AKPublic), MaxPublicSize)
	case len(e.Quote.Attest) == 0 || len(e.Quote.Signature) == 0:
		return fmt.Errorf("quote without attest or signature")
	case len(e.ReleaseKey) > MaxReleaseKeySize:
		return fmt.Errorf("release_key of %d bytes (at most %d)", len(e.ReleaseKey), MaxReleaseKeySize)
	case len(e.PCRs) == 0:
		return fmt.Errorf("no pcr values")
	}
	h, err := e.Bank.Hash()
	if err != nil {
		return fmt.Errorf("bank: %w", err)
	}
	for p, v := range e.PCRs {
		if p < 0 || p > tpm.MaxPCR {
			return fmt.Errorf("pcr %d out of range 0..%d", p, tpm.MaxPCR)
		}
		if len(v) != h.Size() {
			return fmt.Errorf("pcr %d value of %d bytes (want %d for bank %s)", p, len(v), h.Size(), e.Bank)
		}
	}
	if r := e.TEEReport; r != nil {
		if r.Type != TEESEVSNP && r.Type != TEETDX {
			return fmt.Errorf("tee_report type %q (want %s or %s)", r.Type, TEESEVSNP, TEETDX)
		}
		if len(r.Report) == 0 {
			return fmt.Errorf("empty %s tee_report", r.Type)
		}
	}
	return nil
}
