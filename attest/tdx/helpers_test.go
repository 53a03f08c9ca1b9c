package tdx

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/confidisk/confidisk/attest"
)

// The sample quote go-tdx-guest ships (testing/testdata,
// tdx_prod_quote_SPR_E4.dat) is a production quote of a Sapphire Rapids
// machine, signed through Intel's real PCK chain (PCK certificate valid
// from 2022-09-20 to 2029-09-20), and its REPORTDATA is not one of
// attest.TEEReportData: a fake device cannot sign with test roots, so the
// positive cases verify this quote with its own report data.

// testNow is the verifier's clock in tests: inside the sample PCK chain's
// validity and before the sample collateral's nextUpdate (2023-07-08).
var testNow = time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC)

// Offsets into a version 4 quote, for edits.
const (
	offBody         = headerSize
	offMRSeam       = offBody + 0x10
	offTDAttributes = offBody + 0x78
	offMRTD         = offBody + 0x88
	offRTMR0        = offBody + 0x148
	offReportData   = offBody + 0x208
	offSignature    = sigDataOff
	offAttestKey    = sigDataOff + 0x40
	offQEReport     = sigDataOff + certDataOff
	offQEAuthSize   = offQEReport + qeAuthSizeOff
)

// sample returns a copy of the sample quote.
func sample() []byte { return bytes.Clone(testdata.RawQuote) }

// sampleReportData is the sample quote's REPORTDATA.
func sampleReportData() (rd [64]byte) {
	copy(rd[:], testdata.RawQuote[offReportData:offReportData+64])
	return rd
}

// edited is a copy of the sample quote that edit changed.
func edited(edit func(q []byte)) []byte {
	q := sample()
	edit(q)
	return q
}

// flip returns an edit flipping the lowest bit of byte i.
func flip(i int) func([]byte) {
	return func(q []byte) { q[i] ^= 1 }
}

// put32 returns an edit writing v little-endian at i.
func put32(i int, v uint32) func([]byte) {
	return func(q []byte) { binary.LittleEndian.PutUint32(q[i:], v) }
}

// report is a TDX TEE report of quote q.
func report(q []byte) *attest.TEEReport {
	return &attest.TEEReport{Type: attest.TEETDX, Report: q}
}
