package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/broker/api"
	"github.com/confidisk/confidisk/tpm"
	"github.com/confidisk/confidisk/tpm/tpmtest"
)

const testUUID = "0b6f4f3e-7d0c-4c1a-9a57-5c3c2b1e9f10"

// guest is a swtpm-backed guest that has opened its state volume.
type guest struct {
	tp    transport.TPM
	log   string
	vk    []byte
	keyID string
	iss   *Issuer
}

// newGuest starts swtpm, extends PCR 7 as firmware would, and measures the
// state volume's key into PCR 15 with its log record, as first boot does.
func newGuest(t *testing.T, vk string) *guest {
	t.Helper()
	g := &guest{tp: tpmtest.Start(t).Open(), log: filepath.Join(t.TempDir(), "tpm2-measure.log"), vk: []byte(vk)}
	d := sha256.Sum256([]byte("secure boot state"))
	if err := tpm.ExtendPCR(g.tp, 7, map[tpm.Bank][]byte{tpm.SHA256: d[:]}); err != nil {
		t.Fatal(err)
	}
	fwLog := filepath.Join(t.TempDir(), "binary_bios_measurements")
	if err := os.WriteFile(fwLog, firmwareLog(7, 0x80000001 /* EV_EFI_VARIABLE_DRIVER_CONFIG */, d[:]), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tpm.MeasureVolumeKey(g.tp, g.vk, "state", testUUID, tpm.MeasureOptions{
		LogPath: g.log, BootID: strings.Repeat("ab", 16), Timestamp: 1}); err != nil {
		t.Fatal(err)
	}
	g.keyID = tpm.FixateValue(g.vk, "state", testUUID)
	var err error
	if g.iss, err = NewIssuer(g.tp, IssuerOptions{PCRs: []int{0, 4, 7}, MeasureLog: g.log, FirmwareLog: fwLog}); err != nil {
		t.Fatal(err)
	}
	return g
}

// firmwareLog is a crypto-agile TCG event log (PFP section 10) with the
// sha256 bank only: the Spec ID Event03, then one event extending pcr with
// digest.
func firmwareLog(pcr int, eventType uint32, digest []byte) []byte {
	le := binary.LittleEndian
	var spec []byte
	spec = append(spec, "Spec ID Event03\x00"...)
	spec = le.AppendUint32(spec, 0)      // platformClass
	spec = append(spec, 0, 2, 2, 2)      // version 2.0 errata 2, uintnSize 2 (64-bit)
	spec = le.AppendUint32(spec, 1)      // numberOfAlgorithms
	spec = le.AppendUint16(spec, 0x000b) // sha256
	spec = le.AppendUint16(spec, 32)
	spec = append(spec, 0) // vendorInfoSize
	var b []byte
	b = le.AppendUint32(b, 0)
	b = le.AppendUint32(b, 3) // EV_NO_ACTION
	b = append(b, make([]byte, 20)...)
	b = le.AppendUint32(b, uint32(len(spec)))
	b = append(b, spec...)
	data := []byte("SecureBoot")
	b = le.AppendUint32(b, uint32(pcr))
	b = le.AppendUint32(b, eventType)
	b = le.AppendUint32(b, 1)
	b = le.AppendUint16(b, 0x000b)
	b = append(b, digest...)
	b = le.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// measureString extends PCR 15 (sha256) with the hash of s and logs it, as
// systemd does for plain measurements.
func (g *guest) measureString(t *testing.T, eventType, s string) {
	t.Helper()
	d := sha256.Sum256([]byte(s))
	if err := tpm.ExtendPCR(g.tp, 15, map[tpm.Bank][]byte{tpm.SHA256: d[:]}); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(tpm.LogRecord{PCR: 15, ContentType: "systemd",
		Digests: []tpm.LogDigest{{HashAlg: "sha256", Digest: hex.EncodeToString(d[:])}},
		Content: tpm.LogContent{String: s, EventType: eventType}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(g.log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(append(append([]byte{0x1e}, j...), '\n')); err != nil {
		t.Fatal(err)
	}
}

// policy allows the guest's current PCRs 0, 4 and 7.
func (g *guest) policy(t *testing.T) *Policy {
	t.Helper()
	vals, err := tpm.ReadPCRs(g.tp, tpm.SHA256, []int{0, 4, 7})
	if err != nil {
		t.Fatal(err)
	}
	p := &Policy{Version: 1, PCRs: map[int][]string{}}
	for i, v := range vals {
		p.PCRs[i] = []string{strings.Repeat("11", 32), hex.EncodeToString(v)}
	}
	return p
}

func validator(t *testing.T, p *Policy, o ValidatorOptions) *Validator {
	t.Helper()
	v, err := NewValidator(p, o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func marshal(t *testing.T, e *Evidence) []byte {
	t.Helper()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAttestRoundTrip(t *testing.T) {
	g := newGuest(t, strings.Repeat("volume-key", 7))
	nonce, releaseKey := []byte("server nonce 0123456789abcdef"), []byte{4, 1, 2, 3}
	e, err := g.iss.Issue(context.Background(), nonce, releaseKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := validator(t, g.policy(t), ValidatorOptions{}).Verify(context.Background(), marshal(t, e), nonce)
	if err != nil {
		t.Fatal(err)
	}
	var m Measurements
	if err := json.Unmarshal(c.Measurements, &m); err != nil {
		t.Fatal(err)
	}
	c.Measurements = nil
	want := &api.Claims{Volume: testUUID, KeyID: g.keyID, ReleaseKey: releaseKey}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	wantM := Measurements{Bank: tpm.SHA256, AK: AKFingerprint(e.AKPublic), RootHash: "unverified", TEE: "none", FirmwareLog: "verified:7",
		PCRs: map[int]string{}, ResetCount: m.ResetCount, RestartCount: m.RestartCount}
	for i, v := range e.PCRs {
		wantM.PCRs[i] = hex.EncodeToString(v)
	}
	if diff := cmp.Diff(wantM, m); diff != "" {
		t.Errorf("measurements (-want +got):\n%s", diff)
	}
	if len(m.PCRs) != 4 { // 0, 4, 7 and the always-added 15
		t.Errorf("quoted pcrs %v, want 0, 4, 7, 15", m.PCRs)
	}
}

// fakeTEE stands in for a SEV-SNP verifier: it accepts a report whose
// bytes are the expected report_data.
type fakeTEE struct{}

func (fakeTEE) Verify(_ context.Context, r *TEEReport, reportData [64]byte) (json.RawMessage, error) {
	if !bytes.Equal(r.Report, reportData[:]) {
		return nil, errors.New("report signature does not verify")
	}
	return json.RawMessage(`{"measurement":"fake"}`), nil
}

type fakeReporter struct{}

func (fakeReporter) Report(_ context.Context, d [64]byte) (*TEEReport, error) {
	return &TEEReport{Type: TEESEVSNP, Report: d[:]}, nil
}

func TestAttestRefusals(t *testing.T) {
	ctx := context.Background()
	g := newGuest(t, strings.Repeat("volume-key", 7))
	other := newGuest(t, strings.Repeat("other-key!", 7))
	nonce, nonce2 := []byte("nonce-1 0123456789abcdef"), []byte("nonce-2 0123456789abcdef")
	g.iss.o.TEE = fakeReporter{}
	good, err := g.iss.Issue(ctx, nonce, []byte{4, 1})
	if err != nil {
		t.Fatal(err)
	}
	fromOther, err := other.iss.Issue(ctx, nonce, []byte{4, 1})
	if err != nil {
		t.Fatal(err)
	}
	base := g.policy(t)
	pinned := g.policy(t)
	pinned.AttestationKeys = []string{AKFingerprint(good.AKPublic)}
	// copyOf deep-copies evidence through its JSON.
	copyOf := func(e *Evidence) *Evidence {
		var c Evidence
		if err := json.Unmarshal(marshal(t, e), &c); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	editLog := func(e *Evidence, old, new string) {
		if !bytes.Contains(e.MeasureLog, []byte(old)) {
			t.Fatalf("log has no %q", old)
		}
		e.MeasureLog = bytes.Replace(e.MeasureLog, []byte(old), []byte(new), 1)
	}
	tests := []struct {
		name     string
		evidence *Evidence
		raw      []byte // instead of evidence
		edit     func(*Evidence)
		policy   func(*Policy)
		nonce    []byte
		tee      TEEVerifier
		want     error
	}{
		{name: "accepted", evidence: good, tee: fakeTEE{}},
		{name: "pinned AK accepted", evidence: good, policy: func(p *Policy) { *p = *pinned }},
		{name: "other nonce", evidence: good, nonce: nonce2, want: ErrNonceMismatch},
		{name: "replayed with rewritten nonce", evidence: good, nonce: nonce2,
			edit: func(e *Evidence) { e.Nonce = nonce2 }, want: ErrBindingMismatch},
		{name: "swapped release key", evidence: good, edit: func(e *Evidence) { e.ReleaseKey = []byte{4, 6, 6, 6} }, want: ErrBindingMismatch},
		{name: "release key removed", evidence: good, edit: func(e *Evidence) { e.ReleaseKey = nil }, want: ErrBindingMismatch},
		{name: "pcr value not allowed", evidence: good,
			policy: func(p *Policy) { p.PCRs[7] = []string{strings.Repeat("22", 32)} }, want: ErrPCRPolicy},
		{name: "pinned pcr not quoted", evidence: good,
			policy: func(p *Policy) { p.PCRs[16] = []string{strings.Repeat("00", 32)} }, want: ErrPCRPolicy},
		{name: "policy of another bank", evidence: good, policy: func(p *Policy) {
			p.Bank = tpm.SHA1
			p.PCRs = map[int][]string{7: {strings.Repeat("00", 20)}}
		}, want: ErrPCRPolicy},
		{name: "pcr value edited", evidence: good, edit: func(e *Evidence) { e.PCRs[7] = bytes.Repeat([]byte{0x11}, 32) }, want: ErrPCRDigest},
		{name: "pcr dropped", evidence: good, edit: func(e *Evidence) { delete(e.PCRs, 4) }, want: ErrPCRDigest},
		{name: "tampered log digest", evidence: good, edit: func(e *Evidence) {
			editLog(e, volumeDigest(t, good), strings.Repeat("0", 64))
		}, want: ErrLogTampered},
		{name: "log record removed", evidence: good, edit: func(e *Evidence) { e.MeasureLog = nil }, want: ErrLogTampered},
		{name: "tampered firmware log", evidence: good, edit: func(e *Evidence) {
			e.FirmwareLog[len(e.FirmwareLog)-len("SecureBoot")-5] ^= 1 // last byte of the PCR 7 digest
		}, want: ErrLogTampered},
		{name: "truncated firmware log", evidence: good, edit: func(e *Evidence) { e.FirmwareLog = e.FirmwareLog[:40] }, want: ErrMalformedEvidence},
		{name: "firmware log removed", evidence: good, edit: func(e *Evidence) { e.FirmwareLog = nil }, want: ErrBindingMismatch},
		{name: "tampered log volume uuid", evidence: good, edit: func(e *Evidence) {
			editLog(e, testUUID, "00000000-0000-0000-0000-000000000000")
		}, want: ErrBindingMismatch},
		{name: "unparsable log", evidence: good, edit: func(e *Evidence) { e.MeasureLog = []byte("{}") }, want: ErrMalformedEvidence},
		{name: "signature flipped", evidence: good, edit: func(e *Evidence) { e.Quote.Signature[len(e.Quote.Signature)-1] ^= 1 }, want: ErrQuoteSignature},
		{name: "attest edited", evidence: good, edit: func(e *Evidence) { e.Quote.Attest[len(e.Quote.Attest)-1] ^= 1 }, want: ErrQuoteSignature},
		{name: "swapped AK without pinning", evidence: good, edit: func(e *Evidence) { e.AKPublic = fromOther.AKPublic }, want: ErrQuoteSignature},
		{name: "AK of another swtpm with pinning", evidence: fromOther, policy: func(p *Policy) { *p = *pinned }, want: ErrAKNotAllowed},
		{name: "swapped AK with pinning", evidence: good, edit: func(e *Evidence) { e.AKPublic = fromOther.AKPublic },
			policy: func(p *Policy) { *p = *pinned }, want: ErrAKNotAllowed},
		{name: "AK not a restricted key", evidence: good, edit: func(e *Evidence) { e.AKPublic = []byte{0, 1} }, want: ErrMalformedEvidence},
		{name: "forged snp report", evidence: good, tee: fakeTEE{}, edit: func(e *Evidence) { e.TEEReport.Report[0] ^= 1 }, want: ErrTEEReport},
		{name: "tee required, no verifier", evidence: good, policy: func(p *Policy) { p.RequireTEE = true }, want: ErrTEEReport},
		{name: "tee required, no report", evidence: good, tee: fakeTEE{}, edit: func(e *Evidence) { e.TEEReport = nil },
			policy: func(p *Policy) { p.RequireTEE = true }, want: ErrTEEReport},
		{name: "root hash required", evidence: good, policy: func(p *Policy) { p.RequireRootHash = true }, want: ErrUnknownRootHash},
		{name: "malformed json", raw: []byte(`{"version":1,`), want: ErrMalformedEvidence},
		{name: "unknown field", raw: []byte(`{"version":1,"extra":1}`), want: ErrMalformedEvidence},
		{name: "version 2", evidence: good, edit: func(e *Evidence) { e.Version = 2 }, want: ErrMalformedEvidence},
		{name: "short pcr value", evidence: good, edit: func(e *Evidence) { e.PCRs[7] = e.PCRs[7][:20] }, want: ErrMalformedEvidence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.raw
			if raw == nil {
				e := copyOf(tc.evidence)
				if tc.edit != nil {
					tc.edit(e)
				}
				raw = marshal(t, e)
			}
			p := g.policy(t)
			*p = *base
			p.PCRs = map[int][]string{}
			for i, v := range base.PCRs {
				p.PCRs[i] = v
			}
			if tc.policy != nil {
				tc.policy(p)
			}
			o := ValidatorOptions{}
			if tc.tee != nil {
				o.TEE = map[string]TEEVerifier{TEESEVSNP: tc.tee}
			}
			n := nonce
			if tc.nonce != nil {
				n = tc.nonce
			}
			_, err := validator(t, p, o).Verify(ctx, raw, n)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
			if err != nil {
				t.Logf("refused: %v", err)
			}
		})
	}
}

// volumeDigest is the sha256 digest of the evidence's volume-key record.
func volumeDigest(t *testing.T, e *Evidence) string {
	t.Helper()
	recs, err := tpm.ParseMeasureLog(e.MeasureLog)
	if err != nil || len(recs) == 0 {
		t.Fatalf("log: %v, %d records", err, len(recs))
	}
	return recordDigest(recs[0], tpm.SHA256)
}

func TestAttestRootHash(t *testing.T) {
	ctx := context.Background()
	root := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		allowed []string
		want    error
		status  string
	}{
		{name: "allowed", allowed: []string{strings.Repeat("cd", 32), root}, status: "verified:" + root},
		{name: "unknown", allowed: []string{strings.Repeat("cd", 32)}, want: ErrUnknownRootHash},
		{name: "none allowed", want: ErrUnknownRootHash},
	}
	g := newGuest(t, strings.Repeat("volume-key", 7))
	g.measureString(t, "dm-verity", "verity:root:"+root+":")
	nonce := []byte("root hash nonce")
	e, err := g.iss.Issue(ctx, nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := g.policy(t)
			p.RootHashes = tc.allowed
			c, err := validator(t, p, ValidatorOptions{}).Verify(ctx, marshal(t, e), nonce)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			var m Measurements
			if err := json.Unmarshal(c.Measurements, &m); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.status, m.RootHash); diff != "" {
				t.Errorf("root hash status (-want +got):\n%s", diff)
			}
			if c.Volume != testUUID {
				t.Errorf("volume %q, want %q", c.Volume, testUUID)
			}
		})
	}
	t.Run("verity record digest edited", func(t *testing.T) {
		p := g.policy(t)
		p.RootHashes = []string{root}
		bad := *e
		bad.MeasureLog = bytes.Replace(e.MeasureLog, []byte("verity:root:"+root), []byte("verity:root:"+strings.Repeat("cd", 32)), 1)
		_, err := validator(t, p, ValidatorOptions{}).Verify(ctx, marshal(t, &bad), nonce)
		if !errors.Is(err, ErrLogTampered) {
			t.Fatalf("Verify: %v, want %v", err, ErrLogTampered)
		}
	})
}

func TestAttestCreationRecord(t *testing.T) {
	ctx := context.Background()
	g := newGuest(t, strings.Repeat("volume-key", 7))
	rec, err := g.iss.IssueCreation(ctx, g.keyID, testUUID, "state")
	if err != nil {
		t.Fatal(err)
	}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseCreationRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c, err := VerifyCreation(ctx, parsed, g.policy(t), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Measurements) == 0 {
		t.Error("no measurements")
	}
	c.Measurements = nil
	want := &Creation{UUID: testUUID, Name: "state", KeyID: g.keyID, Time: now}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("creation (-want +got):\n%s", diff)
	}

	// The record is no fresh evidence.
	if _, err := validator(t, g.policy(t), ValidatorOptions{}).Verify(ctx, b, []byte("nonce")); !errors.Is(err, ErrNonceMismatch) {
		t.Errorf("Verify(creation record): %v, want %v", err, ErrNonceMismatch)
	}

	otherID := tpm.FixateValue([]byte("another key"), "state", testUUID)
	notMeasured, err := g.iss.IssueCreation(ctx, otherID, testUUID, "state")
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := g.iss.Issue(ctx, []byte("fresh nonce"), nil)
	if err != nil {
		t.Fatal(err)
	}
	relabelled := &CreationRecord{Evidence: *fresh}
	relabelled.Nonce, _ = hex.DecodeString(g.keyID)
	edited := *rec
	edited.Nonce, _ = hex.DecodeString(otherID)
	// The host copies a record out of a header and names another UUID in
	// its log (the digest, which replays, stays): a squatted registration.
	squatted := *rec
	squatted.MeasureLog = bytes.ReplaceAll(rec.MeasureLog, []byte(testUUID), []byte("11111111-2222-4333-8444-555555555555"))
	if bytes.Equal(squatted.MeasureLog, rec.MeasureLog) {
		t.Fatal("the record's log does not name the UUID")
	}
	tests := []struct {
		name string
		rec  *CreationRecord
		p    func(*Policy)
		want error
	}{
		{name: "key id not measured", rec: notMeasured, want: ErrVolumeNotMeasured},
		{name: "fresh evidence relabelled", rec: relabelled, want: ErrBindingMismatch},
		{name: "key id edited", rec: &edited, want: ErrVolumeNotMeasured},
		{name: "uuid edited", rec: &squatted, want: ErrBindingMismatch},
		{name: "pcr policy", rec: rec, p: func(p *Policy) { p.PCRs[0] = []string{strings.Repeat("33", 32)} }, want: ErrPCRPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := g.policy(t)
			if tc.p != nil {
				tc.p(p)
			}
			if _, err := VerifyCreation(ctx, tc.rec, p, now); !errors.Is(err, tc.want) {
				t.Fatalf("VerifyCreation: %v, want %v", err, tc.want)
			}
		})
	}
}
