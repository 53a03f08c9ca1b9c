// Package sha256mb computes SHA-256 digests of many equal-length messages
// that share a prefix, several at a time: for dm-verity hashing, where every
// digest is SHA-256(salt ‖ block), and for HMAC-SHA-256 ([HMAC]), whose inner
// and outer hashes start with one block of key material, as dm-crypt's
// hmac(sha256) integrity tags do for every sector.
//
// The hash is SHA-256 as specified in FIPS 180-4: the compression function of
// §6.2.2 (SHA-256 computation), the padding of §5.1.1 and the initial hash
// value of §5.3.3. Padding and the prefix are handled in Go; assembly only
// compresses whole 64-byte blocks, read in place from the caller's slices
// except for the first block (when it straddles prefix and message) and the
// last one or two (which hold the padding).
//
// On amd64 there are two kernels:
//
//   - sixteen messages at once with AVX-512 (one message per 32-bit lane of
//     the ZMM registers), the fastest where the CPU has AVX-512 F and BW;
//   - two messages at once with the Intel SHA extensions (SHA256RNDS2,
//     SHA256MSG1, SHA256MSG2; Intel 64 and IA-32 Architectures Software
//     Developer's Manual, Vol. 2, and the white paper "Intel SHA Extensions",
//     2013), the two instruction streams interleaved so that one message's
//     SHA256RNDS2 latency overlaps the other's, as in sha256_ni_x2 of Intel's
//     isa-l_crypto. It takes groups smaller than sixteen.
//
// A single message, other architectures, the purego build tag and CPUs
// without these features use crypto/sha256, one message at a time. All paths
// give the same digests.
//
// On the Xeon (Emerald Rapids) this was written on, one core hashes a 32-byte
// salt and a 4096-byte block about 2.2 times as fast as crypto/sha256 with
// sixteen lanes, and 1.2 times as fast with two: SHA256RNDS2 has a latency of
// about 4 cycles there but a throughput of only one per 3 cycles, so two
// interleaved messages gain little, while the AVX-512 kernel is bound by the
// two 512-bit vector ports. On AMD's Zen 4 (EPYC), which runs 512-bit
// instructions as two 256-bit halves, the two kernels are within 4 % of each
// other (3.5 and 3.6 GB/s per core, best of 3 000 runs of 64 KiB;
// crypto/sha256 1.7). SHA256RNDS2 issues every cycle there with the same
// latency, yet four interleaved lanes (tried, their schedules kept in
// X16-X31) hash no faster than two: SHA256MSG2 (about 3 cycles) shares the
// unit, and without its schedule that four-lane kernel ran 5.7 GB/s. So
// sixteen lanes stay the choice wherever AVX-512 is present.
//
// Nor do the two kernels add up on Zen 4. A kernel running both in one
// instruction stream was built and tested against crypto/sha256: block16's
// lanes in Z16-Z31 with their message schedule on the stack, and four of
// blockX2's pairs in X0-X14, four rounds of one pair after each AVX-512
// round, 24 messages a pass (commits eacb0d5 and bfb8707 add and remove
// it). It hashed 2.6 GB/s per core against block16's 3.37, although its
// AVX-512 half alone ran at block16's speed: the SHA instructions take the
// same pipes as the 512-bit ones there. block16 itself is within about 10 %
// of those pipes' limit: its round and schedule are 12 rotations and shifts
// and 18 adds and ternary-logic instructions (with two register moves,
// which cost nothing), and that mix, independent and in a loop, issues at
// 15.2 cycles (9.7 without the schedule), about 16 cycles a round with the
// loads and transpositions, against block16's 17.5 at 3.6 GHz.
package sha256mb

import (
	"crypto/sha256"
	"encoding/binary"
	"unsafe"
)

// Size is the size of a SHA-256 digest in bytes.
const Size = sha256.Size

const blockSize = 64

// carrySize is the size of block16's buffer for the lines it carries from
// one block to the next: sixteen lines, and room to align them to 64 bytes.
const carrySize = 17 * 64

// iv is the initial hash value H(0) of FIPS 180-4 §5.3.3.
var iv = [8]uint32{
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

// Prefixed hashes messages that all start with the same prefix. It is
// read-only after [NewPrefixed], so one Prefixed may be used by any number of
// goroutines at once.
type Prefixed struct {
	prefix []byte    // a copy of the whole prefix, for the crypto/sha256 path
	h      [8]uint32 // hash value after the whole 64-byte blocks of prefix
	rem    []byte    // the rest of prefix (shorter than one block)
	plen   uint64    // len(prefix)
}

// NewPrefixed returns a Prefixed for prefix, which it copies. The prefix may
// have any length, including zero.
func NewPrefixed(prefix []byte) *Prefixed {
	p := &Prefixed{
		prefix: append([]byte(nil), prefix...),
		h:      iv,
		plen:   uint64(len(prefix)),
	}
	full := len(p.prefix) &^ (blockSize - 1)
	p.rem = p.prefix[full:]
	if full > 0 {
		switch {
		case haveX2:
			p.h = midstateX2(p.prefix[:full])
		case have16:
			p.h = midstate16(p.prefix[:full])
		}
		// Otherwise only Sum is used, which rehashes the whole prefix.
	}
	return p
}

// midstateX2 returns the hash value after the blocks of b, a multiple of 64
// bytes, with blockX2; both lanes hash b. It runs once per Prefixed.
func midstateX2(b []byte) [8]uint32 {
	h0, h1 := iv, iv
	blockX2(&h0, &h1, b, b)
	return h0
}

// midstate16 is midstateX2 with block16, for CPUs with AVX-512 but without
// the SHA extensions.
func midstate16(b []byte) [8]uint32 {
	var h [8][16]uint32
	var ptrs [16]*byte
	for j := range h {
		h[j][0] = iv[j]
	}
	for l := range ptrs {
		ptrs[l] = &b[0]
	}
	block16(&h, &ptrs, len(b)/blockSize, nil)
	var h0 [8]uint32
	for j := range h0 {
		h0[j] = h[j][0]
	}
	return h0
}

// Sum sets *d = SHA-256(prefix ‖ m), with crypto/sha256. It is the
// single-message form; [Prefixed.SumN] is faster for many messages.
func (p *Prefixed) Sum(d *[Size]byte, m []byte) {
	h := sha256.New()
	h.Write(p.prefix)
	h.Write(m)
	h.Sum(d[:0])
}

// SumN sets dst[i] = SHA-256(prefix ‖ msgs[i]) for every i. All messages must
// have the same length, and len(dst) must equal len(msgs); SumN panics
// otherwise. The digests may not overlap the messages. SumN does not
// allocate.
//
// SumN is fastest with many messages per call, ideally a multiple of 16: it
// hashes them sixteen at a time with AVX-512 where available, then in pairs
// with the SHA extensions, then one by one with crypto/sha256.
func (p *Prefixed) SumN(dst [][Size]byte, msgs [][]byte) {
	if len(dst) != len(msgs) {
		panic("sha256mb: SumN with len(dst) != len(msgs)")
	}
	for _, m := range msgs {
		if len(m) != len(msgs[0]) {
			panic("sha256mb: SumN of messages with different lengths")
		}
	}
	i := 0
	var ln lanes
	if (have16 || haveX2) && len(msgs) >= 2 {
		p.initLanes(&ln, len(msgs[0]), min(len(msgs), 16))
	}
	if have16 {
		for ; len(msgs)-i >= 16; i += 16 {
			p.sum16(dst[i:i+16], msgs[i:i+16], &ln)
		}
		// Sixteen lanes of which some idle beat pairs from 9 messages on
		// (measured: one 16-lane block takes about the time of 8.5 blocks
		// through two lanes).
		if len(msgs)-i >= 9 {
			p.sum16(dst[i:], msgs[i:], &ln)
			i = len(msgs)
		}
	}
	if haveX2 {
		for ; len(msgs)-i >= 2; i += 2 {
			p.sum2(&dst[i], &dst[i+1], msgs[i], msgs[i+1], &ln)
		}
	}
	for ; i < len(msgs); i++ {
		p.Sum(&dst[i], msgs[i])
	}
}

// sumNGeneric is SumN with crypto/sha256 only, as on CPUs without the SHA
// extensions or AVX-512.
func (p *Prefixed) sumNGeneric(dst [][Size]byte, msgs [][]byte) {
	for i, m := range msgs {
		p.Sum(&dst[i], m)
	}
}

// The block drivers below hash, per lane, the stream rem ‖ m ‖ padding
// from the hash value p.h, where rem is the part of the prefix after its
// whole blocks, in up to three steps ([Prefixed.steps]):
//
//   - a head block rem ‖ m[:64-len(rem)], copied, if rem is not empty and
//     the stream has a whole block;
//   - the whole blocks of the rest of m, read in place;
//   - one or two tail blocks: what remains of rem ‖ m, 0x80, zeros and the
//     bit length (FIPS 180-4 §5.1.1).

// step is one call of a kernel: nb blocks from the head buffer, from
// the message at byte off, or from the tail buffer.
type step struct {
	kind stepKind
	off  int // head: 0; body: where the whole blocks start; tail: where the unhashed end starts
	r    int // tail: how much of rem precedes m[off:] (all of it, or none after a head block)
	nb   int
}

type stepKind uint8

const (
	headStep stepKind = iota
	bodyStep
	tailStep
)

// steps returns the steps that hash messages of n bytes: up to three.
func (p *Prefixed) steps(n int) (s [3]step, k int) {
	r := len(p.rem)
	i := 0 // bytes of each message consumed so far
	if r > 0 && r+n >= blockSize {
		s[k] = step{kind: headStep, nb: 1}
		k++
		i, r = blockSize-r, 0
	}
	if nb := (n - i) / blockSize; nb > 0 {
		s[k] = step{kind: bodyStep, off: i, nb: nb}
		k++
		i += nb * blockSize
	}
	nb := 1
	if r+(n-i)+1+8 > blockSize {
		nb = 2
	}
	s[k] = step{kind: tailStep, off: i, r: r, nb: nb}
	return s, k + 1
}

// lanes holds, for up to sixteen lanes, the head and tail blocks of
// messages of one length. What all of them share (the rest of the prefix,
// the 0x80, the zeros and the bit length) is written once per SumN call by
// [Prefixed.initLanes]; [lanes.blocks] then writes only each message's own
// bytes. (Copying and clearing the whole head and tail for every message
// took a tenth of sum16's time.)
type lanes struct {
	steps [3]step
	k     int                        // steps used
	rem   int                        // len(Prefixed.rem)
	buf   [16][2][2 * blockSize]byte // per lane: head, tail
	carry [carrySize]byte            // for block16's shifted loads
}

// shifted reports whether every lane's blocks start 32 bytes into a cache
// line, as a message body does after a 32-byte salt (dm-verity's default):
// block16 then loads whole aligned lines and shifts them (LOAD_ROW_SHIFTED),
// 3 % faster than two 32-byte halves per block. It reads the 32 bytes
// before each lane's first block and after its last, which lie in the same
// aligned line, so on the same page, as bytes of the blocks.
func shifted(p *[16]*byte) bool {
	for _, b := range p {
		if uintptr(unsafe.Pointer(b))%64 != 32 {
			return false
		}
	}
	return true
}

// initLanes prepares ln for count lanes of messages of n bytes; ln must be
// zero.
func (p *Prefixed) initLanes(ln *lanes, n, count int) {
	ln.steps, ln.k = p.steps(n)
	ln.rem = len(p.rem)
	for _, st := range ln.steps[:ln.k] {
		for l := range count {
			switch st.kind {
			case headStep:
				copy(ln.buf[l][0][:], p.rem)
			case tailStep:
				b := &ln.buf[l][1]
				t := copy(b[:], p.rem[:st.r]) + n - st.off
				b[t] = 0x80
				binary.BigEndian.PutUint64(b[st.nb*blockSize-8:], (p.plen+uint64(n))<<3)
			}
		}
	}
}

// blocks returns the blocks that step st hashes for message m in lane l:
// the message itself, or the lane's head or tail block with m's bytes
// written in.
func (ln *lanes) blocks(st step, l int, m []byte) []byte {
	switch st.kind {
	case headStep:
		b := &ln.buf[l][0]
		copy(b[ln.rem:blockSize], m)
		return b[:blockSize]
	case bodyStep:
		return m[st.off : st.off+st.nb*blockSize]
	}
	b := &ln.buf[l][1]
	copy(b[st.r:], m[st.off:])
	return b[:st.nb*blockSize]
}

// sum2 hashes two messages of the same length with blockX2, in lanes 0
// and 1 of ln.
func (p *Prefixed) sum2(d0, d1 *[Size]byte, m0, m1 []byte, ln *lanes) {
	h0, h1 := p.h, p.h
	for _, st := range ln.steps[:ln.k] {
		blockX2(&h0, &h1, ln.blocks(st, 0, m0), ln.blocks(st, 1, m1))
	}
	putDigest(d0, &h0)
	putDigest(d1, &h1)
}

// sum16 hashes between 1 and 16 messages of the same length with block16,
// message l in lane l of ln. Lanes without a message of their own hash the
// first one's blocks again, and their results are dropped.
func (p *Prefixed) sum16(dst [][Size]byte, msgs [][]byte, ln *lanes) {
	var h [8][16]uint32 // word-major: h[j][lane]
	for j := range h {
		for l := range h[j] {
			h[j][l] = p.h[j]
		}
	}
	var ptrs [16]*byte
	for _, st := range ln.steps[:ln.k] {
		for l, m := range msgs {
			ptrs[l] = &ln.blocks(st, l, m)[0]
		}
		for l := len(msgs); l < len(ptrs); l++ {
			ptrs[l] = ptrs[0]
		}
		var carry *[carrySize]byte
		if st.kind == bodyStep && shifted(&ptrs) {
			carry = &ln.carry
		}
		block16(&h, &ptrs, st.nb, carry)
	}
	for l := range dst[:len(msgs)] {
		for j := range h {
			binary.BigEndian.PutUint32(dst[l][4*j:], h[j][l])
		}
	}
}

func putDigest(d *[Size]byte, h *[8]uint32) {
	for i, v := range h {
		binary.BigEndian.PutUint32(d[4*i:], v)
	}
}
