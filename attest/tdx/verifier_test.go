package tdx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	test "github.com/google/go-tdx-guest/testing"

	"github.com/confidisk/confidisk/attest"
)

// Values of the sample quote.
const (
	sampleMRTD   = "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb"
	sampleTDAttr = "0000004000000000"
	sampleXFAM   = "e71a060000000000"
)

func TestVerify(t *testing.T) {
	ctx := context.Background()
	rd := sampleReportData()
	q := sample()
	rtmr0 := hex.EncodeToString(q[offRTMR0 : offRTMR0+48])
	mrseam := hex.EncodeToString(q[offMRSeam : offMRSeam+48])
	other := strings.Repeat("11", 48)
	var otherRD [64]byte
	otherRD[0] = 1

	tests := []struct {
		name   string
		quote  []byte
		report *attest.TEEReport // instead of quote
		rd     *[64]byte         // expected report data, default rd
		o      Options
		want   error
		msg    string // what the refusal says, if set
	}{
		{name: "accepted", quote: q},
		{name: "accepted, mrtd allowed", quote: q, o: Options{MRTDs: []string{other, sampleMRTD}}},
		{name: "accepted, rtmr0 and mrseam allowed", quote: q, o: Options{RTMRs: map[int][]string{0: {other, rtmr0}}, MRSeams: []string{mrseam}}},
		{name: "accepted, minimum svns met", quote: q, o: Options{MinimumTEETCBSVN: strings.Repeat("00", 16)}},
		{name: "accepted, unsigned bytes appended", quote: append(sample(), 1, 2, 3)},

		{name: "report_data differs", quote: q, rd: &otherRD, want: ErrReportDataMismatch},
		{name: "mrtd flipped in the signed body", quote: edited(flip(offMRTD)), want: ErrNotVerified},
		{name: "report_data edited to the expected one", quote: edited(func(b []byte) { copy(b[offReportData:], otherRD[:]) }), rd: &otherRD, want: ErrNotVerified},
		{name: "debug bit set after signing", quote: edited(flip(offTDAttributes)), want: ErrNotVerified},
		{name: "header edited", quote: edited(flip(12)), want: ErrNotVerified},
		{name: "signature flipped", quote: edited(flip(offSignature + 5)), want: ErrNotVerified},
		{name: "attestation key flipped", quote: edited(flip(offAttestKey + 5)), want: ErrNotVerified},
		{name: "qe report flipped", quote: edited(flip(offQEReport + 0x40)), want: ErrNotVerified},
		{name: "pck chain under another root", quote: q, o: Options{TrustedRoots: otherRoot(t)}, want: ErrNotVerified},
		{name: "pck certificate expired", quote: q, o: Options{Now: func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }}, want: ErrNotVerified},
		// go-tdx-guest's sample collateral (TCB Info, QE Identity, CRLs as
		// Intel's PCS served them) verifies up to the Intel root, but its
		// TCB levels do not cover the sample quote's platform: the quote
		// is refused at the TCB status check (as go-tdx-guest's own
		// TestNegativeRawQuoteVerifyWithCollateral expects).
		{name: "collateral fetched, platform tcb level unknown", quote: q,
			o: Options{GetCollateral: true, CheckRevocations: true, Getter: test.TestGetter}, want: ErrNotVerified, msg: "no matching TCB level found"},
		{name: "collateral expired", quote: q, o: Options{GetCollateral: true, Getter: test.TestGetter,
			Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}, want: ErrNotVerified},
		{name: "mrtd not allowed", quote: q, o: Options{MRTDs: []string{other}}, want: ErrPolicy},
		{name: "rtmr2 not allowed", quote: q, o: Options{RTMRs: map[int][]string{2: {other}}}, want: ErrPolicy},
		{name: "mrseam not allowed", quote: q, o: Options{MRSeams: []string{other}}, want: ErrPolicy},
		{name: "tee_tcb_svn below the minimum", quote: q, o: Options{MinimumTEETCBSVN: strings.Repeat("ff", 16)}, want: ErrPolicy},
		{name: "qe svn below the minimum", quote: q, o: Options{MinimumQESVN: 0xffff}, want: ErrPolicy},
		{name: "pce svn below the minimum", quote: q, o: Options{MinimumPCESVN: 0xffff}, want: ErrPolicy},
		{name: "truncated quote", quote: q[:len(q)/2], want: ErrMalformedQuote},
		{name: "quote cut in the pck chain", quote: q[:len(q)-100], want: ErrMalformedQuote},
		{name: "quote cut after the body", quote: q[:sigDataOff], want: ErrMalformedQuote},
		{name: "quote of 100 bytes", quote: q[:100], want: ErrMalformedQuote},
		{name: "empty quote", quote: []byte{}, want: ErrMalformedQuote},
		{name: "version 3", quote: edited(func(b []byte) { b[0] = 3 }), want: ErrMalformedQuote},
		{name: "not a tdx quote", quote: edited(put32(4, 0)), want: ErrMalformedQuote},
		{name: "signature data size past the end", quote: edited(put32(sigDataSizeOff, 0xfffffff0)), want: ErrMalformedQuote},
		{name: "qe auth data size past the end", quote: edited(func(b []byte) { binary.LittleEndian.PutUint16(b[offQEAuthSize:], 0xffff) }), want: ErrMalformedQuote},
		{name: "certs given", report: &attest.TEEReport{Type: attest.TEETDX, Report: q, Certs: []byte("pck")}, want: ErrMalformedQuote},
		{name: "sev-snp type", report: &attest.TEEReport{Type: attest.TEESEVSNP, Report: q}, want: ErrMalformedQuote},
		{name: "no report", report: nil, want: ErrMalformedQuote},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			if o.Now == nil {
				o.Now = func() time.Time { return testNow }
			}
			v, err := NewVerifier(o)
			if err != nil {
				t.Fatal(err)
			}
			r := tc.report
			if tc.quote != nil {
				r = report(tc.quote)
			}
			want := rd
			if tc.rd != nil {
				want = *tc.rd
			}
			b, err := v.Verify(ctx, r, want)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("Verify: %v, want an error with %q", err, tc.msg)
				}
				t.Logf("refused: %v", err)
				return
			}
			var c Claims
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			if c.MRTD != sampleMRTD || c.TCBStatus != "unchecked" {
				t.Errorf("claims mrtd %s, tcb status %s; want %s, unchecked", c.MRTD, c.TCBStatus, sampleMRTD)
			}
		})
	}
}

// otherRoot is a pool with a self-signed P-256 CA named as Intel's root.
func otherRoot(t *testing.T) *x509.CertPool {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Intel SGX Root CA"},
		NotBefore: testNow.AddDate(-10, 0, 0), NotAfter: testNow.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

func TestVerifyClaims(t *testing.T) {
	v, err := NewVerifier(Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	b, err := v.Verify(context.Background(), report(sample()), sampleReportData())
	if err != nil {
		t.Fatal(err)
	}
	var got Claims
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	q := sample()
	hexAt := func(off, n int) string { return hex.EncodeToString(q[off : off+n]) }
	want := Claims{
		MRTD:           sampleMRTD,
		TDAttributes:   sampleTDAttr,
		XFAM:           sampleXFAM,
		MRSeam:         hexAt(offMRSeam, 48),
		MRSignerSeam:   hexAt(offBody+0x40, 48),
		SeamAttributes: hexAt(offBody+0x70, 8),
		TEETCBSVN:      hexAt(offBody, 16),
		MRConfigID:     hexAt(offBody+0xB8, 48),
		MROwner:        hexAt(offBody+0xE8, 48),
		MROwnerConfig:  hexAt(offBody+0x118, 48),
		RTMRs:          []string{hexAt(offRTMR0, 48), hexAt(offRTMR0+48, 48), hexAt(offRTMR0+96, 48), hexAt(offRTMR0+144, 48)},
		QESVN:          binary.LittleEndian.Uint16(q[10:12]),
		PCESVN:         binary.LittleEndian.Uint16(q[8:10]),
		QEVendorID:     hexAt(12, 16),
		FMSPC:          "50806f000000",
		TCBStatus:      "unchecked",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	for _, key := range []string{`"mrtd"`, `"rtmrs"`, `"td_attributes"`, `"xfam"`, `"mrseam"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("claims %s lack %s", b, key)
		}
	}
}

// TestPolicyChecks covers the checks a signed quote cannot be edited to
// reach: a debuggable TD, a quoting enclave other than Intel's.
func TestPolicyChecks(t *testing.T) {
	rd := sampleReportData()
	debug, err := parseQuote(edited(flip(offTDAttributes)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		allow bool
		want  string
	}{{allow: false, want: "the td is debuggable"}, {allow: true}} {
		v, err := NewVerifier(Options{AllowDebug: tc.allow})
		if err != nil {
			t.Fatal(err)
		}
		err = v.checkPolicy(debug, rd)
		if got := errString(err); !strings.Contains(got, tc.want) || (tc.want == "") != (err == nil) {
			t.Errorf("checkPolicy(debug td), AllowDebug %v: %v, want %q", tc.allow, err, tc.want)
		}
	}

	qeReport := func(edit func([]byte)) error {
		q := sample()
		edit(q[offQEReport:])
		p, err := parseQuote(q)
		if err != nil {
			t.Fatal(err)
		}
		return checkQEIdentity(p.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetQeReport())
	}
	for _, tc := range []struct {
		name string
		edit func([]byte)
		want string
	}{
		{name: "intel's qe", edit: func([]byte) {}},
		{name: "other mrsigner", edit: func(r []byte) { r[0x80] ^= 1 }, want: "mrsigner"},
		{name: "other product", edit: func(r []byte) { r[0x100] = 1 }, want: "isvprodid"},
		{name: "debug qe", edit: func(r []byte) { r[0x30] |= 2 }, want: "attributes"},
		{name: "miscselect", edit: func(r []byte) { r[0x10] = 1 }, want: "miscselect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := qeReport(tc.edit)
			if got := errString(err); !strings.Contains(got, tc.want) || (tc.want == "") != (err == nil) {
				t.Errorf("checkQEIdentity: %v, want %q", err, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestNewVerifierOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{name: "defaults", o: Options{}},
		{name: "mrtd not hex", o: Options{MRTDs: []string{"zz"}}, want: "mrtd \"zz\" is not 48 bytes"},
		{name: "short mrseam", o: Options{MRSeams: []string{"abcd"}}, want: "mrseam"},
		{name: "rtmr index", o: Options{RTMRs: map[int][]string{4: {strings.Repeat("00", 48)}}}, want: "rtmr 4"},
		{name: "short rtmr", o: Options{RTMRs: map[int][]string{1: {"00"}}}, want: "rtmr1"},
		{name: "short tee_tcb_svn", o: Options{MinimumTEETCBSVN: "00"}, want: "tee_tcb_svn"},
		{name: "collateral without getter", o: Options{GetCollateral: true}, want: "needs a getter"},
		{name: "revocations without collateral", o: Options{CheckRevocations: true, Getter: test.TestGetter}, want: "needs collateral"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerifier(tc.o)
			if got := errString(err); (tc.want == "") != (err == nil) || !strings.Contains(got, tc.want) {
				t.Errorf("NewVerifier: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestIntelSGXRootCA(t *testing.T) {
	c, err := IntelSGXRootCA()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("CN=Intel SGX Root CA,O=Intel Corporation,L=Santa Clara,ST=CA,C=US", c.Subject.String()); diff != "" {
		t.Errorf("subject (-want +got):\n%s", diff)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
}

func TestVerifyContext(t *testing.T) {
	v, err := NewVerifier(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(ctx, report(sample()), sampleReportData()); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with a cancelled context: %v, want %v", err, context.Canceled)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	v, err := NewVerifier(Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			rd := sampleReportData()
			q := sample()
			if i%2 == 1 {
				rd[0] ^= 1 // half of them refused
			}
			_, err := v.Verify(context.Background(), report(q), rd)
			if i%2 == 1 {
				if !errors.Is(err, ErrReportDataMismatch) {
					err = fmt.Errorf("other report data: %v, want %v", err, ErrReportDataMismatch)
				} else {
					err = nil
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
