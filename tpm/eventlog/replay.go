package eventlog

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// Replay computes the PCR values the log leads to in the bank of hash
// algorithm alg: starting from all zeros, or for PCR 0 from the
// StartupLocality value (PFP section 10.4.5.3), it extends each PCR with
// the alg digest of each of its events, new = H(old || digest), in log
// order, skipping EV_NO_ACTION events (section 10.4.1).
//
// The result maps PCR index to value and holds only the PCRs the log
// extends, plus PCR 0 when the log has a StartupLocality event. It is an
// error wrapping [ErrAlgorithm] if alg is not among l.Algorithms or this
// package cannot compute it, and one wrapping [ErrMalformed] if an
// extended event lacks an alg digest of the right size or names a PCR
// above [MaxPCR] (which [Parse] does not let happen).
func (l *Log) Replay(alg tpm2.TPMAlgID) (map[int][]byte, error) {
	size := -1
	for _, a := range l.Algorithms {
		if a.ID == alg {
			size = a.DigestSize
		}
	}
	if size < 0 {
		return nil, fmt.Errorf("event log: replay %s: the log has no %s digests (it has %s): %w", algName(alg), algName(alg), l.algList(), ErrAlgorithm)
	}
	mk := newHash(alg)
	if mk == nil {
		return nil, fmt.Errorf("event log: replay %s: cannot compute %s pcr extends: %w", algName(alg), algName(alg), ErrAlgorithm)
	}
	h := mk()
	if size != h.Size() {
		return nil, fmt.Errorf("event log: replay %s: declared digest size %d, want %d: %w", algName(alg), size, h.Size(), ErrMalformed)
	}
	pcrs := make(map[int][]byte)
	if l.HasStartupLocality {
		v := make([]byte, size)
		v[size-1] = l.StartupLocality
		pcrs[0] = v
	}
	for i := range l.Events {
		e := &l.Events[i]
		if e.Type == EvNoAction {
			continue
		}
		if e.PCR < 0 || e.PCR > MaxPCR {
			return nil, fmt.Errorf("event log: replay %s: event %d (%s) extends pcr %d (max %d): %w", algName(alg), e.Index, EventTypeName(e.Type), e.PCR, MaxPCR, ErrMalformed)
		}
		d := e.Digest(alg)
		if len(d) != size {
			return nil, fmt.Errorf("event log: replay %s: event %d (%s, pcr %d) has a %d-byte %s digest, want %d: %w", algName(alg), e.Index, EventTypeName(e.Type), e.PCR, len(d), algName(alg), size, ErrMalformed)
		}
		old, ok := pcrs[e.PCR]
		if !ok {
			old = make([]byte, size)
		}
		h.Reset()
		h.Write(old)
		h.Write(d)
		pcrs[e.PCR] = h.Sum(nil)
	}
	return pcrs, nil
}

// Verify replays the log for alg ([Log.Replay]) and compares the result
// with pcrs, the values of a quote in the alg bank. Every PCR that both
// the replay yields and pcrs holds must match; a difference is an error
// wrapping [ErrMismatch] that names the lowest differing PCR with its
// replayed and quoted values (and lists the other differing PCRs).
//
// PCRs in pcrs that the log never touches are ignored, and so are PCRs the
// log touches that pcrs lacks: Verify returns nil even when the two share
// no PCR. A caller that relies on the events of a PCR must therefore make
// sure the quote covers that PCR.
func (l *Log) Verify(alg tpm2.TPMAlgID, pcrs map[int][]byte) error {
	replayed, err := l.Replay(alg)
	if err != nil {
		return err
	}
	var bad []int
	for i, v := range replayed {
		if q, ok := pcrs[i]; ok && !bytes.Equal(q, v) {
			bad = append(bad, i)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	i := bad[0]
	more := ""
	if len(bad) > 1 {
		s := make([]string, len(bad))
		for j, b := range bad {
			s[j] = fmt.Sprint(b)
		}
		more = " (pcrs " + strings.Join(s, ", ") + " differ)"
	}
	return fmt.Errorf("event log: %s pcr %d replays to %x, quoted %x%s: %w", algName(alg), i, replayed[i], pcrs[i], more, ErrMismatch)
}

// algList names the log's algorithms for messages: "sha1, sha256".
func (l *Log) algList() string {
	if len(l.Algorithms) == 0 {
		return "none"
	}
	s := make([]string, len(l.Algorithms))
	for i, a := range l.Algorithms {
		s[i] = algName(a.ID)
	}
	return strings.Join(s, ", ")
}
