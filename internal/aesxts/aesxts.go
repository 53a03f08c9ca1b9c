package aesxts

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/xts"
)

// BlockSize is the AES block size: data units are multiples of it.
const BlockSize = aes.BlockSize

// kernelBlocks is how many blocks the vector kernel takes per step; data
// units of a multiple of kernelBlocks*BlockSize bytes (every dm-crypt sector
// size: 512 to 4096) go through it.
const kernelBlocks = 16

// Cipher is XTS-AES-128 or XTS-AES-256 with a key K1 ‖ K2 (IEEE 1619 §5.1).
// It is read-only after [New], so it may be used by many goroutines at once.
type Cipher struct {
	k1    roundKeys    // data key K1, expanded for the kernel
	tweak cipher.Block // E_K2, which turns the data unit number into the tweak
	ref   *xts.Cipher  // the portable implementation
	vaes  bool         // whether the kernel runs here
}

// New returns the cipher for key, which holds K1 then K2: 32 bytes for
// XTS-AES-128, 64 for XTS-AES-256 (LUKS2's aes-xts-plain64 with a 256- or
// 512-bit key).
func New(key []byte) (*Cipher, error) {
	if len(key) != 32 && len(key) != 64 {
		return nil, fmt.Errorf("aes-xts: key of %d bytes, want 32 (AES-128) or 64 (AES-256)", len(key))
	}
	half := len(key) / 2
	tw, err := aes.NewCipher(key[half:])
	if err != nil {
		return nil, err
	}
	ref, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		return nil, err
	}
	return &Cipher{k1: expandKey(key[:half]), tweak: tw, ref: ref, vaes: haveVAES}, nil
}

// Encrypt encrypts the data unit src, whose number is unit (for dm-crypt's
// plain64 IV: the 512-byte sector number), into dst. len(src) must be a
// non-zero multiple of [BlockSize] and len(dst) at least as long; dst and
// src may be the same slice but must not otherwise overlap.
func (c *Cipher) Encrypt(dst, src []byte, unit uint64) {
	checkUnit(dst, src)
	if !c.vaes || len(src)%(kernelBlocks*BlockSize) != 0 {
		c.ref.Encrypt(dst, src, unit)
		return
	}
	var tw [4][BlockSize]byte
	binary.LittleEndian.PutUint64(tw[0][:], unit)
	c.tweak.Encrypt(tw[0][:], tw[0][:])
	for j := 1; j < len(tw); j++ {
		tw[j] = mulAlpha(tw[j-1])
	}
	encVAES(&c.k1.rk, c.k1.rounds, &tw, &dst[0], &src[0], len(src)/BlockSize)
}

// Decrypt is the inverse of Encrypt, with the same rules for its arguments.
func (c *Cipher) Decrypt(dst, src []byte, unit uint64) {
	checkUnit(dst, src)
	c.ref.Decrypt(dst, src, unit)
}

func checkUnit(dst, src []byte) {
	if len(src) == 0 || len(src)%BlockSize != 0 {
		panic(fmt.Sprintf("aes-xts: data unit of %d bytes, not a non-zero multiple of %d", len(src), BlockSize))
	}
	if len(dst) < len(src) {
		panic("aes-xts: dst shorter than src")
	}
}

// mulAlpha multiplies the tweak t by α, the primitive element of GF(2^128)
// modulo x^128 + x^7 + x^2 + x + 1, t being little-endian (IEEE 1619 §5.2).
func mulAlpha(t [BlockSize]byte) [BlockSize]byte {
	lo := binary.LittleEndian.Uint64(t[:8])
	hi := binary.LittleEndian.Uint64(t[8:])
	carry := hi >> 63
	hi = hi<<1 | lo>>63
	lo = lo<<1 ^ carry*0x87
	binary.LittleEndian.PutUint64(t[:8], lo)
	binary.LittleEndian.PutUint64(t[8:], hi)
	return t
}
