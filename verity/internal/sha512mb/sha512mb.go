// Package sha512mb computes SHA-512 digests of many equal-length messages
// that share a prefix, several at a time, for dm-verity hashing with
// --hash sha512 where every digest is SHA-512(salt ‖ block).
//
// The hash is SHA-512 as specified in FIPS 180-4: the compression function of
// §6.4.2 (SHA-512 computation), the padding of §5.1.2 and the initial hash
// value of §5.3.5. Padding and the prefix are handled in Go; assembly only
// compresses whole 128-byte blocks, read in place from the caller's slices
// except for the first block (when it straddles prefix and message) and the
// last one or two (which hold the padding).
//
// On amd64 there are two kernels, in the multi-buffer scheme of Intel's
// isa-l_crypto sha512_mb: eight messages at once with AVX-512 (one per 64-bit
// lane of the ZMM registers, VPRORQ and VPTERNLOGQ doing the rotations and
// the three-input functions) where the CPU has AVX-512 F and BW, and four at
// once with AVX2 (one per lane of the YMM registers). Other architectures,
// the purego build tag and CPUs without AVX2 use crypto/sha512, one message
// at a time. All paths give the same digests.
package sha512mb

import (
	"crypto/sha512"
	"encoding/binary"
)

// Size is the size of a SHA-512 digest in bytes.
const Size = sha512.Size

const blockSize = 128

// maxLanes is the number of messages the widest kernel hashes at once; the
// kernels share one layout of hash values and block pointers with that many
// lanes.
const maxLanes = 8

// kernel names a compression function by the number of messages it hashes
// at once.
type kernel int

const (
	avx2   kernel = 4 // block4
	avx512 kernel = 8 // block8
)

// block runs the kernel: for each lane l < k, over the n 128-byte blocks at
// p[l] with the hash value h[0][l]..h[7][l]. (A switch rather than a func
// value, so that h and p stay on the caller's stack.)
func (k kernel) block(h *[8][maxLanes]uint64, p *[maxLanes]*byte, n int) {
	if k == avx512 {
		block8(h, p, n)
	} else {
		block4(h, p, n)
	}
}

// iv is the initial hash value H(0) of FIPS 180-4 §5.3.5.
var iv = [8]uint64{
	0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
	0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
}

// Prefixed hashes messages that all start with the same prefix. It is
// read-only after [NewPrefixed], so one Prefixed may be used by any number of
// goroutines at once.
type Prefixed struct {
	prefix []byte    // a copy of the whole prefix, for the crypto/sha512 path
	h      [8]uint64 // hash value after the whole 128-byte blocks of prefix
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
	switch {
	case full == 0:
	case have8:
		p.h = midstate(avx512, p.prefix[:full])
	case have4:
		p.h = midstate(avx2, p.prefix[:full])
	}
	// Without a kernel only Sum is used, which rehashes the whole prefix.
	return p
}

// midstate returns the hash value after the blocks of b, a multiple of 128
// bytes, with kernel k; all lanes hash b. It runs once per Prefixed.
func midstate(k kernel, b []byte) [8]uint64 {
	var h [8][maxLanes]uint64
	var ptrs [maxLanes]*byte
	for j := range h {
		h[j][0] = iv[j]
	}
	for l := range ptrs {
		ptrs[l] = &b[0]
	}
	k.block(&h, &ptrs, len(b)/blockSize)
	var h0 [8]uint64
	for j := range h0 {
		h0[j] = h[j][0]
	}
	return h0
}

// Sum sets *d = SHA-512(prefix ‖ m), with crypto/sha512. It is the
// single-message form; [Prefixed.SumN] is faster for many messages.
func (p *Prefixed) Sum(d *[Size]byte, m []byte) {
	h := sha512.New()
	h.Write(p.prefix)
	h.Write(m)
	h.Sum(d[:0])
}

// SumN sets dst[i] = SHA-512(prefix ‖ msgs[i]) for every i. All messages must
// have the same length, and len(dst) must equal len(msgs); SumN panics
// otherwise. The digests may not overlap the messages. SumN does not
// allocate.
//
// SumN is fastest with many messages per call, ideally a multiple of 8: it
// hashes them eight at a time with AVX-512 where available, else four at a
// time with AVX2; a group of three or more that does not fill the lanes runs
// with idle lanes, and the last one or two messages one by one with
// crypto/sha512.
func (p *Prefixed) SumN(dst [][Size]byte, msgs [][]byte) {
	if len(dst) != len(msgs) {
		panic("sha512mb: SumN with len(dst) != len(msgs)")
	}
	for _, m := range msgs {
		if len(m) != len(msgs[0]) {
			panic("sha512mb: SumN of messages with different lengths")
		}
	}
	i := 0
	if have8 {
		for ; len(msgs)-i >= 8; i += 8 {
			p.sum8(dst[i:i+8], msgs[i:i+8])
		}
		// Eight lanes of which some idle beat block4 and crypto/sha512
		// from three messages on (measured on a Xeon: block8 takes the
		// time of block4, and of 1.3 messages through crypto/sha512).
		if len(msgs)-i >= 3 {
			p.sum8(dst[i:], msgs[i:])
			i = len(msgs)
		}
	}
	if have4 {
		// Three messages and an idle lane beat three through
		// crypto/sha512; two do not (measured: block4 takes about the
		// time of two blocks through crypto/sha512).
		for ; len(msgs)-i >= 3; i += int(avx2) {
			j := min(i+int(avx2), len(msgs))
			p.sum4(dst[i:j], msgs[i:j])
		}
	}
	for ; i < len(msgs); i++ {
		p.Sum(&dst[i], msgs[i])
	}
}

// sumNGeneric is SumN with crypto/sha512 only, as on CPUs without AVX2.
func (p *Prefixed) sumNGeneric(dst [][Size]byte, msgs [][]byte) {
	for i, m := range msgs {
		p.Sum(&dst[i], m)
	}
}

// sum4 hashes between 1 and 4 messages of the same length with block4.
func (p *Prefixed) sum4(dst [][Size]byte, msgs [][]byte) { p.sumLanes(avx2, dst, msgs) }

// sum8 hashes between 1 and 8 messages of the same length with block8.
func (p *Prefixed) sum8(dst [][Size]byte, msgs [][]byte) { p.sumLanes(avx512, dst, msgs) }

// sumLanes hashes between 1 and k messages of the same length with
// kernel k, per lane the stream rem ‖ m ‖ padding from the hash value p.h:
//
//   - a head block rem ‖ m[:128-len(rem)], copied, if rem is not empty and
//     the stream has a whole block;
//   - the whole blocks of the rest of m, read in place;
//   - one or two tail blocks: what remains of rem ‖ m, 0x80, zeros and the
//     128-bit bit length (FIPS 180-4 §5.1.2).
//
// Lanes without a message of their own hash a copy of the first one, and
// their results are dropped.
func (p *Prefixed) sumLanes(k kernel, dst [][Size]byte, msgs [][]byte) {
	var h [8][maxLanes]uint64 // word-major: h[j][lane]
	for j := range h {
		for l := range h[j] {
			h[j][l] = p.h[j]
		}
	}
	var bufs [maxLanes][2 * blockSize]byte
	var ptrs [maxLanes]*byte
	n := len(msgs[0])
	r := len(p.rem)
	i := 0
	if r > 0 && r+n >= blockSize {
		for l, m := range msgs {
			c := copy(bufs[l][:], p.rem)
			copy(bufs[l][c:blockSize], m)
			ptrs[l] = &bufs[l][0]
		}
		run(k, &h, &ptrs, len(msgs), 1)
		i, r = blockSize-r, 0
	}
	if nb := (n - i) / blockSize; nb > 0 {
		for l, m := range msgs {
			ptrs[l] = &m[i]
		}
		run(k, &h, &ptrs, len(msgs), nb)
		i += nb * blockSize
	}
	end := 0
	for l, m := range msgs {
		end = p.tail(&bufs[l], r, m[i:], n)
		ptrs[l] = &bufs[l][0]
	}
	run(k, &h, &ptrs, len(msgs), end/blockSize)
	for l := range dst {
		for j := range h {
			binary.BigEndian.PutUint64(dst[l][8*j:], h[j][l])
		}
	}
}

// run points the idle lanes of k from lane used on at lane 0's blocks and
// runs k over nb blocks.
func run(k kernel, h *[8][maxLanes]uint64, ptrs *[maxLanes]*byte, used, nb int) {
	for l := used; l < int(k); l++ {
		ptrs[l] = ptrs[0]
	}
	k.block(h, ptrs, nb)
}

// tail writes the padded end of the stream to b and returns its length,
// 128 or 256: rem[:r] (all of rem, or none of it if a head block took it),
// then m, the unhashed end of the message, shorter than a block together
// with rem[:r]; then 0x80, zeros and the length in bits as a 128-bit
// big-endian integer (§5.1.2). n is the message length.
func (p *Prefixed) tail(b *[2 * blockSize]byte, r int, m []byte, n int) int {
	t := copy(b[:], p.rem[:r])
	t += copy(b[t:], m)
	b[t] = 0x80
	clear(b[t+1:])
	end := blockSize
	if t+1+16 > blockSize {
		end = 2 * blockSize
	}
	bytes := p.plen + uint64(n)
	binary.BigEndian.PutUint64(b[end-16:], bytes>>61)
	binary.BigEndian.PutUint64(b[end-8:], bytes<<3)
	return end
}
