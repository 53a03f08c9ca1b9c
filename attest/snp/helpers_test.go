package snp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	test "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/confidisk/confidisk/attest"
)

// testNow is the verifier's clock in tests: the fake certificates are made
// valid from then on for seven years (VCEK) and more.
var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// milanFMS is CPUID(1).EAX of a Milan B1, recorded in report versions 3+.
const milanFMS = 0x00a00f11

// measurement is the launch measurement of the test reports.
var measurement = func() (m [abi.MeasurementSize]byte) {
	for i := range m {
		m[i] = byte(0xa0 + i)
	}
	return m
}()

// newSigner makes a fake AMD key hierarchy (ARK, ASK, ASVK, VCEK, VLEK)
// with go-sev-guest's testing package: keys nil means its fixed test keys.
func newSigner(t testing.TB, keys *test.AmdKeys) *test.AmdSigner {
	t.Helper()
	if keys == nil {
		keys = test.DefaultAmdKeys()
	}
	product := abi.DefaultSevProduct()
	b := &test.AmdSignerBuilder{
		Keys: keys, ProductName: kds.ProductName(product), CSPID: "go-sev-guest",
		ArkCreationTime: testNow, AskCreationTime: testNow, AsvkCreationTime: testNow,
		VcekCreationTime: testNow, VlekCreationTime: testNow,
	}
	s, err := b.TestOnlyCertChain()
	if err != nil {
		t.Fatal(err)
	}
	s.Product = product
	return s
}

// forgerKeys are fresh keys of the same kinds as AMD's, which no trusted
// root certifies.
func forgerKeys(t testing.TB) *test.AmdKeys {
	t.Helper()
	rsaKey := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ecKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	return &test.AmdKeys{Ark: rsaKey(), Ask: rsaKey(), Asvk: rsaKey(), Vcek: ecKey(), Vlek: ecKey()}
}

// rootsOf trusts s's ARK, ASK and ASVK for Milan, as a verifier in tests.
func rootsOf(s *test.AmdSigner) map[string][]*trust.AMDRootCerts {
	r := trust.AMDRootCertsProduct("Milan")
	r.ProductCerts = &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask, Asvk: s.Asvk}
	return map[string][]*trust.AMDRootCerts{"Milan": {r}}
}

// rawReport is a version 3 Milan ATTESTATION_REPORT with REPORT_DATA rd, a
// non-debug policy allowing SMT and the test measurement, unsigned;
// edit, if set, changes it further.
func rawReport(rd [64]byte, edit func(r []byte)) []byte {
	r := test.CreateRawReport(&test.TestReportOptions{ReportData: rd[:], Version: 3, FMS: milanFMS})
	binary.LittleEndian.PutUint64(r[0x08:0x10], abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true}))
	copy(r[0x90:0xC0], measurement[:])
	if edit != nil {
		edit(r[:abi.ReportSize])
	}
	return r[:abi.ReportSize]
}

// signedReport has s's fake AMD-SP sign rawReport(rd, edit) through the
// Reporter and returns the TEE report, with s's certificate table.
func signedReport(t testing.TB, s *test.AmdSigner, rd [64]byte, edit func(r []byte)) *attest.TEEReport {
	t.Helper()
	tc := test.TestCase{Name: "report", Input: rd}
	copy(tc.Output[:], rawReport(rd, edit))
	qp, err := test.TcQuoteProvider([]test.TestCase{tc}, &test.DeviceOptions{Signer: s, Now: testNow, Product: s.Product})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReporter(qp).Report(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// setPolicy returns an edit that sets the report's guest policy.
func setPolicy(p abi.SnpPolicy) func([]byte) {
	return func(r []byte) { binary.LittleEndian.PutUint64(r[0x08:0x10], abi.SnpPolicyToBytes(p)) }
}
