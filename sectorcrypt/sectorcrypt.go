// Package sectorcrypt encrypts and authenticates sectors the way dm-crypt
// does for a LUKS2 volume with integrity, so that a volume can be written
// (pre-encrypted) in userspace and opened by the kernel: today the
// capi:authenc(hmac(sha256),xts(aes))-plain64 cipher, that is
// aes-xts-plain64 with --integrity hmac-sha256.
//
// Sources (read for facts; no code is copied): Linux drivers/md/dm-crypt.c
// (crypt_convert_block_aead: the associated data is the little-endian
// 512-byte sector number followed by the IV, then come the sector and its
// tag; crypt_iv_plain64_gen: the IV is the sector number, little-endian,
// zero-padded; crypt_copy_authenckey and crypt_setkey: the volume key is
// the encryption key followed by the HMAC key, of the digest's size);
// crypto/authenc.c (the tag is the HMAC of associated data ‖ ciphertext).
package sectorcrypt

import (
	"encoding/binary"
	"fmt"

	"github.com/confidisk/confidisk/internal/aesxts"
	"github.com/confidisk/confidisk/internal/sha256mb"
)

// TagSize is the size of an hmac(sha256) tag, dm-integrity's tag size for
// this cipher (no IV is stored with plain64).
const TagSize = sha256mb.Size

// MACKeySize is the size of the HMAC key at the end of the volume key.
const MACKeySize = sha256mb.Size

// adSize is the associated data: the le64 sector number and the 16-byte IV.
const adSize = 8 + aesxts.BlockSize

// HMACXTS seals sectors with aes-xts-plain64 and hmac(sha256). It is
// read-only after [NewHMACXTS] and may be used by many goroutines.
type HMACXTS struct {
	enc        *aesxts.Cipher
	mac        *sha256mb.HMAC
	sectorSize int
}

// NewHMACXTS returns the sealer for volumeKey (the XTS key, 32 or 64 bytes,
// then the 32-byte HMAC key: 64 or 96 bytes, as LUKS2 stores it for
// --key-size 256 or 512 with --integrity hmac-sha256) and sectors of
// sectorSize bytes (512, 1024, 2048 or 4096).
func NewHMACXTS(volumeKey []byte, sectorSize int) (*HMACXTS, error) {
	switch sectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("sector size %d: want 512, 1024, 2048 or 4096", sectorSize)
	}
	if n := len(volumeKey) - MACKeySize; n != 32 && n != 64 {
		return nil, fmt.Errorf("volume key of %d bytes: want 64 or 96 for aes-xts-plain64 with hmac(sha256)", len(volumeKey))
	}
	encKey := volumeKey[:len(volumeKey)-MACKeySize]
	enc, err := aesxts.New(encKey)
	if err != nil {
		return nil, err
	}
	return &HMACXTS{enc: enc, mac: sha256mb.NewHMAC(volumeKey[len(encKey):]), sectorSize: sectorSize}, nil
}

// SectorSize is the size of the sectors Seal takes.
func (c *HMACXTS) SectorSize() int { return c.sectorSize }

// batch is how many sectors Seal authenticates per HMAC call.
const batch = 64

// Seal encrypts src, whole sectors, into dst and writes their tags to tags
// (TagSize bytes per sector, in order). sector is the 512-byte sector
// number of the first one on the dm-crypt device (the IV and the
// associated data; the volume's iv_tweak must be 0, as it is outside a
// reencryption). dst may be src; tags must not overlap either.
func (c *HMACXTS) Seal(dst, tags, src []byte, sector uint64) {
	s := c.sectorSize
	if len(src) == 0 || len(src)%s != 0 || len(dst) < len(src) {
		panic(fmt.Sprintf("sectorcrypt: %d bytes are not whole %d-byte sectors (or dst is shorter)", len(src), s))
	}
	n := len(src) / s
	if len(tags) < n*TagSize {
		panic("sectorcrypt: tags shorter than TagSize per sector")
	}
	step := uint64(s / 512)
	c.enc.EncryptUnits(dst[:len(src)], src, s, sector, step)
	var (
		msgs [batch][]byte
		sums [batch][TagSize]byte
	)
	buf := make([]byte, min(n, batch)*(adSize+s))
	for first := 0; first < n; first += batch {
		k := min(batch, n-first)
		for j := range k {
			m := buf[j*(adSize+s) : (j+1)*(adSize+s)]
			num := sector + uint64(first+j)*step
			binary.LittleEndian.PutUint64(m[0:], num)
			binary.LittleEndian.PutUint64(m[8:], num)
			clear(m[16:adSize])
			copy(m[adSize:], dst[(first+j)*s:(first+j+1)*s])
			msgs[j] = m
		}
		c.mac.SumN(sums[:k], msgs[:k])
		for j := range k {
			copy(tags[(first+j)*TagSize:], sums[j][:])
		}
	}
}
