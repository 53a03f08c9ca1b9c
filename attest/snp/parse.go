package snp

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// Size limits of untrusted input.
const (
	// ReportSize is the size of an ATTESTATION_REPORT (0x4A0).
	ReportSize = abi.ReportSize
	// MaxCertsSize bounds a certificate table. AMD's table of ARK, ASK,
	// VCEK, VLEK and ASVK certificates is about 8 KiB.
	MaxCertsSize = 256 << 10
)

// Certificate table entry GUIDs (GHCB specification, MSG_REPORT_REQ), as
// bytes in table order.
var (
	guidVCEK = mustGUID(abi.VcekGUID)
	guidVLEK = mustGUID(abi.VlekGUID)
	guidASK  = mustGUID(abi.AskGUID)
	guidARK  = mustGUID(abi.ArkGUID)
)

type guid [abi.GUIDSize]byte

// mustGUID decodes a GUID's canonical text form into its table bytes, the
// byte order of its text (as github.com/google/uuid stores it).
func mustGUID(s string) guid {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != abi.GUIDSize {
		panic(fmt.Sprintf("snp: bad guid %q", s))
	}
	return guid(b)
}

// String is the GUID's canonical lowercase text form.
func (g guid) String() string {
	h := hex.EncodeToString(g[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// parse checks and decodes an untrusted report and certificate table. It
// never panics on any input (FuzzParse), so that go-sev-guest's decoders
// only see what they handle: abi.CertTable.Unmarshal, for one, adds a
// table entry's 32-bit offset and length without overflow checks. Errors
// do not wrap ErrMalformedReport; the caller does.
func parse(report, certs []byte) (*spb.Attestation, error) {
	if len(report) != ReportSize {
		return nil, fmt.Errorf("report of %d bytes (want %d)", len(report), ReportSize)
	}
	if len(certs) > MaxCertsSize {
		return nil, fmt.Errorf("certificate table of %d bytes (at most %d)", len(certs), MaxCertsSize)
	}
	if err := abi.ValidateReportFormat(report); err != nil {
		return nil, err
	}
	rep, err := abi.ReportToProto(report)
	if err != nil {
		return nil, err
	}
	chain, err := parseCertTable(certs)
	if err != nil {
		return nil, fmt.Errorf("certificate table: %w", err)
	}
	return &spb.Attestation{Report: rep, CertificateChain: chain}, nil
}

// parseCertTable decodes a certificate table (GHCB specification,
// MSG_REPORT_REQ; the layout abi.CertTable reads): 24-byte entries of GUID,
// little-endian offset and length from the table's start, ended by an
// all-zero entry, then the certificates. Every entry must lie after the
// header and within the table, and no GUID may repeat. An empty table is
// an empty chain.
func parseCertTable(b []byte) (*spb.CertificateChain, error) {
	chain := &spb.CertificateChain{Extras: map[string][]byte{}}
	if len(b) == 0 {
		return chain, nil
	}
	type entry struct {
		g           guid
		off, length uint32
	}
	var entries []entry
	end := 0 // end of the header, terminator included
	for {
		if len(b)-end < abi.CertTableEntrySize {
			return nil, fmt.Errorf("no terminating entry in %d bytes", len(b))
		}
		var e entry
		copy(e.g[:], b[end:end+abi.GUIDSize])
		e.off = binary.LittleEndian.Uint32(b[end+16 : end+20])
		e.length = binary.LittleEndian.Uint32(b[end+20 : end+24])
		end += abi.CertTableEntrySize
		if e.g == (guid{}) && e.off == 0 && e.length == 0 {
			break
		}
		entries = append(entries, e)
	}
	seen := map[guid]bool{}
	for i, e := range entries {
		if seen[e.g] {
			return nil, fmt.Errorf("entry %d: guid %s repeated", i, e.g)
		}
		seen[e.g] = true
		lo, hi := uint64(e.off), uint64(e.off)+uint64(e.length)
		if lo < uint64(end) || hi > uint64(len(b)) {
			return nil, fmt.Errorf("entry %d (%s): bytes %d to %d outside the data (%d to %d)", i, e.g, lo, hi, end, len(b))
		}
		if e.length == 0 {
			continue
		}
		c := make([]byte, e.length)
		copy(c, b[lo:hi])
		switch e.g {
		case guidVCEK:
			chain.VcekCert = c
		case guidVLEK:
			chain.VlekCert = c
		case guidASK:
			chain.AskCert = c
		case guidARK:
			chain.ArkCert = c
		default:
			chain.Extras[e.g.String()] = c
		}
	}
	return chain, nil
}
