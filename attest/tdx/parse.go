package tdx

import (
	"encoding/binary"
	"fmt"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"
)

// Layout of a version 4 quote (Intel TDX DCAP quote format v4) as far as
// lengths go: offsets into the quote, the signature data, the QE report
// certification data.
const (
	headerSize     = 0x30
	bodySize       = 0x248
	sigDataSizeOff = headerSize + bodySize // 0x278: u32 size of the signature data
	sigDataOff     = sigDataSizeOff + 4    // 0x27C
	// In the signature data: signature (64), attestation key (64),
	// certification data type (u16) and size (u32), certification data.
	certDataSizeOff = 0x82
	certDataOff     = 0x86
	// In the QE report certification data: QE report (384), its signature
	// (64), QE authentication data size (u16) and data, then the PCK
	// chain's certification data: type (u16), size (u32), data.
	qeAuthSizeOff = 0x1C0
	qeAuthOff     = 0x1C2
	chainHdrSize  = 6

	// MaxQuoteSize bounds a quote; Intel's quotes with their PCK chain are
	// about 5 KiB.
	MaxQuoteSize = 256 << 10
)

// checkLayout checks that every length field of a version 4 quote agrees
// with its bytes, so that go-tdx-guest's decoder, which slices by those
// fields without checking them, does not panic. Bytes after the signature
// data are allowed (they are not signed; go-tdx-guest keeps them as
// extra bytes).
func checkLayout(q []byte) error {
	if len(q) > MaxQuoteSize {
		return fmt.Errorf("%d bytes (at most %d)", len(q), MaxQuoteSize)
	}
	if len(q) < sigDataOff {
		return fmt.Errorf("%d bytes, shorter than header and body (%d)", len(q), sigDataOff)
	}
	if v := binary.LittleEndian.Uint16(q[0:2]); v != abi.QuoteVersion {
		return fmt.Errorf("quote version %d (want %d)", v, abi.QuoteVersion)
	}
	n := uint64(binary.LittleEndian.Uint32(q[sigDataSizeOff:sigDataOff]))
	if n > uint64(len(q)-sigDataOff) {
		return fmt.Errorf("signature data of %d bytes, %d present", n, len(q)-sigDataOff)
	}
	sd := q[sigDataOff : sigDataOff+int(n)]
	if len(sd) < certDataOff {
		return fmt.Errorf("signature data of %d bytes (at least %d)", len(sd), certDataOff)
	}
	if m := uint64(binary.LittleEndian.Uint32(sd[certDataSizeOff:certDataOff])); m != uint64(len(sd)-certDataOff) {
		return fmt.Errorf("certification data size %d, %d present", m, len(sd)-certDataOff)
	}
	cd := sd[certDataOff:]
	if len(cd) < qeAuthOff {
		return fmt.Errorf("qe report certification data of %d bytes (at least %d)", len(cd), qeAuthOff)
	}
	end := qeAuthOff + int(binary.LittleEndian.Uint16(cd[qeAuthSizeOff:qeAuthOff]))
	if len(cd)-end < chainHdrSize {
		return fmt.Errorf("qe authentication data ends at %d, beyond the %d bytes before the pck chain", end, len(cd)-chainHdrSize)
	}
	chain := cd[end:]
	if m := uint64(binary.LittleEndian.Uint32(chain[2:6])); m != uint64(len(chain)-chainHdrSize) {
		return fmt.Errorf("pck certificate chain size %d, %d present", m, len(chain)-chainHdrSize)
	}
	return nil
}

// parseQuote checks and decodes an untrusted quote. It never panics on any
// input (FuzzParseQuote). Errors do not wrap ErrMalformedQuote; the caller
// does.
func parseQuote(b []byte) (*pb.QuoteV4, error) {
	if err := checkLayout(b); err != nil {
		return nil, err
	}
	q, err := abi.QuoteToProto(b)
	if err != nil {
		return nil, err
	}
	v4, ok := q.(*pb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("quote of type %T (want version 4)", q)
	}
	return v4, nil
}
