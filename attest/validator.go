package attest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/eventlog"
)

// TEEVerifier checks a SEV-SNP or TDX report: its signature chain up to the
// vendor root, the platform's TCB against policy, and that its report_data
// is reportData. It returns what the report proves (for example the launch
// measurement) as JSON for [Measurements.TEEClaims]. Packages attest/snp
// and attest/tdx implement it; register them in [ValidatorOptions.TEE].
type TEEVerifier interface {
	Verify(ctx context.Context, r *TEEReport, reportData [64]byte) (json.RawMessage, error)
}

// ValidatorOptions tune a [Validator].
type ValidatorOptions struct {
	// TEE maps a [TEEReport.Type] to its verifier. A report of a type
	// without one is carried as "unverified" (and refused when the policy
	// requires a TEE report).
	TEE map[string]TEEVerifier
	// Now is the clock for [Creation.Time]; nil means time.Now.
	Now func() time.Time
}

// Validator checks evidence against a [Policy] on the verifier side. It
// implements the broker's Verifier and CreationVerifier (checked where the
// broker is built, cmd/confidisk/serve.go: attest does not link the
// broker's server).
type Validator struct {
	p   Policy
	tee map[string]TEEVerifier
	now func() time.Time
}

// NewValidator returns a Validator for a copy of p, checked as
// [ParsePolicy] checks it.
func NewValidator(p *Policy, o ValidatorOptions) (*Validator, error) {
	if p == nil {
		return nil, errors.New("attestation validator: no policy")
	}
	c := clonePolicy(p)
	if err := c.normalize(); err != nil {
		return nil, fmt.Errorf("attestation validator: policy: %w", err)
	}
	v := &Validator{p: *c, tee: maps.Clone(o.TEE), now: o.Now}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Measurements are what verified evidence shows about the guest; they are
// [api.Claims.Measurements] (JSON) and [Creation.Measurements].
type Measurements struct {
	// Bank and PCRs are the quoted PCR values (lowercase hex by index).
	Bank tpm.Bank       `json:"bank"`
	PCRs map[int]string `json:"pcrs"`
	// AK is [AKFingerprint] of the attestation key; AKPinned says whether
	// the policy pins it (otherwise nothing ties the AK to a known vTPM
	// unless a verified TEE report binds it).
	AK       string `json:"ak"`
	AKPinned bool   `json:"ak_pinned"`
	// RootHash is "verified:<hex>" when a dm-verity record of a replayed
	// PCR names an allowed root hash, "unverified" otherwise.
	RootHash string `json:"root_hash"`
	// TEE is "none", "<type>:verified" or "<type>:unverified".
	TEE string `json:"tee"`
	// TEEClaims are the TEE verifier's findings, if any.
	TEEClaims json.RawMessage `json:"tee_claims,omitempty"`
	// FirmwareLog is "none" (no log), "verified:<pcrs>" (the log replays
	// to the quoted values of those PCRs) or "not-quoted" (the log
	// extends none of the quoted PCRs).
	FirmwareLog string `json:"firmware_log"`
	// ResetCount and RestartCount are the TPM's boot counters from the
	// quote's TPMS_CLOCK_INFO (TPM 2.0 Part 2, section 10.11.1).
	ResetCount   uint32 `json:"tpm_reset_count"`
	RestartCount uint32 `json:"tpm_restart_count"`
}

// volumeRecord is a volume-key measurement of PCR 15.
type volumeRecord struct {
	name, uuid string
	// keyID is the sha256 digest (lowercase hex), the volume's fixation
	// value; "" when the record has no sha256 digest.
	keyID string
	// digest is the record's digest for the quoted bank.
	digest string
}

// checked is evidence that passed the checks common to fresh evidence and
// creation records.
type checked struct {
	m       Measurements
	volumes []volumeRecord
}

// Verify implements the broker's Verifier: it checks evidence (see
// [ParseEvidence]) against nonce and the policy, in this order, each
// failure wrapping its sentinel error: the nonce the evidence answers
// ([ErrNonceMismatch]); the AK's form and pinning ([ErrMalformedEvidence],
// [ErrAKNotAllowed]); the quote's signature ([ErrQuoteSignature]) and that
// it covers the PCR values given ([ErrPCRDigest]); that the userspace log
// replays to the quoted PCR 15 ([ErrLogTampered]); that the quote's
// qualifying data is [Binding] of the evidence ([ErrBindingMismatch]); the
// policy's PCR values ([ErrPCRPolicy]) and root hashes
// ([ErrUnknownRootHash]); and the TEE report ([ErrTEEReport]).
//
// The claims name the volume whose volume-key record (systemd
// src/cryptsetup/cryptsetup.c measure_volume_key) is in PCR 15 — the
// policy's volume name, or the only one — with its key id: the record's
// sha256 digest, HMAC-SHA256(volume key, "cryptsetup:<name>:<uuid>"),
// which is systemd's fixate-volume-key= value. With another bank the key id
// is left empty. Evidence without a volume-key record gives no Volume.
func (v *Validator) Verify(ctx context.Context, evidence, nonce []byte) (*api.Claims, error) {
	e, err := ParseEvidence(evidence)
	if err != nil {
		return nil, fmt.Errorf("verify evidence: %w", err)
	}
	if !bytes.Equal(e.Nonce, nonce) {
		return nil, fmt.Errorf("verify evidence: %w: it answers nonce %x", ErrNonceMismatch, e.Nonce)
	}
	c, err := v.check(ctx, e, func([]volumeRecord) ([]byte, error) {
		return Binding(e.Nonce, e.ReleaseKey, e.AKPublic, e.MeasureLog, e.FirmwareLog), nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify evidence: %w", err)
	}
	m, err := json.Marshal(c.m)
	if err != nil {
		return nil, fmt.Errorf("verify evidence: %w", err)
	}
	cl := &api.Claims{Measurements: m, ReleaseKey: e.ReleaseKey}
	if r := v.pick(c.volumes); r != nil {
		cl.Volume = r.uuid
		if e.Bank == tpm.SHA256 {
			cl.KeyID = r.keyID
		}
	}
	return cl, nil
}

// pick chooses the volume the claims are about: the last record of the
// policy's volume name, or else the only volume measured.
func (v *Validator) pick(recs []volumeRecord) *volumeRecord {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].name == v.p.VolumeName {
			return &recs[i]
		}
	}
	if len(recs) > 0 && !slices.ContainsFunc(recs, func(r volumeRecord) bool { return r.uuid != recs[0].uuid }) {
		return &recs[len(recs)-1]
	}
	return nil
}

// check runs the checks common to fresh evidence and creation records;
// qualify returns the qualifying data the quote must carry, given the
// volume-key records of the replayed log.
func (v *Validator) check(ctx context.Context, e *Evidence, qualify func([]volumeRecord) ([]byte, error)) (*checked, error) {
	pub, err := tpm.AKPublicKey(e.AKPublic)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedEvidence, err)
	}
	if !v.p.allowsAK(e.AKPublic) {
		return nil, fmt.Errorf("%w: fingerprint %s", ErrAKNotAllowed, AKFingerprint(e.AKPublic))
	}
	attest, err := tpm2.Unmarshal[tpm2.TPMSAttest](e.Quote.Attest)
	if err != nil {
		return nil, fmt.Errorf("%w: quote attest: %w", ErrMalformedEvidence, err)
	}
	// The qualifying data is checked after the log below, so that a
	// tampered log is reported as such and not as a binding mismatch.
	info, err := tpm.VerifyQuote(pub, &tpm.QuoteResult{Attest: e.Quote.Attest, Signature: e.Quote.Signature},
		attest.ExtraData.Buffer, e.PCRs, e.Bank)
	switch {
	case err == nil:
	case errors.Is(err, tpm.ErrQuoteSignature):
		return nil, fmt.Errorf("%w: %w", ErrQuoteSignature, err)
	case errors.Is(err, tpm.ErrQuotePCRDigest), errors.Is(err, tpm.ErrQuoteSelection):
		return nil, fmt.Errorf("%w: %w", ErrPCRDigest, err)
	default:
		return nil, fmt.Errorf("%w: %w", ErrMalformedEvidence, err)
	}
	pcr15, ok := e.PCRs[tpm.VolumeKeyPCR]
	if !ok {
		return nil, fmt.Errorf("%w: the quote does not cover pcr %d", ErrMalformedEvidence, tpm.VolumeKeyPCR)
	}
	recs, err := tpm.ParseMeasureLog(e.MeasureLog)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedEvidence, err)
	}
	replayed, err := tpm.ReplayPCR(recs, tpm.VolumeKeyPCR, e.Bank)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedEvidence, err)
	}
	if !bytes.Equal(replayed, pcr15) {
		return nil, fmt.Errorf("%w: the userspace log replays pcr %d to %x, the quote has %x", ErrLogTampered, tpm.VolumeKeyPCR, replayed, pcr15)
	}
	verity, err := verityRecords(recs, e.Bank)
	if err != nil {
		return nil, err
	}
	fwPCRs, err := checkFirmwareLog(e)
	if err != nil {
		return nil, err
	}
	volumes, err := volumeRecords(recs, e.Bank)
	if err != nil {
		return nil, err
	}
	qualifying, err := qualify(volumes)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(attest.ExtraData.Buffer, qualifying) {
		return nil, fmt.Errorf("%w: the quote has %x", ErrBindingMismatch, attest.ExtraData.Buffer)
	}
	if err := v.checkPCRs(e); err != nil {
		return nil, err
	}
	c := &checked{m: Measurements{
		Bank: e.Bank, PCRs: make(map[int]string, len(e.PCRs)),
		AK: AKFingerprint(e.AKPublic), AKPinned: len(v.p.AttestationKeys) > 0,
		TEE: "none", FirmwareLog: "none",
		ResetCount: info.ResetCount, RestartCount: info.RestartCount,
	}}
	for i, val := range e.PCRs {
		c.m.PCRs[i] = hex.EncodeToString(val)
	}
	switch {
	case len(fwPCRs) > 0:
		names := make([]string, len(fwPCRs))
		for i, p := range fwPCRs {
			names[i] = strconv.Itoa(p)
		}
		c.m.FirmwareLog = "verified:" + strings.Join(names, ",")
	case len(e.FirmwareLog) > 0:
		c.m.FirmwareLog = "not-quoted"
	}
	if c.m.RootHash, err = v.checkRootHash(verity); err != nil {
		return nil, err
	}
	if err := v.checkTEE(ctx, e, &c.m); err != nil {
		return nil, err
	}
	c.volumes = volumes
	return c, nil
}

// checkFirmwareLog replays the TCG firmware event log, if any, in the
// quoted bank and compares it with every quoted PCR it extends
// (eventlog.Log.Verify); it returns those PCRs, sorted. A log that does not
// parse is [ErrMalformedEvidence], one that does not replay to the quote
// [ErrLogTampered].
func checkFirmwareLog(e *Evidence) ([]int, error) {
	if len(e.FirmwareLog) == 0 {
		return nil, nil
	}
	fw, err := eventlog.Parse(e.FirmwareLog)
	if err != nil {
		return nil, fmt.Errorf("%w: firmware log: %w", ErrMalformedEvidence, err)
	}
	alg, err := e.Bank.Alg()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedEvidence, err)
	}
	replayed, err := fw.Replay(alg)
	if err != nil {
		return nil, fmt.Errorf("%w: firmware log: %w", ErrMalformedEvidence, err)
	}
	if err := fw.Verify(alg, e.PCRs); errors.Is(err, eventlog.ErrMismatch) {
		return nil, fmt.Errorf("%w: firmware log: %w", ErrLogTampered, err)
	} else if err != nil {
		return nil, fmt.Errorf("%w: firmware log: %w", ErrMalformedEvidence, err)
	}
	var covered []int
	for i := range replayed {
		if _, ok := e.PCRs[i]; ok {
			covered = append(covered, i)
		}
	}
	slices.Sort(covered)
	return covered, nil
}

// checkPCRs compares the quoted PCRs with the policy.
func (v *Validator) checkPCRs(e *Evidence) error {
	if e.Bank != v.p.Bank {
		return fmt.Errorf("%w: the quote is of bank %s, the policy's values are for %s", ErrPCRPolicy, e.Bank, v.p.Bank)
	}
	for _, i := range slices.Sorted(maps.Keys(v.p.PCRs)) {
		val, ok := e.PCRs[i]
		if !ok {
			return fmt.Errorf("%w: the policy pins pcr %d, which the quote does not cover", ErrPCRPolicy, i)
		}
		if !slices.Contains(v.p.PCRs[i], hex.EncodeToString(val)) {
			return fmt.Errorf("%w: pcr %d is %x, not one of the %d allowed values", ErrPCRPolicy, i, val, len(v.p.PCRs[i]))
		}
	}
	return nil
}

// verityRecord is a dm-verity measurement of PCR 15.
type verityRecord struct{ name, rootHash string }

// verityRecords returns the dm-verity records of PCR 15 (the only replayed
// PCR). Each record's digest must be the hash of its string (a plain
// measurement, as systemd's tpm2_pcr_extend_bytes makes them,
// src/shared/tpm2-util.c), whose form is "verity:<name>:<root hash
// hex>[:<signatures>]" (systemd src/veritysetup/veritysetup.c); an edited
// string is [ErrLogTampered].
func verityRecords(recs []tpm.LogRecord, bank tpm.Bank) ([]verityRecord, error) {
	h, err := bank.Hash()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedEvidence, err)
	}
	var out []verityRecord
	for i, r := range recs {
		if r.PCR != tpm.VolumeKeyPCR || (r.Content.EventType != "dm-verity" && r.Content.EventType != "verity") {
			continue
		}
		d := h.New()
		d.Write([]byte(r.Content.String))
		if got := recordDigest(r, bank); got != hex.EncodeToString(d.Sum(nil)) {
			return nil, fmt.Errorf("%w: record %d (dm-verity) has digest %s, not the %s of its string %q", ErrLogTampered, i, got, bank, r.Content.String)
		}
		parts := strings.Split(r.Content.String, ":")
		if len(parts) < 3 || parts[0] != "verity" {
			return nil, fmt.Errorf("%w: record %d: dm-verity string %q is not verity:<name>:<root hash>", ErrMalformedEvidence, i, r.Content.String)
		}
		out = append(out, verityRecord{name: parts[1], rootHash: strings.ToLower(parts[2])})
	}
	return out, nil
}

// checkRootHash checks the verified dm-verity records against the policy's
// root hashes and returns "verified:<hex>" (the last one) or "unverified".
func (v *Validator) checkRootHash(recs []verityRecord) (string, error) {
	status := "unverified"
	for _, r := range recs {
		if !slices.Contains(v.p.RootHashes, r.rootHash) {
			return "", fmt.Errorf("%w: %s (volume %s)", ErrUnknownRootHash, r.rootHash, r.name)
		}
		status = "verified:" + r.rootHash
	}
	if status == "unverified" && v.p.RequireRootHash {
		return "", fmt.Errorf("%w: the policy requires a verified root hash and pcr %d has no dm-verity record", ErrUnknownRootHash, tpm.VolumeKeyPCR)
	}
	return status, nil
}

// checkTEE verifies the TEE report with its registered verifier.
func (v *Validator) checkTEE(ctx context.Context, e *Evidence, m *Measurements) error {
	r := e.TEEReport
	if r == nil {
		if v.p.RequireTEE {
			return fmt.Errorf("%w: the policy requires a sev-snp or tdx report and the evidence has none", ErrTEEReport)
		}
		return nil
	}
	tv, ok := v.tee[r.Type]
	if !ok {
		if v.p.RequireTEE {
			return fmt.Errorf("%w: this verifier cannot verify %s reports yet", ErrTEEReport, r.Type)
		}
		m.TEE = r.Type + ":unverified"
		return nil
	}
	claims, err := tv.Verify(ctx, r, TEEReportData(e.Nonce, e.ReleaseKey, e.AKPublic, e.MeasureLog, e.FirmwareLog))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrTEEReport, r.Type, err)
	}
	m.TEE, m.TEEClaims = r.Type+":verified", claims
	return nil
}

// recordDigest is a record's digest for bank (lowercase hex), "" if none.
func recordDigest(r tpm.LogRecord, bank tpm.Bank) string {
	for _, d := range r.Digests {
		if strings.EqualFold(d.HashAlg, string(bank)) {
			return strings.ToLower(d.Digest)
		}
	}
	return ""
}

// volumeRecords returns the volume-key records of PCR 15 in log order.
// Their strings are "cryptsetup:" + name (':' escaped as \x3a) + ":" + the
// LUKS UUID (systemd src/cryptsetup/cryptsetup.c measure_volume_key;
// tpm.VolumeKeyMessage).
func volumeRecords(recs []tpm.LogRecord, bank tpm.Bank) ([]volumeRecord, error) {
	var out []volumeRecord
	for i, r := range recs {
		if r.PCR != tpm.VolumeKeyPCR || r.Content.EventType != "volume-key" {
			continue
		}
		s, ok := strings.CutPrefix(r.Content.String, "cryptsetup:")
		j := strings.LastIndexByte(s, ':')
		if !ok || j <= 0 || j == len(s)-1 {
			return nil, fmt.Errorf("%w: record %d: volume-key string %q is not cryptsetup:<name>:<uuid>", ErrMalformedEvidence, i, r.Content.String)
		}
		name, uuid := s[:j], strings.ToLower(s[j+1:])
		out = append(out, volumeRecord{
			name: unescape(name), uuid: uuid,
			keyID: recordDigest(r, tpm.SHA256), digest: recordDigest(r, bank),
		})
	}
	return out, nil
}

// unescape undoes systemd's xescape (\xNN); malformed escapes stay as they are.
func unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && s[i+1] == 'x' {
			if c, err := hex.DecodeString(s[i+2 : i+4]); err == nil {
				b.WriteByte(c[0])
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
