package tdx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	_ "embed" // the Intel SGX Root CA
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/validate"
	"github.com/google/go-tdx-guest/verify"
	"github.com/google/go-tdx-guest/verify/trust"

	"github.com/confidisk/confidisk/attest"
)

// IntelSGXRootCAFingerprint is the SHA-256 digest (hex) of the DER Intel
// SGX Root CA certificate that [IntelSGXRootCA] returns.
const IntelSGXRootCAFingerprint = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

//go:embed intel_sgx_root_ca.pem
var intelRootPEM []byte

// IntelSGXRootCA returns the Intel SGX Root CA certificate, the root of
// the PCK certificate chains of TDX quotes (as go-tdx-guest's
// verify/trusted_root.pem, and Intel's
// Intel_SGX_Provisioning_Certification_RootCA).
func IntelSGXRootCA() (*x509.Certificate, error) {
	b, _ := pem.Decode(intelRootPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("embedded intel sgx root ca: no pem certificate")
	}
	if d := sha256.Sum256(b.Bytes); hex.EncodeToString(d[:]) != IntelSGXRootCAFingerprint {
		return nil, fmt.Errorf("embedded intel sgx root ca: fingerprint %x", d)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("embedded intel sgx root ca: %w", err)
	}
	return c, nil
}

// Options configure a [Verifier]: what it trusts, whether it fetches
// Intel's collateral, and the policy a genuine quote must meet. The zero
// value trusts the Intel SGX Root CA, stays offline, refuses debuggable TDs
// and accepts any measurement.
type Options struct {
	// TrustedRoots are the root certificates the quote's PCK chain must
	// reach; nil means the Intel SGX Root CA ([IntelSGXRootCA]).
	TrustedRoots *x509.CertPool
	// GetCollateral fetches Intel's TCB Info and QE Identity for the
	// quote's platform through Getter, verifies them up to TrustedRoots
	// and requires the TDX and QE TCB status to be UpToDate. It requires
	// Getter.
	GetCollateral bool
	// CheckRevocations also fetches the PCK and root CA CRLs and refuses
	// revoked certificates. It requires GetCollateral.
	CheckRevocations bool
	// Getter fetches Intel PCS URLs: go-tdx-guest's
	// trust.DefaultHTTPSGetter() for the network, or a getter of stored
	// responses. Unused without GetCollateral.
	Getter trust.HTTPSGetter
	// Now is the time at which certificates (and collateral) must be
	// valid; nil means time.Now.
	Now func() time.Time

	// MRTDs are the allowed MRTD values (the TD's initial contents, as
	// the TDX module measured them; 48 bytes in hex each); empty allows
	// any.
	MRTDs []string
	// RTMRs are the allowed values of RTMR0 to RTMR3 by index (48 bytes in
	// hex each); an index without values allows any.
	RTMRs map[int][]string
	// MRSeams are the allowed MRSEAM values (the TDX module's measurement,
	// 48 bytes in hex each); empty allows any.
	MRSeams []string
	// MinimumTEETCBSVN is the component-wise minimum TEE_TCB_SVN (16
	// bytes in hex); empty means no minimum.
	MinimumTEETCBSVN string
	// MinimumQESVN and MinimumPCESVN are the minimum SVNs of the quoting
	// enclave and the provisioning certification enclave.
	MinimumQESVN  uint16
	MinimumPCESVN uint16
	// AllowDebug accepts debuggable TDs (TD_ATTRIBUTES.DEBUG, bit 0: the
	// host can read and change the TD's state). Refused by default.
	AllowDebug bool
}

// Verifier checks TDX quotes; it implements attest.TEEVerifier. It is safe
// for concurrent use.
type Verifier struct {
	o       Options
	roots   *x509.CertPool
	mrtds   [][]byte
	rtmrs   [4][][]byte
	mrseams [][]byte
	minTCB  []byte
	now     func() time.Time
}

var _ attest.TEEVerifier = (*Verifier)(nil)

// NewVerifier checks o and returns a Verifier.
func NewVerifier(o Options) (*Verifier, error) {
	v := &Verifier{o: o, roots: o.TrustedRoots, now: o.Now}
	if v.roots == nil {
		root, err := IntelSGXRootCA()
		if err != nil {
			return nil, fmt.Errorf("tdx verifier: %w", err)
		}
		v.roots = x509.NewCertPool()
		v.roots.AddCert(root)
	}
	if o.GetCollateral && o.Getter == nil {
		return nil, errors.New("tdx verifier: fetching collateral needs a getter")
	}
	if o.CheckRevocations && !o.GetCollateral {
		return nil, errors.New("tdx verifier: checking revocations needs collateral")
	}
	var err error
	if v.mrtds, err = decodeAll("mrtd", o.MRTDs, abi.MrTdSize); err != nil {
		return nil, err
	}
	if v.mrseams, err = decodeAll("mrseam", o.MRSeams, abi.MrSeamSize); err != nil {
		return nil, err
	}
	for i, vals := range o.RTMRs {
		if i < 0 || i > 3 {
			return nil, fmt.Errorf("tdx verifier: rtmr %d (want 0 to 3)", i)
		}
		if v.rtmrs[i], err = decodeAll(fmt.Sprintf("rtmr%d", i), vals, abi.RtmrSize); err != nil {
			return nil, err
		}
	}
	if o.MinimumTEETCBSVN != "" {
		if v.minTCB, err = hex.DecodeString(o.MinimumTEETCBSVN); err != nil || len(v.minTCB) != abi.TeeTcbSvnSize {
			return nil, fmt.Errorf("tdx verifier: minimum tee_tcb_svn %q is not %d bytes of hex", o.MinimumTEETCBSVN, abi.TeeTcbSvnSize)
		}
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

func decodeAll(name string, vals []string, size int) ([][]byte, error) {
	var out [][]byte
	for _, s := range vals {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != size {
			return nil, fmt.Errorf("tdx verifier: %s %q is not %d bytes of hex", name, s, size)
		}
		out = append(out, b)
	}
	return out, nil
}

// Verify checks r as the package documentation describes and returns its
// [Claims] as JSON. Every refusal wraps one of [ErrMalformedQuote],
// [ErrNotVerified], [ErrReportDataMismatch] or [ErrPolicy].
func (v *Verifier) Verify(ctx context.Context, r *attest.TEEReport, reportData [64]byte) (_ json.RawMessage, err error) {
	defer func() {
		// Defence in depth: go-tdx-guest decodes attacker-chosen quotes
		// and certificates; a panic in it must refuse one quote, not stop
		// the verifier.
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: verification panicked: %v", ErrMalformedQuote, p)
		}
	}()
	if r == nil {
		return nil, fmt.Errorf("%w: no report", ErrMalformedQuote)
	}
	if r.Type != attest.TEETDX {
		return nil, fmt.Errorf("%w: report type %q (want %q)", ErrMalformedQuote, r.Type, attest.TEETDX)
	}
	if len(r.Certs) != 0 {
		return nil, fmt.Errorf("%w: %d bytes of certs (a tdx quote carries its pck chain)", ErrMalformedQuote, len(r.Certs))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("verify tdx quote: %w", err)
	}
	q, err := parseQuote(r.Report)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedQuote, err)
	}
	now := v.now()
	// verify.Options keeps per-quote state: one per call.
	vo := &verify.Options{
		CheckRevocations: v.o.CheckRevocations,
		GetCollateral:    v.o.GetCollateral,
		Getter:           v.o.Getter,
		Now:              &verify.TimeSet{PckCertChain: now, TcbInfo: now, QeIdentity: now, PckCrl: now, RootCaCrl: now},
		TrustedRoots:     v.roots,
	}
	if err := verify.TdxQuoteContext(ctx, q, vo); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotVerified, err)
	}
	if err := checkQEIdentity(q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetQeReport()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotVerified, err)
	}
	body := q.GetTdQuoteBody()
	if !bytes.Equal(body.GetReportData(), reportData[:]) {
		return nil, fmt.Errorf("%w: quote has %x, want %x", ErrReportDataMismatch, body.GetReportData(), reportData)
	}
	if err := v.checkPolicy(q, reportData); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	b, err := json.Marshal(claimsOf(q, v.o.GetCollateral))
	if err != nil {
		return nil, fmt.Errorf("verify tdx quote: claims: %w", err)
	}
	return b, nil
}

// Intel's TD quoting enclave identity, from the QE Identity that Intel's
// PCS signs (https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity,
// "id":"TD_QE"): MRSIGNER, ISVPRODID, and MISCSELECT and ATTRIBUTES under
// their masks (the QE is not in debug mode).
var (
	tdQEMRSigner       = mustHex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")
	tdQEAttributes     = mustHex("11000000000000000000000000000000")
	tdQEAttributesMask = mustHex("fbffffffffffffff0000000000000000")
)

const (
	tdQEISVProdID      = 2
	tdQEMiscSelect     = 0
	tdQEMiscSelectMask = 0xffffffff
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// checkQEIdentity checks offline that the quote's QE report, whose
// signature by the PCK key verify.TdxQuote checked, is of Intel's TD
// quoting enclave. go-tdx-guest compares it with Intel's QE Identity only
// when it fetches collateral.
func checkQEIdentity(r *pb.EnclaveReport) error {
	if !bytes.Equal(r.GetMrSigner(), tdQEMRSigner) {
		return fmt.Errorf("the quoting enclave's mrsigner %x is not intel's td qe signer", r.GetMrSigner())
	}
	if r.GetIsvProdId() != tdQEISVProdID {
		return fmt.Errorf("the quoting enclave's isvprodid is %d (want %d, the td qe)", r.GetIsvProdId(), tdQEISVProdID)
	}
	if r.GetMiscSelect()&tdQEMiscSelectMask != tdQEMiscSelect {
		return fmt.Errorf("the quoting enclave's miscselect is %#x", r.GetMiscSelect())
	}
	a := r.GetAttributes()
	if len(a) != len(tdQEAttributesMask) {
		return fmt.Errorf("the quoting enclave's attributes are %d bytes", len(a))
	}
	for i := range a {
		if a[i]&tdQEAttributesMask[i] != tdQEAttributes[i] {
			return fmt.Errorf("the quoting enclave's attributes %x do not match intel's td qe (%x under mask %x)", a, tdQEAttributes, tdQEAttributesMask)
		}
	}
	return nil
}

// checkPolicy applies validate.TdxQuote and this package's checks to a
// verified quote.
func (v *Verifier) checkPolicy(q *pb.QuoteV4, reportData [64]byte) error {
	body := q.GetTdQuoteBody()
	o := &validate.Options{
		HeaderOptions: validate.HeaderOptions{MinimumQeSvn: v.o.MinimumQESVN, MinimumPceSvn: v.o.MinimumPCESVN},
		TdQuoteBodyOptions: validate.TdQuoteBodyOptions{
			MinimumTeeTcbSvn: v.minTCB,
			ReportData:       reportData[:],
			AnyMrTd:          v.mrtds,
		},
	}
	if err := validate.TdxQuote(q, o); err != nil {
		return err
	}
	if attr := body.GetTdAttributes(); !v.o.AllowDebug && attr[0]&1 != 0 {
		return fmt.Errorf("the td is debuggable (td_attributes %x)", attr)
	}
	if len(v.mrseams) > 0 && !containsBytes(v.mrseams, body.GetMrSeam()) {
		return fmt.Errorf("mrseam %x is not one of the %d allowed", body.GetMrSeam(), len(v.mrseams))
	}
	for i, allowed := range v.rtmrs {
		if len(allowed) > 0 && !containsBytes(allowed, body.GetRtmrs()[i]) {
			return fmt.Errorf("rtmr%d %x is not one of the %d allowed", i, body.GetRtmrs()[i], len(allowed))
		}
	}
	return nil
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}

// Claims are what a verified quote shows, as [Verifier.Verify] returns
// them (JSON). Byte strings are lowercase hex, in the quote's byte order;
// field names follow the TD quote body.
type Claims struct {
	// MRTD is the measurement of the TD's initial contents (48 bytes).
	MRTD string `json:"mrtd"`
	// RTMRs are RTMR0 to RTMR3 (48 bytes each).
	RTMRs []string `json:"rtmrs"`
	// TDAttributes is TD_ATTRIBUTES (8 bytes); Debug is its bit 0.
	TDAttributes string `json:"td_attributes"`
	Debug        bool   `json:"debug"`
	// XFAM is the TD's extended feature mask (8 bytes).
	XFAM string `json:"xfam"`
	// MRSeam and MRSignerSeam measure the TDX module and its signer (48
	// bytes each); SeamAttributes are its attributes (8 bytes).
	MRSeam         string `json:"mrseam"`
	MRSignerSeam   string `json:"mrsignerseam"`
	SeamAttributes string `json:"seam_attributes"`
	// TEETCBSVN is TEE_TCB_SVN (16 bytes).
	TEETCBSVN string `json:"tee_tcb_svn"`
	// MRConfigID, MROwner and MROwnerConfig are set by the host at TD
	// creation (48 bytes each).
	MRConfigID    string `json:"mrconfigid"`
	MROwner       string `json:"mrowner"`
	MROwnerConfig string `json:"mrownerconfig"`
	// QESVN and PCESVN are the quoting and provisioning certification
	// enclaves' SVNs; QEVendorID is the QE vendor (16 bytes).
	QESVN      uint16 `json:"qe_svn"`
	PCESVN     uint16 `json:"pce_svn"`
	QEVendorID string `json:"qe_vendor_id"`
	// FMSPC is the platform's family-model-stepping-platform-custom-SKU
	// from the PCK certificate (6 bytes), if it has the SGX extensions.
	FMSPC string `json:"fmspc,omitempty"`
	// TCBStatus is "up-to-date" when Intel's collateral was checked,
	// "unchecked" otherwise.
	TCBStatus string `json:"tcb_status"`
}

func claimsOf(q *pb.QuoteV4, collateral bool) *Claims {
	b, h := q.GetTdQuoteBody(), q.GetHeader()
	c := &Claims{
		MRTD:           hex.EncodeToString(b.GetMrTd()),
		TDAttributes:   hex.EncodeToString(b.GetTdAttributes()),
		Debug:          b.GetTdAttributes()[0]&1 != 0,
		XFAM:           hex.EncodeToString(b.GetXfam()),
		MRSeam:         hex.EncodeToString(b.GetMrSeam()),
		MRSignerSeam:   hex.EncodeToString(b.GetMrSignerSeam()),
		SeamAttributes: hex.EncodeToString(b.GetSeamAttributes()),
		TEETCBSVN:      hex.EncodeToString(b.GetTeeTcbSvn()),
		MRConfigID:     hex.EncodeToString(b.GetMrConfigId()),
		MROwner:        hex.EncodeToString(b.GetMrOwner()),
		MROwnerConfig:  hex.EncodeToString(b.GetMrOwnerConfig()),
		QESVN:          binary.LittleEndian.Uint16(h.GetQeSvn()),
		PCESVN:         binary.LittleEndian.Uint16(h.GetPceSvn()),
		QEVendorID:     hex.EncodeToString(h.GetQeVendorId()),
		TCBStatus:      "unchecked",
	}
	for _, r := range b.GetRtmrs() {
		c.RTMRs = append(c.RTMRs, hex.EncodeToString(r))
	}
	if chain, err := verify.ExtractChainFromQuote(q); err == nil {
		if ext, err := pcs.PckCertificateExtensions(chain.PCKCertificate); err == nil {
			c.FMSPC = ext.FMSPC
		}
	}
	if collateral {
		c.TCBStatus = "up-to-date"
	}
	return c
}
