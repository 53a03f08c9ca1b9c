package aesxts

import "encoding/binary"

// sbox is the AES S-box (FIPS 197 §5.1.1): the multiplicative inverse in
// GF(2^8) followed by the affine transformation, computed once.
var sbox = func() (s [256]byte) {
	// p runs over GF(2^8)* by multiplying by 3, q over the inverses by
	// dividing by 3; the pair stays inverse.
	p, q := byte(1), byte(1)
	for {
		p = p ^ p<<1 ^ byte(int8(p)>>7)&0x1b // p *= 3
		q ^= q << 1                          // q /= 3
		q ^= q << 2
		q ^= q << 4
		if q&0x80 != 0 {
			q ^= 0x09
		}
		x := q ^ rotl8(q, 1) ^ rotl8(q, 2) ^ rotl8(q, 3) ^ rotl8(q, 4)
		s[p] = x ^ 0x63
		if p == 1 {
			break
		}
	}
	s[0] = 0x63
	return s
}()

func rotl8(x byte, n uint) byte { return x<<n | x>>(8-n) }

// maxRounds is the number of rounds of AES-256.
const maxRounds = 14

// roundKeys are the rounds+1 round keys of an AES key, each as the 16 bytes
// the state is XORed with (FIPS 197 §5.1.4, w[4r..4r+3] in byte order).
type roundKeys struct {
	rk     [maxRounds + 1][16]byte
	rounds int
}

// expandKey is KeyExpansion (FIPS 197 §5.2) for a 16- or 32-byte key.
func expandKey(key []byte) roundKeys {
	nk := len(key) / 4
	var k roundKeys
	k.rounds = nk + 6
	w := make([]uint32, 4*(k.rounds+1))
	for i := range nk {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := uint32(1)
	for i := nk; i < len(w); i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = subWord(t<<8|t>>24) ^ rcon<<24
			rcon = uint32(xtime(byte(rcon)))
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		w[i] = w[i-nk] ^ t
	}
	for r := 0; r <= k.rounds; r++ {
		for j := range 4 {
			binary.BigEndian.PutUint32(k.rk[r][4*j:], w[4*r+j])
		}
	}
	return k
}

func subWord(w uint32) uint32 {
	return uint32(sbox[w>>24])<<24 | uint32(sbox[w>>16&0xff])<<16 | uint32(sbox[w>>8&0xff])<<8 | uint32(sbox[w&0xff])
}

// xtime multiplies by x in GF(2^8) (FIPS 197 §4.2.1).
func xtime(b byte) byte { return b<<1 ^ byte(int8(b)>>7)&0x1b }
