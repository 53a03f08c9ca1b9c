package snp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	test "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/confidisk/confidisk/attest"
)

func TestVerify(t *testing.T) {
	ctx := context.Background()
	// The report data a guest's issuer would ask for.
	rd := attest.TEEReportData([]byte("nonce"), nil, []byte("ak public"), []byte("log"), nil)
	other := attest.TEEReportData([]byte("another nonce"), nil, []byte("ak public"), []byte("log"), nil)
	amd := newSigner(t, nil)
	forger := newSigner(t, forgerKeys(t))
	roots := rootsOf(amd)
	good := signedReport(t, amd, rd, nil)
	byForger := signedReport(t, forger, rd, nil)
	kdsGetter, err := test.FakeKDSFromSigner(amd)
	if err != nil {
		t.Fatal(err)
	}
	measHex := hex.EncodeToString(measurement[:])
	otherMeas := strings.Repeat("11", abi.MeasurementSize)
	vmpl1 := 1

	tests := []struct {
		name   string
		report *attest.TEEReport
		rd     [64]byte // the expected report data; zero means rd
		o      Options  // TrustedRoots nil means roots, unless defaultRoots
		// defaultRoots verifies with AMD's embedded roots.
		defaultRoots bool
		want         error
	}{
		{name: "accepted", report: good},
		{name: "accepted, measurement allowed", report: good, o: Options{Measurements: []string{otherMeas, measHex}}},
		{name: "accepted, vlek-signed", report: signedReport(t, amd, rd, func(r []byte) {
			binary.LittleEndian.PutUint32(r[0x48:0x4C], abi.ComposeSignerInfo(abi.SignerInfo{SigningKey: abi.VlekReportSigner}))
		})},
		{name: "accepted, version 2 report", report: signedReport(t, amd, rd, func(r []byte) {
			binary.LittleEndian.PutUint32(r[0:4], 2)
			copy(r[0x188:0x18B], []byte{0, 0, 0})
		})},
		{name: "accepted, vcek from the kds getter", report: &attest.TEEReport{Type: attest.TEESEVSNP, Report: good.Report},
			o: Options{Getter: kdsGetter}},
		{name: "accepted, debug allowed by the guest policy", report: signedReport(t, amd, rd, setPolicy(abi.SnpPolicy{SMT: true, Debug: true})),
			o: Options{GuestPolicy: &abi.SnpPolicy{SMT: true, Debug: true}}},

		{name: "report_data differs", report: good, rd: other, want: ErrReportDataMismatch},
		{name: "forged SNP report (fake signed with the wrong key)", report: &attest.TEEReport{Type: attest.TEESEVSNP,
			Report: byForger.Report, Certs: good.Certs}, want: ErrNotVerified},
		{name: "forged SNP report with the forger's own certificate chain", report: byForger, want: ErrNotVerified},
		{name: "measurement edited after signing", report: edited(good, func(r []byte) { r[0x90] ^= 1 }), want: ErrNotVerified},
		{name: "report_data edited after signing", report: edited(good, func(r []byte) { copy(r[0x50:0x90], other[:]) }),
			rd: other, want: ErrNotVerified},
		{name: "signature edited", report: edited(good, func(r []byte) { r[0x2A0] ^= 1 }), want: ErrNotVerified},
		{name: "test chain under AMD's roots", report: good, defaultRoots: true, want: ErrNotVerified},
		{name: "no vcek certificate, offline", report: &attest.TEEReport{Type: attest.TEESEVSNP, Report: good.Report}, want: ErrNotVerified},
		{name: "certificates expired", report: good, o: Options{Now: func() time.Time { return testNow.AddDate(30, 0, 0) }}, want: ErrNotVerified},
		{name: "measurement not allowed", report: good, o: Options{Measurements: []string{otherMeas}}, want: ErrPolicy},
		{name: "debug policy when debug is not allowed", report: signedReport(t, amd, rd, setPolicy(abi.SnpPolicy{SMT: true, Debug: true})), want: ErrPolicy},
		{name: "migration agent not allowed", report: signedReport(t, amd, rd, setPolicy(abi.SnpPolicy{MigrateMA: true})), want: ErrPolicy},
		{name: "smt not allowed", report: good, o: Options{GuestPolicy: &abi.SnpPolicy{}}, want: ErrPolicy},
		{name: "reported tcb below the minimum", report: good, o: Options{MinimumTCB: kds.TCBParts{SnpSpl: 8}}, want: ErrPolicy},
		{name: "guest svn below the minimum", report: good, o: Options{MinimumGuestSVN: 1}, want: ErrPolicy},
		{name: "other vmpl", report: good, o: Options{VMPL: &vmpl1}, want: ErrPolicy},
		{name: "truncated report", report: &attest.TEEReport{Type: attest.TEESEVSNP, Report: good.Report[:0x2A0], Certs: good.Certs}, want: ErrMalformedReport},
		{name: "report with trailing bytes", report: &attest.TEEReport{Type: attest.TEESEVSNP, Report: append(bytes.Clone(good.Report), 0), Certs: good.Certs}, want: ErrMalformedReport},
		{name: "garbage report", report: &attest.TEEReport{Type: attest.TEESEVSNP, Report: bytes.Repeat([]byte{0xff}, ReportSize)}, want: ErrMalformedReport},
		{name: "unsupported report version", report: edited(good, func(r []byte) { r[0] = 9 }), want: ErrMalformedReport},
		{name: "garbage certificate table", report: &attest.TEEReport{Type: attest.TEESEVSNP, Report: good.Report, Certs: []byte("garbage")}, want: ErrMalformedReport},
		{name: "certificate entry past the table", report: &attest.TEEReport{Type: attest.TEESEVSNP, Report: good.Report,
			Certs: certTable(0xfffffff0, 0x20)}, want: ErrMalformedReport},
		{name: "tdx type", report: &attest.TEEReport{Type: attest.TEETDX, Report: good.Report, Certs: good.Certs}, want: ErrMalformedReport},
		{name: "no report", want: ErrMalformedReport},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			if o.TrustedRoots == nil && !tc.defaultRoots {
				o.TrustedRoots = roots
			}
			if o.Now == nil {
				o.Now = func() time.Time { return testNow }
			}
			v, err := NewVerifier(o)
			if err != nil {
				t.Fatal(err)
			}
			want := rd
			if tc.rd != ([64]byte{}) {
				want = tc.rd
			}
			claims, err := v.Verify(ctx, tc.report, want)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
			if err != nil {
				t.Logf("refused: %v", err)
				return
			}
			var c Claims
			if err := json.Unmarshal(claims, &c); err != nil {
				t.Fatal(err)
			}
			if c.Measurement != measHex {
				t.Errorf("claimed measurement %s, want %s", c.Measurement, measHex)
			}
		})
	}
}

// edited is a copy of r whose report edit changed.
func edited(r *attest.TEEReport, edit func([]byte)) *attest.TEEReport {
	c := &attest.TEEReport{Type: r.Type, Report: bytes.Clone(r.Report), Certs: bytes.Clone(r.Certs)}
	edit(c.Report)
	return c
}

// certTable is a certificate table with one VCEK entry of the given
// offset and length and 16 bytes of data.
func certTable(off, length uint32) []byte {
	b := make([]byte, 2*abi.CertTableEntrySize+16)
	copy(b, guidVCEK[:])
	binary.LittleEndian.PutUint32(b[16:20], off)
	binary.LittleEndian.PutUint32(b[20:24], length)
	return b
}

func TestVerifyClaims(t *testing.T) {
	rd := attest.TEEReportData([]byte("nonce"), nil, []byte("ak public"), nil, nil)
	amd := newSigner(t, nil)
	r := signedReport(t, amd, rd, func(r []byte) {
		binary.LittleEndian.PutUint32(r[0x04:0x08], 7) // GUEST_SVN
		binary.LittleEndian.PutUint32(r[0x30:0x34], 1) // VMPL
		copy(r[0xC0:0xE0], bytes.Repeat([]byte{0xcd}, 32))
		copy(r[0x140:0x160], bytes.Repeat([]byte{0x42}, 32))
	})
	vmpl := 1
	v, err := NewVerifier(Options{TrustedRoots: rootsOf(amd), Now: func() time.Time { return testNow },
		MinimumGuestSVN: 7, VMPL: &vmpl})
	if err != nil {
		t.Fatal(err)
	}
	b, err := v.Verify(context.Background(), r, rd)
	if err != nil {
		t.Fatal(err)
	}
	var got Claims
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	zeroTCB := TCB{Raw: "0000000000000000"}
	want := Claims{
		Version:         3,
		Measurement:     hex.EncodeToString(measurement[:]),
		HostData:        strings.Repeat("cd", 32),
		Policy:          Policy{Raw: "0000000000030000", SMT: true},
		GuestSVN:        7,
		VMPL:            1,
		Signer:          "vcek",
		FamilyID:        strings.Repeat("00", 16),
		ImageID:         strings.Repeat("00", 16),
		IDKeyDigest:     strings.Repeat("00", 48),
		AuthorKeyDigest: strings.Repeat("00", 48),
		ReportID:        strings.Repeat("42", 32),
		ReportIDMA:      strings.Repeat("00", 32),
		ChipID:          strings.Repeat("00", 64),
		CurrentTCB:      zeroTCB, ReportedTCB: zeroTCB, CommittedTCB: zeroTCB, LaunchTCB: zeroTCB,
		PlatformInfo: "0000000000000000",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	for _, key := range []string{`"measurement"`, `"policy"`, `"reported_tcb"`, `"chip_id"`, `"report_id"`, `"vmpl"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("claims %s lack %s", b, key)
		}
	}
}

func TestVerifyContext(t *testing.T) {
	amd := newSigner(t, nil)
	var rd [64]byte
	v, err := NewVerifier(Options{TrustedRoots: rootsOf(amd)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(ctx, signedReport(t, amd, rd, nil), rd); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with a cancelled context: %v, want %v", err, context.Canceled)
	}
}

func TestNewVerifierOptions(t *testing.T) {
	bad := 4
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{name: "defaults", o: Options{}},
		{name: "measurement not hex", o: Options{Measurements: []string{"zz"}}, want: "is not 48 bytes of hex"},
		{name: "short measurement", o: Options{Measurements: []string{"abcd"}}, want: "is not 48 bytes of hex"},
		{name: "vmpl out of range", o: Options{VMPL: &bad}, want: "vmpl 4"},
		{name: "revocations without getter", o: Options{CheckRevocations: true}, want: "needs a getter"},
		{name: "empty roots", o: Options{TrustedRoots: map[string][]*trust.AMDRootCerts{}}, want: "no trusted roots"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerifier(tc.o)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tc.want == "") != (err == nil) || !strings.Contains(got, tc.want) {
				t.Errorf("NewVerifier: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestDefaultTrustedRoots(t *testing.T) {
	roots, err := DefaultTrustedRoots()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for line, rs := range roots {
		for _, r := range rs {
			pc := r.ProductCerts
			got[line] = append(got[line], pc.Ark.Subject.CommonName, pc.Ask.Subject.CommonName, pc.Asvk.Subject.CommonName)
			for _, ica := range []string{"ASK", "ASVK"} {
				c := pc.Ask
				if ica == "ASVK" {
					c = pc.Asvk
				}
				if err := c.CheckSignatureFrom(pc.Ark); err != nil {
					t.Errorf("%s %s is not signed by its ARK: %v", line, ica, err)
				}
			}
		}
	}
	want := map[string][]string{
		"Milan": {"ARK-Milan", "SEV-Milan", "SEV-VLEK-Milan"},
		"Genoa": {"ARK-Genoa", "SEV-Genoa", "SEV-VLEK-Genoa"},
		"Turin": {"ARK-Turin", "SEV-Turin", "SEV-VLEK-Turin"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("default roots (-want +got):\n%s", diff)
	}
}

func TestParseCertTable(t *testing.T) {
	amd := newSigner(t, nil)
	table, err := amd.CertTableBytes()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := parseCertTable(table)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{"ark": len(chain.ArkCert), "ask": len(chain.AskCert), "vcek": len(chain.VcekCert), "vlek": len(chain.VlekCert)}
	want := map[string]int{"ark": len(amd.Ark.Raw), "ask": len(amd.Ask.Raw), "vcek": len(amd.Vcek.Raw), "vlek": len(amd.Vlek.Raw)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("certificate sizes (-want +got):\n%s", diff)
	}
	if !bytes.Equal(chain.Extras[abi.AsvkGUID], amd.Asvk.Raw) {
		t.Errorf("asvk entry (the zero guid) not kept in extras: %v", chain.Extras)
	}

	dup := make([]byte, 3*abi.CertTableEntrySize+4)
	for i := range 2 {
		e := dup[i*abi.CertTableEntrySize:]
		copy(e, guidARK[:])
		binary.LittleEndian.PutUint32(e[16:], uint32(3*abi.CertTableEntrySize))
		binary.LittleEndian.PutUint32(e[20:], 4)
	}
	bad := []struct {
		name  string
		table []byte
		want  string
	}{
		{name: "no terminator", table: table[:abi.CertTableEntrySize], want: "no terminating entry"},
		{name: "offset into the header", table: certTable(0, 16), want: "outside the data"},
		{name: "length past the end", table: certTable(48, 17), want: "outside the data"},
		{name: "offset and length overflow 32 bits", table: certTable(0xffffffff, 2), want: "outside the data"},
		{name: "guid repeated", table: dup, want: "repeated"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseCertTable(tc.table); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseCertTable: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestVerifyConcurrent(t *testing.T) {
	amd := newSigner(t, nil)
	rd := attest.TEEReportData([]byte("nonce"), nil, []byte("ak"), nil, nil)
	good := signedReport(t, amd, rd, nil)
	v, err := NewVerifier(Options{TrustedRoots: rootsOf(amd), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := v.Verify(context.Background(), good, rd)
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
