// Package eventlog parses and replays the TCG firmware event log that Linux
// exposes at /sys/kernel/security/tpm0/binary_bios_measurements, so that a
// verifier can check the log against quoted PCR values.
//
// The format is that of the TCG PC Client Platform Firmware Profile
// Specification (PFP), version 1.05 and later, section 10 "Event Logging".
// Two layouts exist:
//
//   - A crypto-agile log starts with a TCG_PCClientPCREvent (section 10.2.1)
//     of type EV_NO_ACTION on PCR 0 whose data is a TCG_EfiSpecIdEvent
//     (section 10.4.5.1, signature "Spec ID Event03"). It lists the hash
//     algorithms of the log; every later record is a TCG_PCR_EVENT2
//     (section 10.2.2) carrying one digest for each of them.
//   - Any other log is a legacy log of TCG_PCClientPCREvent records with one
//     SHA-1 digest each; it replays for sha1 only.
//
// The package does no I/O: callers pass the log's bytes. Input is treated
// as untrusted (it comes from the guest being attested): every length is
// bounds-checked against the bytes left, and the number of events and of
// algorithms is capped. Errors say at which event and byte offset parsing
// failed and wrap [ErrMalformed].
//
// A log proves nothing by itself: [Log.Verify] replays it and compares the
// result with PCR values taken from a verified quote. Only then do the
// events of the PCRs compared describe what was measured.
package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrMalformed is wrapped by every error about bytes that are not a
	// well-formed event log (and by Replay errors about a Log value that
	// violates what Parse guarantees).
	ErrMalformed = errors.New("malformed event log")

	// ErrMismatch is wrapped by [Log.Verify] when the log replays to a PCR
	// value other than the quoted one.
	ErrMismatch = errors.New("event log does not match the pcr values")

	// ErrAlgorithm is wrapped by [Log.Replay] and [Log.Verify] when the log
	// carries no digests for the requested hash algorithm (a legacy log
	// asked for sha256, say), or when this package cannot compute PCR
	// extends for it (sm3_256 and algorithms it does not know).
	ErrAlgorithm = errors.New("hash algorithm not available for replay")
)

// Limits on untrusted input.
const (
	// MaxEvents is the largest number of events [Parse] accepts.
	MaxEvents = 1 << 20
	// MaxAlgorithms is the largest numberOfAlgorithms [Parse] accepts in a
	// Spec ID event.
	MaxAlgorithms = 16
	// MaxPCR is the highest PCR index an extended event may name (a PC
	// Client TPM has PCRs 0 to 23).
	MaxPCR = 23
	// maxUnknownDigestSize bounds the digest size a Spec ID event may
	// declare for an algorithm this package does not know.
	maxUnknownDigestSize = 64
)

const (
	specIDSignature   = "Spec ID Event03\x00"      // PFP 10.4.5.1
	localitySignature = "StartupLocality\x00"      // PFP 10.4.5.3
	legacyHeaderSize  = 4 + 4 + 20 + 4             // PFP 10.2.1, without the event data
	specIDFixedSize   = 16 + 4 + 1 + 1 + 1 + 1 + 4 // PFP 10.4.5.1 up to digestSizes
)

// Algorithm is a hash algorithm of a log and the size of its digests, from
// the TCG_EfiSpecIdEventAlgorithmSize entries of the Spec ID event (PFP
// section 10.4.5.1). A legacy log has the one algorithm sha1 (20 bytes).
type Algorithm struct {
	ID         tpm2.TPMAlgID
	DigestSize int
}

// Digest is one entry of an event's digest list: a TPMT_HA of the
// TPML_DIGEST_VALUES of a TCG_PCR_EVENT2 (PFP section 10.2.2), or the SHA-1
// digest of a TCG_PCClientPCREvent (section 10.2.1).
type Digest struct {
	Alg    tpm2.TPMAlgID
	Digest []byte
}

// Event is one record of the log.
type Event struct {
	// Index is the position of the record in the log, from 0. In a
	// crypto-agile log, event 0 is the Spec ID event.
	Index int
	// PCR is the pcrIndex field.
	PCR int
	// Type is the eventType field (PFP section 10.4.1); see
	// [EventTypeName]. Events of type [EvNoAction] are not extended.
	Type uint32
	// Digests are the digests in log order: one per algorithm of the log
	// for a TCG_PCR_EVENT2, the one sha1 digest field for a
	// TCG_PCClientPCREvent (including the Spec ID event of a crypto-agile
	// log, whose digest field is zero).
	Digests []Digest
	// Data is the event field. Its meaning depends on Type; the firmware
	// writes it, so trust it only as far as the digests were verified and
	// the digests are known to cover it (for many event types they do not).
	Data []byte
}

// Digest returns the event's digest for alg, or nil if it has none.
func (e *Event) Digest(alg tpm2.TPMAlgID) []byte {
	for _, d := range e.Digests {
		if d.Alg == alg {
			return d.Digest
		}
	}
	return nil
}

// SpecID holds the fields of the TCG_EfiSpecIdEvent (PFP section 10.4.5.1)
// other than the signature and the algorithm list (see [Log.Algorithms]).
type SpecID struct {
	PlatformClass    uint32
	SpecVersionMinor uint8
	SpecVersionMajor uint8
	SpecErrata       uint8
	// UintnSize is 1 when UINTN fields in event data are 32 bits wide, 2
	// when they are 64 bits wide.
	UintnSize  uint8
	VendorInfo []byte
}

// Log is a parsed event log.
type Log struct {
	// SpecID is the Spec ID event of a crypto-agile log; nil for a legacy
	// SHA-1 log.
	SpecID *SpecID
	// Algorithms are the hash algorithms every extended event has a digest
	// for, in the order of the Spec ID event; [tpm2.TPMAlgSHA1] alone for a
	// legacy log.
	Algorithms []Algorithm
	// Events are all records, in log order, EV_NO_ACTION ones included.
	Events []Event
	// HasStartupLocality reports whether the log holds a StartupLocality
	// event (PFP section 10.4.5.3); StartupLocality is its locality. PCR 0
	// then starts as 0x00…00 followed by that byte instead of all zeros.
	HasStartupLocality bool
	StartupLocality    byte
}

// Parse parses an event log: crypto-agile if its first record is a Spec ID
// Event03 (PFP sections 10.2.2, 10.4.5.1), legacy SHA-1 otherwise (section
// 10.2.1). The Log does not share memory with b.
//
// Parse is strict. It refuses, wrapping [ErrMalformed]: an empty log; bytes
// after the last whole record; a record or event field that runs past the
// end; more than [MaxEvents] records; a Spec ID event that is not on PCR 0,
// does not fill its event field exactly, declares zero or more than
// [MaxAlgorithms] algorithms, an algorithm twice, a digest size other than
// the algorithm's (sha1, sha256, sha384, sha512, sm3_256, sha3_*) or, for
// an algorithm it does not know, a size of 0 or above 64; a TCG_PCR_EVENT2
// whose digest count differs from the algorithm count, or whose digests
// name an algorithm not declared or one twice; an extended (non
// EV_NO_ACTION) event on a PCR above [MaxPCR]; and a StartupLocality event
// that is not on PCR 0, is not 17 bytes long, is the second one, or comes
// after PCR 0 was extended.
func Parse(b []byte) (*Log, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("event log: empty: %w", ErrMalformed)
	}
	p := &parser{b: bytes.Clone(b)}
	l := &Log{}
	first, err := p.legacyEvent(0)
	if err != nil {
		return nil, err
	}
	agile := first.Type == EvNoAction && bytes.HasPrefix(first.Data, []byte(specIDSignature))
	if agile {
		if first.PCR != 0 {
			return nil, p.errAt(0, 0, "spec id event on pcr %d, want 0", first.PCR)
		}
		l.SpecID, l.Algorithms, err = parseSpecID(first.Data)
		if err != nil {
			return nil, p.errAt(0, 0, "spec id event: %v", err)
		}
	} else {
		l.Algorithms = []Algorithm{{ID: tpm2.TPMAlgSHA1, DigestSize: 20}}
	}
	pcr0Extended := false
	add := func(e Event, off int) error {
		if e.Type != EvNoAction {
			if e.PCR < 0 || e.PCR > MaxPCR {
				return p.errAt(e.Index, off, "%s extends pcr %d (max %d)", EventTypeName(e.Type), e.PCR, MaxPCR)
			}
			if e.PCR == 0 {
				pcr0Extended = true
			}
		} else if bytes.HasPrefix(e.Data, []byte(localitySignature)) {
			switch {
			case e.PCR != 0:
				return p.errAt(e.Index, off, "startup locality event on pcr %d, want 0", e.PCR)
			case len(e.Data) != len(localitySignature)+1:
				return p.errAt(e.Index, off, "startup locality event of %d bytes, want %d", len(e.Data), len(localitySignature)+1)
			case l.HasStartupLocality:
				return p.errAt(e.Index, off, "second startup locality event")
			case pcr0Extended:
				return p.errAt(e.Index, off, "startup locality event after pcr 0 was extended")
			}
			l.HasStartupLocality, l.StartupLocality = true, e.Data[len(localitySignature)]
		}
		l.Events = append(l.Events, e)
		return nil
	}
	if err := add(first, 0); err != nil {
		return nil, err
	}
	for p.off < len(p.b) {
		idx, off := len(l.Events), p.off
		if idx >= MaxEvents {
			return nil, p.errAt(idx, off, "more than %d events", MaxEvents)
		}
		var e Event
		if agile {
			e, err = p.agileEvent(idx, l.Algorithms)
		} else {
			e, err = p.legacyEvent(idx)
		}
		if err != nil {
			return nil, err
		}
		if err := add(e, off); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// parser reads records from b, which it owns; returned slices alias b with
// their capacity capped at their length.
type parser struct {
	b   []byte
	off int
}

func (p *parser) errAt(idx, off int, format string, args ...any) error {
	return fmt.Errorf("event log: event %d at offset %d: %s: %w", idx, off, fmt.Sprintf(format, args...), ErrMalformed)
}

// take returns the next n bytes, or an error naming what was read.
func (p *parser) take(idx, start, n int, what string) ([]byte, error) {
	if n < 0 || n > len(p.b)-p.off {
		return nil, p.errAt(idx, start, "%s: need %d bytes at offset %d, %d left", what, n, p.off, len(p.b)-p.off)
	}
	s := p.b[p.off : p.off+n : p.off+n]
	p.off += n
	return s, nil
}

func (p *parser) u16(idx, start int, what string) (uint16, error) {
	s, err := p.take(idx, start, 2, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

func (p *parser) u32(idx, start int, what string) (uint32, error) {
	s, err := p.take(idx, start, 4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

// data reads an eventSize/eventDataSize field and the event field.
func (p *parser) data(idx, start int) ([]byte, error) {
	n, err := p.u32(idx, start, "event size")
	if err != nil {
		return nil, err
	}
	if left := len(p.b) - p.off; uint64(n) > uint64(left) {
		return nil, p.errAt(idx, start, "event size %d exceeds the %d bytes left", n, left)
	}
	return p.take(idx, start, int(n), "event data")
}

// legacyEvent reads a TCG_PCClientPCREvent (PFP section 10.2.1).
func (p *parser) legacyEvent(idx int) (Event, error) {
	start := p.off
	hdr, err := p.take(idx, start, legacyHeaderSize-4, "event header")
	if err != nil {
		return Event{}, err
	}
	d, err := p.data(idx, start)
	if err != nil {
		return Event{}, err
	}
	return Event{
		Index:   idx,
		PCR:     pcrIndex(binary.LittleEndian.Uint32(hdr[0:4])),
		Type:    binary.LittleEndian.Uint32(hdr[4:8]),
		Digests: []Digest{{Alg: tpm2.TPMAlgSHA1, Digest: hdr[8:28:28]}},
		Data:    d,
	}, nil
}

// agileEvent reads a TCG_PCR_EVENT2 (PFP section 10.2.2).
func (p *parser) agileEvent(idx int, algs []Algorithm) (Event, error) {
	start := p.off
	hdr, err := p.take(idx, start, 12, "event header")
	if err != nil {
		return Event{}, err
	}
	e := Event{
		Index: idx,
		PCR:   pcrIndex(binary.LittleEndian.Uint32(hdr[0:4])),
		Type:  binary.LittleEndian.Uint32(hdr[4:8]),
	}
	if n := binary.LittleEndian.Uint32(hdr[8:12]); n != uint32(len(algs)) {
		return Event{}, p.errAt(idx, start, "%d digests, want %d (one per algorithm of the spec id event)", n, len(algs))
	}
	e.Digests = make([]Digest, 0, len(algs))
	for range algs {
		id, err := p.u16(idx, start, "digest algorithm")
		if err != nil {
			return Event{}, err
		}
		alg := tpm2.TPMAlgID(id)
		size := -1
		for _, a := range algs {
			if a.ID == alg {
				size = a.DigestSize
			}
		}
		if size < 0 {
			return Event{}, p.errAt(idx, start, "digest of %s, which the spec id event does not declare", algName(alg))
		}
		if e.Digest(alg) != nil {
			return Event{}, p.errAt(idx, start, "second %s digest", algName(alg))
		}
		d, err := p.take(idx, start, size, algName(alg)+" digest")
		if err != nil {
			return Event{}, err
		}
		e.Digests = append(e.Digests, Digest{Alg: alg, Digest: d})
	}
	if e.Data, err = p.data(idx, start); err != nil {
		return Event{}, err
	}
	return e, nil
}

// pcrIndex converts a pcrIndex field to int without turning large values
// negative on 32-bit platforms (they are refused for extended events).
func pcrIndex(v uint32) int {
	if uint64(v) > uint64(maxInt) {
		return maxInt
	}
	return int(v)
}

const maxInt = int(^uint(0) >> 1)

// parseSpecID parses a TCG_EfiSpecIdEvent (PFP section 10.4.5.1), which
// must fill d exactly.
func parseSpecID(d []byte) (*SpecID, []Algorithm, error) {
	if len(d) < specIDFixedSize {
		return nil, nil, fmt.Errorf("%d bytes, need at least %d", len(d), specIDFixedSize)
	}
	s := &SpecID{
		PlatformClass:    binary.LittleEndian.Uint32(d[16:20]),
		SpecVersionMinor: d[20],
		SpecVersionMajor: d[21],
		SpecErrata:       d[22],
		UintnSize:        d[23],
	}
	n := binary.LittleEndian.Uint32(d[24:28])
	switch {
	case n == 0:
		return nil, nil, errors.New("no algorithms")
	case n > MaxAlgorithms:
		return nil, nil, fmt.Errorf("%d algorithms (max %d)", n, MaxAlgorithms)
	}
	rest := d[specIDFixedSize:]
	if len(rest) < int(n)*4+1 {
		return nil, nil, fmt.Errorf("%d algorithms need %d more bytes, %d left", n, int(n)*4+1, len(rest))
	}
	algs := make([]Algorithm, 0, n)
	for i := range int(n) {
		a := Algorithm{
			ID:         tpm2.TPMAlgID(binary.LittleEndian.Uint16(rest[4*i:])),
			DigestSize: int(binary.LittleEndian.Uint16(rest[4*i+2:])),
		}
		for _, b := range algs {
			if b.ID == a.ID {
				return nil, nil, fmt.Errorf("%s declared twice", algName(a.ID))
			}
		}
		if want, ok := knownDigestSizes[a.ID]; ok {
			if a.DigestSize != want {
				return nil, nil, fmt.Errorf("%s digest size %d, want %d", algName(a.ID), a.DigestSize, want)
			}
		} else if a.DigestSize == 0 || a.DigestSize > maxUnknownDigestSize {
			return nil, nil, fmt.Errorf("%s digest size %d (want 1 to %d)", algName(a.ID), a.DigestSize, maxUnknownDigestSize)
		}
		algs = append(algs, a)
	}
	rest = rest[4*n:]
	vn := int(rest[0])
	rest = rest[1:]
	if len(rest) != vn {
		return nil, nil, fmt.Errorf("vendor info size %d, but %d bytes follow", vn, len(rest))
	}
	s.VendorInfo = rest[:vn:vn]
	return s, algs, nil
}
