package snp

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/confidisk/confidisk/attest"
)

// Options configure a [Verifier]: what it trusts, whether it may use the
// network, and the policy a genuine report must meet. The zero value
// trusts AMD's embedded roots, stays offline, refuses debuggable guests and
// accepts any launch measurement.
type Options struct {
	// TrustedRoots are the AMD roots to trust, by product line ("Milan",
	// "Genoa", "Turin"): each entry's ProductCerts must hold the ARK and
	// the ASK (for VCEK-signed reports) and/or ASVK (VLEK-signed). Nil
	// means [DefaultTrustedRoots].
	TrustedRoots map[string][]*trust.AMDRootCerts
	// Getter, if set, fetches what the report's certificate table lacks
	// from AMD's Key Distribution Service (the VCEK for the report's
	// CHIP_ID and REPORTED_TCB, the ASK and ARK; trust.DefaultHTTPSGetter()
	// reaches kdsintf.amd.com) and the CRL for CheckRevocations. The
	// fetched ASK and ARK are not trusted: the chain is still checked up
	// to TrustedRoots. Nil means no network access: a report whose Certs
	// lack its VCEK/VLEK certificate is refused.
	Getter trust.HTTPSGetter
	// CheckRevocations fetches the product's CRL through Getter and
	// refuses a report whose ASK AMD revoked. It requires Getter.
	CheckRevocations bool
	// Now is the time at which certificates must be valid; nil means
	// time.Now.
	Now func() time.Time

	// Measurements are the allowed launch MEASUREMENT values, 48 bytes in
	// hex each; empty allows any.
	Measurements []string
	// GuestPolicy is the most permissive guest POLICY allowed, in the
	// sense of go-sev-guest's validate.Options.GuestPolicy: a report whose
	// policy allows debugging, a migration agent, SMT or CXL while this one
	// does not is refused, as is one whose minimum ABI version is lower, or
	// that lacks a restriction this one sets (SingleSocket, MemAES256XTS,
	// RAPLDis, CipherTextHidingDRAM, PageSwapDisable). Nil means
	// [DefaultGuestPolicy].
	GuestPolicy *abi.SnpPolicy
	// MinimumTCB is the component-wise minimum REPORTED_TCB.
	MinimumTCB kds.TCBParts
	// MinimumLaunchTCB is the component-wise minimum LAUNCH_TCB.
	MinimumLaunchTCB kds.TCBParts
	// MinimumGuestSVN is the minimum GUEST_SVN.
	MinimumGuestSVN uint32
	// VMPL, if set, is the VMPL (0 to 3) the report must have been
	// requested at.
	VMPL *int
	// PermitProvisionalFirmware accepts a COMMITTED_TCB and committed
	// firmware version below the current ones; by default they must be
	// equal.
	PermitProvisionalFirmware bool
}

// DefaultGuestPolicy is the guest policy bound when [Options.GuestPolicy]
// is nil: SMT allowed; debugging, a migration agent and CXL not; no ABI
// minimum or further restriction required.
func DefaultGuestPolicy() abi.SnpPolicy {
	return abi.SnpPolicy{SMT: true}
}

// DefaultTrustedRoots returns AMD's ARK with its ASK and ASVK for each
// product line go-sev-guest embeds (Milan, Genoa, Turin; its verify/trust
// KDS cert_chain files), so that VCEK- and VLEK-signed reports verify
// offline.
func DefaultTrustedRoots() (map[string][]*trust.AMDRootCerts, error) {
	bundles := []struct {
		line       string
		vcek, vlek []byte
	}{
		{"Milan", trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes},
		{"Genoa", trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes},
		{"Turin", trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes},
	}
	roots := map[string][]*trust.AMDRootCerts{}
	for _, b := range bundles {
		var vc, vl trust.ProductCerts
		// TrimSpace: the Turin VLEK bundle ends with a blank line, which
		// the KDS parser refuses.
		if err := vc.FromKDSCertBytes(bytes.TrimSpace(b.vcek)); err != nil || vc.Ask == nil || vc.Ark == nil {
			return nil, fmt.Errorf("embedded %s vcek roots: %v", b.line, err)
		}
		if err := vl.FromKDSCertBytes(bytes.TrimSpace(b.vlek)); err != nil || vl.Asvk == nil || vl.Ark == nil {
			return nil, fmt.Errorf("embedded %s vlek roots: %v", b.line, err)
		}
		r := trust.AMDRootCertsProduct(b.line)
		r.ProductCerts = &trust.ProductCerts{Ark: vc.Ark, Ask: vc.Ask}
		roots[b.line] = []*trust.AMDRootCerts{r}
		if vl.Ark.Equal(vc.Ark) {
			r.ProductCerts.Asvk = vl.Asvk
		} else {
			r2 := trust.AMDRootCertsProduct(b.line)
			r2.ProductCerts = &trust.ProductCerts{Ark: vl.Ark, Asvk: vl.Asvk}
			roots[b.line] = append(roots[b.line], r2)
		}
	}
	return roots, nil
}

// Verifier checks SEV-SNP reports; it implements attest.TEEVerifier. It is
// safe for concurrent use.
type Verifier struct {
	o            Options
	roots        map[string][]*trust.AMDRootCerts
	policy       abi.SnpPolicy
	measurements [][]byte
	now          func() time.Time
}

var _ attest.TEEVerifier = (*Verifier)(nil)

// NewVerifier checks o and returns a Verifier.
func NewVerifier(o Options) (*Verifier, error) {
	v := &Verifier{o: o, roots: o.TrustedRoots, policy: DefaultGuestPolicy(), now: o.Now}
	if v.roots == nil {
		var err error
		if v.roots, err = DefaultTrustedRoots(); err != nil {
			return nil, fmt.Errorf("sev-snp verifier: %w", err)
		}
	}
	if len(v.roots) == 0 {
		return nil, errors.New("sev-snp verifier: no trusted roots")
	}
	if o.CheckRevocations && o.Getter == nil {
		return nil, errors.New("sev-snp verifier: checking revocations needs a getter")
	}
	if o.GuestPolicy != nil {
		v.policy = *o.GuestPolicy
	}
	if o.VMPL != nil && (*o.VMPL < 0 || *o.VMPL > 3) {
		return nil, fmt.Errorf("sev-snp verifier: vmpl %d (want 0 to 3)", *o.VMPL)
	}
	for _, m := range o.Measurements {
		b, err := hex.DecodeString(m)
		if err != nil || len(b) != abi.MeasurementSize {
			return nil, fmt.Errorf("sev-snp verifier: measurement %q is not %d bytes of hex", m, abi.MeasurementSize)
		}
		v.measurements = append(v.measurements, b)
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Verify checks r as the package documentation describes and returns its
// [Claims] as JSON. Every refusal wraps one of [ErrMalformedReport],
// [ErrNotVerified], [ErrReportDataMismatch] or [ErrPolicy].
func (v *Verifier) Verify(ctx context.Context, r *attest.TEEReport, reportData [64]byte) (_ json.RawMessage, err error) {
	defer func() {
		// Defence in depth: go-sev-guest decodes attacker-chosen
		// certificates; a panic in it must refuse one report, not stop
		// the verifier.
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: verification panicked: %v", ErrMalformedReport, p)
		}
	}()
	if r == nil {
		return nil, fmt.Errorf("%w: no report", ErrMalformedReport)
	}
	if r.Type != attest.TEESEVSNP {
		return nil, fmt.Errorf("%w: report type %q (want %q)", ErrMalformedReport, r.Type, attest.TEESEVSNP)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify sev-snp report: %w", err)
	}
	att, err := parse(r.Report, r.Certs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedReport, err)
	}
	vo := &verify.Options{
		CheckRevocations:    v.o.CheckRevocations,
		DisableCertFetching: v.o.Getter == nil,
		Getter:              v.o.Getter,
		Now:                 v.now(),
		TrustedRoots:        v.roots,
	}
	if err := verify.SnpAttestationContext(ctx, att, vo); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotVerified, err)
	}
	rep := att.GetReport()
	if !bytes.Equal(rep.GetReportData(), reportData[:]) {
		return nil, fmt.Errorf("%w: report has %x, want %x", ErrReportDataMismatch, rep.GetReportData(), reportData)
	}
	vo2 := &validate.Options{
		GuestPolicy:               v.policy,
		MinimumGuestSvn:           v.o.MinimumGuestSVN,
		ReportData:                reportData[:],
		MinimumTCB:                v.o.MinimumTCB,
		MinimumLaunchTCB:          v.o.MinimumLaunchTCB,
		PermitProvisionalFirmware: v.o.PermitProvisionalFirmware,
		VMPL:                      v.o.VMPL,
	}
	if err := validate.SnpAttestation(att, vo2); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	if len(v.measurements) > 0 && !containsBytes(v.measurements, rep.GetMeasurement()) {
		return nil, fmt.Errorf("%w: measurement %x is not one of the %d allowed", ErrPolicy, rep.GetMeasurement(), len(v.measurements))
	}
	b, err := json.Marshal(claimsOf(rep))
	if err != nil {
		return nil, fmt.Errorf("verify sev-snp report: claims: %w", err)
	}
	return b, nil
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}

// Claims are what a verified report shows, as [Verifier.Verify] returns
// them (JSON). Byte strings are lowercase hex; field names follow the
// ATTESTATION_REPORT structure.
type Claims struct {
	// Version is the report's VERSION (2 to 5).
	Version uint32 `json:"version"`
	// Measurement is the launch MEASUREMENT (48 bytes).
	Measurement string `json:"measurement"`
	// HostData is HOST_DATA (32 bytes), set by the host at launch.
	HostData string `json:"host_data"`
	// Policy is the guest POLICY.
	Policy Policy `json:"policy"`
	// GuestSVN is GUEST_SVN.
	GuestSVN uint32 `json:"guest_svn"`
	// VMPL is the VMPL the report was requested at.
	VMPL uint32 `json:"vmpl"`
	// Signer is the key that signed: "vcek" or "vlek".
	Signer string `json:"signer"`
	// FamilyID and ImageID are from the ID block (16 bytes each).
	FamilyID string `json:"family_id"`
	ImageID  string `json:"image_id"`
	// IDKeyDigest and AuthorKeyDigest are the SHA-384 digests of the ID
	// block's keys, zero without one.
	IDKeyDigest     string `json:"id_key_digest"`
	AuthorKeyDigest string `json:"author_key_digest"`
	// ReportID and ReportIDMA identify the guest (and its migration
	// agent) across migrations (32 bytes each).
	ReportID   string `json:"report_id"`
	ReportIDMA string `json:"report_id_ma"`
	// ChipID is CHIP_ID (64 bytes; zero if the host masks it).
	ChipID string `json:"chip_id"`
	// CurrentTCB, ReportedTCB, CommittedTCB and LaunchTCB are the TCB
	// versions of the report.
	CurrentTCB   TCB `json:"current_tcb"`
	ReportedTCB  TCB `json:"reported_tcb"`
	CommittedTCB TCB `json:"committed_tcb"`
	LaunchTCB    TCB `json:"launch_tcb"`
	// PlatformInfo is PLATFORM_INFO (16 hex digits).
	PlatformInfo string `json:"platform_info"`
}

// TCB is a TCB_VERSION: the raw 64-bit value (16 hex digits) and its
// security patch levels as Milan and Genoa lay them out (Turin's differ;
// read Raw there).
type TCB struct {
	Raw        string `json:"raw"`
	BootLoader uint8  `json:"bootloader"`
	TEE        uint8  `json:"tee"`
	SNP        uint8  `json:"snp"`
	Microcode  uint8  `json:"microcode"`
}

// Policy is the guest POLICY: the raw 64-bit value (16 hex digits) and its
// fields.
type Policy struct {
	Raw                  string `json:"raw"`
	ABIMajor             uint8  `json:"abi_major"`
	ABIMinor             uint8  `json:"abi_minor"`
	SMT                  bool   `json:"smt"`
	MigrateMA            bool   `json:"migrate_ma"`
	Debug                bool   `json:"debug"`
	SingleSocket         bool   `json:"single_socket"`
	CXLAllowed           bool   `json:"cxl_allowed"`
	MemAES256XTS         bool   `json:"mem_aes_256_xts"`
	RAPLDis              bool   `json:"rapl_dis"`
	CipherTextHidingDRAM bool   `json:"ciphertext_hiding_dram"`
	PageSwapDisable      bool   `json:"page_swap_disable"`
}

func tcbOf(v uint64) TCB {
	p := kds.DecomposeTCBVersion(kds.TCBVersion(v))
	return TCB{Raw: fmt.Sprintf("%016x", v), BootLoader: p.BlSpl, TEE: p.TeeSpl, SNP: p.SnpSpl, Microcode: p.UcodeSpl}
}

func claimsOf(r *spb.Report) *Claims {
	p, _ := abi.ParseSnpPolicy(r.GetPolicy()) // parse checked it
	signer := "unknown"
	if info, err := abi.ParseSignerInfo(r.GetSignerInfo()); err == nil {
		switch info.SigningKey {
		case abi.VcekReportSigner:
			signer = "vcek"
		case abi.VlekReportSigner:
			signer = "vlek"
		}
	}
	return &Claims{
		Version:     r.GetVersion(),
		Measurement: hex.EncodeToString(r.GetMeasurement()),
		HostData:    hex.EncodeToString(r.GetHostData()),
		Policy: Policy{Raw: fmt.Sprintf("%016x", r.GetPolicy()), ABIMajor: p.ABIMajor, ABIMinor: p.ABIMinor,
			SMT: p.SMT, MigrateMA: p.MigrateMA, Debug: p.Debug, SingleSocket: p.SingleSocket, CXLAllowed: p.CXLAllowed,
			MemAES256XTS: p.MemAES256XTS, RAPLDis: p.RAPLDis, CipherTextHidingDRAM: p.CipherTextHidingDRAM,
			PageSwapDisable: p.PageSwapDisable},
		GuestSVN:        r.GetGuestSvn(),
		VMPL:            r.GetVmpl(),
		Signer:          signer,
		FamilyID:        hex.EncodeToString(r.GetFamilyId()),
		ImageID:         hex.EncodeToString(r.GetImageId()),
		IDKeyDigest:     hex.EncodeToString(r.GetIdKeyDigest()),
		AuthorKeyDigest: hex.EncodeToString(r.GetAuthorKeyDigest()),
		ReportID:        hex.EncodeToString(r.GetReportId()),
		ReportIDMA:      hex.EncodeToString(r.GetReportIdMa()),
		ChipID:          hex.EncodeToString(r.GetChipId()),
		CurrentTCB:      tcbOf(r.GetCurrentTcb()),
		ReportedTCB:     tcbOf(r.GetReportedTcb()),
		CommittedTCB:    tcbOf(r.GetCommittedTcb()),
		LaunchTCB:       tcbOf(r.GetLaunchTcb()),
		PlatformInfo:    fmt.Sprintf("%016x", r.GetPlatformInfo()),
	}
}
