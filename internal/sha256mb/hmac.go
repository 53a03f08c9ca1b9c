package sha256mb

// HMAC computes HMAC-SHA-256 (RFC 2104, FIPS 198-1) of many equal-length
// messages under one key, several at a time: the inner and outer hashes are
// each a [Prefixed] whose prefix is the key XORed with ipad or opad (one
// whole block, so the kernels start from its midstate). dm-crypt's
// hmac(sha256) integrity tags are such HMACs, one per sector.
//
// An HMAC is read-only after [NewHMAC] and may be used by many goroutines.
type HMAC struct {
	inner, outer *Prefixed
}

// NewHMAC returns the HMAC for key (any length; a key longer than a block
// is hashed first, FIPS 198-1 §4 step 2).
func NewHMAC(key []byte) *HMAC {
	var k [blockSize]byte
	if len(key) > blockSize {
		var d [Size]byte
		NewPrefixed(nil).Sum(&d, key)
		copy(k[:], d[:])
	} else {
		copy(k[:], key)
	}
	var ipad, opad [blockSize]byte
	for i, b := range k {
		ipad[i] = b ^ 0x36
		opad[i] = b ^ 0x5c
	}
	return &HMAC{inner: NewPrefixed(ipad[:]), outer: NewPrefixed(opad[:])}
}

// hmacBatch is how many messages SumN hashes per step, its scratch living
// on the stack.
const hmacBatch = 64

// SumN sets dst[i] = HMAC-SHA-256(key, msgs[i]) for every i. The rules of
// [Prefixed.SumN] apply: messages of one length, len(dst) == len(msgs), no
// overlap, no allocation.
func (h *HMAC) SumN(dst [][Size]byte, msgs [][]byte) {
	if len(dst) != len(msgs) {
		panic("sha256mb: HMAC SumN with len(dst) != len(msgs)")
	}
	var inner [hmacBatch][Size]byte
	var ins [hmacBatch][]byte
	for first := 0; first < len(msgs); first += hmacBatch {
		n := min(hmacBatch, len(msgs)-first)
		h.inner.SumN(inner[:n], msgs[first:first+n])
		for i := range n {
			ins[i] = inner[i][:]
		}
		h.outer.SumN(dst[first:first+n], ins[:n])
	}
}
