// Package sectorcrypt encrypts and authenticates sectors the way dm-crypt
// does for a LUKS2 volume with integrity, so that a volume can be written
// (pre-encrypted) in userspace and opened by the kernel: the
// capi:authenc(hmac(sha256),xts(aes))-plain64 and
// capi:authenc(hmac(sha512),xts(aes))-plain64 ciphers, that is
// aes-xts-plain64 with --integrity hmac-sha256 or hmac-sha512 ([HMACXTS]),
// and capi:gcm(aes)-random, aes-gcm-random with --integrity aead
// ([GCMRandom]).
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
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
	"fmt"

	"github.com/confidisk/confidisk/internal/aesxts"
	"github.com/confidisk/confidisk/internal/sha256mb"
)

// adSize is the associated data: the le64 sector number and the 16-byte IV.
const adSize = 8 + aesxts.BlockSize

// HMACXTS seals sectors with aes-xts-plain64 and hmac(sha256) or
// hmac(sha512). It is read-only after [New] and may be used by many
// goroutines.
type HMACXTS struct {
	enc        *aesxts.Cipher
	mac        macer
	sectorSize int
}

// macer computes the tags of a batch of messages.
type macer interface {
	size() int
	// sumN writes the tag of msgs[i] at tags[i*size():].
	sumN(tags []byte, msgs [][]byte)
}

// sha256Macer is hmac(sha256) on the multi-buffer kernels.
type sha256Macer struct{ h *sha256mb.HMAC }

func (m sha256Macer) size() int { return sha256mb.Size }

func (m sha256Macer) sumN(tags []byte, msgs [][]byte) {
	var sums [batch][sha256mb.Size]byte
	m.h.SumN(sums[:len(msgs)], msgs)
	for i := range msgs {
		copy(tags[i*sha256mb.Size:], sums[i][:])
	}
}

// sha512Macer is hmac(sha512) with crypto/hmac, one message at a time.
type sha512Macer struct{ key []byte }

func (m sha512Macer) size() int { return sha512.Size }

func (m sha512Macer) sumN(tags []byte, msgs [][]byte) {
	h := hmac.New(sha512.New, m.key)
	for i, msg := range msgs {
		h.Reset()
		h.Write(msg)
		h.Sum(tags[i*sha512.Size : i*sha512.Size])
	}
}

// New returns the sealer for the LUKS2 integrity type integrity
// ("hmac(sha256)" or "hmac(sha512)"), volumeKey (the XTS key, 32 or 64
// bytes, then the HMAC key of the digest's size, as LUKS2 stores it for
// --key-size 256 or 512) and sectors of sectorSize bytes (512, 1024, 2048
// or 4096).
func New(integrity string, volumeKey []byte, sectorSize int) (*HMACXTS, error) {
	if err := checkSectorSize(sectorSize); err != nil {
		return nil, err
	}
	var macKeySize int
	switch integrity {
	case "hmac(sha256)":
		macKeySize = sha256mb.Size
	case "hmac(sha512)":
		macKeySize = sha512.Size
	default:
		return nil, fmt.Errorf("integrity %q: want hmac(sha256) or hmac(sha512)", integrity)
	}
	if n := len(volumeKey) - macKeySize; n != 32 && n != 64 {
		return nil, fmt.Errorf("volume key of %d bytes: want %d or %d for aes-xts-plain64 with %s",
			len(volumeKey), 32+macKeySize, 64+macKeySize, integrity)
	}
	encKey, macKey := volumeKey[:len(volumeKey)-macKeySize], volumeKey[len(volumeKey)-macKeySize:]
	enc, err := aesxts.New(encKey)
	if err != nil {
		return nil, err
	}
	var mac macer = sha512Macer{key: append([]byte(nil), macKey...)}
	if macKeySize == sha256mb.Size {
		mac = sha256Macer{sha256mb.NewHMAC(macKey)}
	}
	return &HMACXTS{enc: enc, mac: mac, sectorSize: sectorSize}, nil
}

// SectorSize is the size of the sectors Seal takes.
func (c *HMACXTS) SectorSize() int { return c.sectorSize }

// TagSize is the size of one sector's tag (the digest's size).
func (c *HMACXTS) TagSize() int { return c.mac.size() }

// batch is how many sectors Seal authenticates per HMAC call.
const batch = 64

// Seal encrypts src, whole sectors, into dst and writes their tags to tags
// (TagSize bytes per sector, in order). sector is the 512-byte sector
// number of the first one on the dm-crypt device (the IV and the
// associated data; the volume's iv_tweak must be 0, as it is outside a
// reencryption). dst may be src; tags must not overlap either.
func (c *HMACXTS) Seal(dst, tags, src []byte, sector uint64) {
	s, ts := c.sectorSize, c.mac.size()
	n := checkSeal(dst, tags, src, s, ts)
	step := uint64(s / 512)
	c.enc.EncryptUnits(dst[:len(src)], src, s, sector, step)
	var msgs [batch][]byte
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
		c.mac.sumN(tags[first*ts:(first+k)*ts], msgs[:k])
	}
}
