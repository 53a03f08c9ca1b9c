package attest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/tpm"
)

// DefaultFirmwareLog is where Linux exposes the TCG firmware event log
// (securityfs; drivers/char/tpm/eventlog).
const DefaultFirmwareLog = "/sys/kernel/security/tpm0/binary_bios_measurements"

// DefaultPCRs are the PCRs an [Issuer] quotes unless told otherwise: 0 to
// 15, everything firmware, boot loader, systemd-stub and systemd measure
// (systemd docs/TPM2_PCR_MEASUREMENTS.md). The policy chooses which of them
// matter.
func DefaultPCRs() []int {
	return []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
}

// TEEReporter gets a SEV-SNP or TDX report with the given report_data from
// the guest's hardware (/dev/sev-guest, /dev/tdx_guest or configfs-tsm).
// Packages attest/snp and attest/tdx implement it.
type TEEReporter interface {
	Report(ctx context.Context, reportData [64]byte) (*TEEReport, error)
}

// IssuerOptions tune an [Issuer].
type IssuerOptions struct {
	// Bank is the PCR bank to quote; "" means sha256.
	Bank tpm.Bank
	// PCRs to quote; nil means [DefaultPCRs]. PCR 15 is always added: the
	// verifier reads the volume claims from it.
	PCRs []int
	// MeasureLog is systemd's userspace measurement log; "" means
	// tpm.DefaultMeasureLog. A missing file is an empty log.
	MeasureLog string
	// FirmwareLog is the TCG firmware event log; "" means
	// [DefaultFirmwareLog], "-" none. A missing file is no log.
	FirmwareLog string
	// TEE, when set, adds a SEV-SNP/TDX report to the evidence.
	TEE TEEReporter
}

// Issuer produces evidence on the guest.
type Issuer struct {
	t transport.TPM
	o IssuerOptions
}

// NewIssuer returns an Issuer using the TPM t.
func NewIssuer(t transport.TPM, o IssuerOptions) (*Issuer, error) {
	if o.Bank == "" {
		o.Bank = tpm.SHA256
	}
	if _, err := o.Bank.Alg(); err != nil {
		return nil, fmt.Errorf("attestation issuer: %w", err)
	}
	if o.PCRs == nil {
		o.PCRs = DefaultPCRs()
	}
	o.PCRs = slices.Clone(o.PCRs)
	if !slices.Contains(o.PCRs, tpm.VolumeKeyPCR) {
		o.PCRs = append(o.PCRs, tpm.VolumeKeyPCR)
	}
	slices.Sort(o.PCRs)
	o.PCRs = slices.Compact(o.PCRs)
	if o.MeasureLog == "" {
		o.MeasureLog = tpm.DefaultMeasureLog
	}
	if o.FirmwareLog == "" {
		o.FirmwareLog = DefaultFirmwareLog
	}
	return &Issuer{t: t, o: o}, nil
}

// maxIssueTries bounds how often Issue starts again when the measurement
// log and PCR 15 changed between reading the one and quoting the other.
const maxIssueTries = 3

// Issue produces evidence answering nonce (from the verifier, 1 to 64
// bytes) that binds releaseKey (may be nil): it creates the AK
// (tpm.CreateAK), reads the logs, and quotes the PCRs with [Binding] as
// qualifying data. When a measurement lands between reading the log and
// quoting (the log no longer replays to the quoted PCR 15), it tries again.
func (i *Issuer) Issue(ctx context.Context, nonce, releaseKey []byte) (*Evidence, error) {
	if len(nonce) == 0 || len(nonce) > MaxNonceSize {
		return nil, fmt.Errorf("issue evidence: nonce of %d bytes (want 1 to %d)", len(nonce), MaxNonceSize)
	}
	if len(releaseKey) > MaxReleaseKeySize {
		return nil, fmt.Errorf("issue evidence: release key of %d bytes (at most %d)", len(releaseKey), MaxReleaseKeySize)
	}
	e, err := i.issue(ctx, nonce, releaseKey, func(ak, ml, fl []byte) []byte {
		return Binding(nonce, releaseKey, ak, ml, fl)
	})
	if err != nil {
		return nil, fmt.Errorf("issue evidence: %w", err)
	}
	return e, nil
}

// issue does the work of Issue and IssueCreation; qualify gives the
// quote's qualifying data.
func (i *Issuer) issue(ctx context.Context, nonce, releaseKey []byte, qualify func(ak, measureLog, firmwareLog []byte) []byte) (*Evidence, error) {
	ak, err := tpm.CreateAK(i.t)
	if err != nil {
		return nil, err
	}
	defer ak.Flush(i.t)
	for range maxIssueTries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ml, err := readOptional(i.o.MeasureLog)
		if err != nil {
			return nil, fmt.Errorf("read measurement log: %w", err)
		}
		var fl []byte
		if i.o.FirmwareLog != "-" {
			if fl, err = readOptional(i.o.FirmwareLog); err != nil {
				return nil, fmt.Errorf("read firmware event log: %w", err)
			}
		}
		recs, err := tpm.ParseMeasureLog(ml)
		if err != nil {
			return nil, fmt.Errorf("measurement log %s: %w", i.o.MeasureLog, err)
		}
		q, err := tpm.Quote(i.t, ak, i.o.Bank, i.o.PCRs, qualify(ak.Public, ml, fl))
		if err != nil {
			return nil, err
		}
		want, err := tpm.ReplayPCR(recs, tpm.VolumeKeyPCR, i.o.Bank)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(want, q.PCRValues[tpm.VolumeKeyPCR]) {
			continue // measured in between: read the log again
		}
		e := &Evidence{
			Version: Version, Nonce: nonce, AKPublic: ak.Public,
			Quote: Quote{Attest: q.Attest, Signature: q.Signature},
			Bank:  q.Bank, PCRs: q.PCRValues,
			MeasureLog: ml, FirmwareLog: fl, ReleaseKey: releaseKey,
		}
		if i.o.TEE != nil {
			if e.TEEReport, err = i.o.TEE.Report(ctx, TEEReportData(nonce, releaseKey, ak.Public, ml, fl)); err != nil {
				return nil, fmt.Errorf("tee report: %w", err)
			}
		}
		return e, nil
	}
	return nil, fmt.Errorf("the measurement log %s does not replay to pcr %d (%d tries): it is incomplete or pcr %d was extended without a log record",
		i.o.MeasureLog, tpm.VolumeKeyPCR, maxIssueTries, tpm.VolumeKeyPCR)
}

// readOptional reads a file; a missing file reads as nothing.
func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
