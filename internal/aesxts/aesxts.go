package aesxts

import (
	"crypto/aes"
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
	k1, k2 roundKeys   // the data key K1 and the tweak key K2, for the kernel
	ref    *xts.Cipher // the portable implementation
	vaes   bool        // whether the kernel runs here
}

// New returns the cipher for key, which holds K1 then K2: 32 bytes for
// XTS-AES-128, 64 for XTS-AES-256 (LUKS2's aes-xts-plain64 with a 256- or
// 512-bit key).
func New(key []byte) (*Cipher, error) {
	if len(key) != 32 && len(key) != 64 {
		return nil, fmt.Errorf("aes-xts: key of %d bytes, want 32 (AES-128) or 64 (AES-256)", len(key))
	}
	half := len(key) / 2
	ref, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		return nil, err
	}
	return &Cipher{k1: expandKey(key[:half]), k2: expandKey(key[half:]), ref: ref, vaes: haveVAES}, nil
}

// Encrypt encrypts the data unit src, whose number is unit (for dm-crypt's
// plain64 IV: the 512-byte sector number), into dst. len(src) must be a
// non-zero multiple of [BlockSize] and len(dst) at least as long; dst and
// src may be the same slice but must not otherwise overlap.
func (c *Cipher) Encrypt(dst, src []byte, unit uint64) {
	checkUnit(dst, src)
	c.EncryptUnits(dst, src, len(src), unit, 0)
}

// EncryptUnits encrypts src, consecutive data units of unitSize bytes, into
// dst; unit k has the number first + k*step. For dm-crypt's plain64 IV with
// sectors of S bytes, step is S/512 (the IV counts 512-byte sectors unless
// the table has iv_large_sectors). unitSize must be a non-zero multiple of
// [BlockSize] and len(src) a multiple of unitSize; dst and src follow the
// rules of Encrypt.
func (c *Cipher) EncryptUnits(dst, src []byte, unitSize int, first, step uint64) {
	if unitSize <= 0 || unitSize%BlockSize != 0 || len(src)%unitSize != 0 {
		panic(fmt.Sprintf("aes-xts: %d bytes are not whole data units of %d bytes", len(src), unitSize))
	}
	checkUnit(dst, src)
	units := len(src) / unitSize
	if !c.vaes || unitSize%(kernelBlocks*BlockSize) != 0 {
		for k := range units {
			c.ref.Encrypt(dst[k*unitSize:(k+1)*unitSize], src[k*unitSize:(k+1)*unitSize], first+uint64(k)*step)
		}
		return
	}
	encUnitsVAES(&c.k1.rk, &c.k2.rk, c.k1.rounds, &dst[0], &src[0], unitSize/BlockSize, units, first, step)
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
