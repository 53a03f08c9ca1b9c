package sectorcrypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// GCM IV and tag sizes of aes-gcm-random with --integrity aead.
const (
	gcmIVSize  = 12
	gcmTagSize = 16
)

// GCMRandom seals sectors with aes-gcm-random and --integrity aead, dm-crypt's
// capi:gcm(aes)-random: every sector gets a random 12-byte IV, the
// associated data is the le64 512-byte sector number followed by that IV,
// and dm-integrity keeps the 16-byte GCM tag followed by the IV
// (crypt_convert_block_aead: integrity_tag_size, then integrity_iv_size).
// It is read-only after [NewGCMRandom] and may be used by many goroutines.
type GCMRandom struct {
	aead       cipher.AEAD
	sectorSize int
}

// NewGCMRandom returns the sealer for volumeKey (the AES key: 16, 24 or 32
// bytes; LUKS2 has no separate integrity key for aead) and sectors of
// sectorSize bytes.
func NewGCMRandom(volumeKey []byte, sectorSize int) (*GCMRandom, error) {
	if err := checkSectorSize(sectorSize); err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(volumeKey)
	if err != nil {
		return nil, fmt.Errorf("aes-gcm-random: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &GCMRandom{aead: a, sectorSize: sectorSize}, nil
}

// SectorSize is the size of the sectors Seal takes.
func (c *GCMRandom) SectorSize() int { return c.sectorSize }

// TagSize is the size of one sector's metadata: the GCM tag and the IV.
func (c *GCMRandom) TagSize() int { return gcmTagSize + gcmIVSize }

// Seal encrypts src, whole sectors, into dst, each under a new random IV,
// and writes each sector's tag and IV to tags (TagSize bytes per sector).
// sector is the 512-byte sector number of the first one. dst may be src.
func (c *GCMRandom) Seal(dst, tags, src []byte, sector uint64) {
	s, ts := c.sectorSize, c.TagSize()
	n := checkSeal(dst, tags, src, s, ts)
	ivs := make([]byte, n*gcmIVSize)
	if _, err := rand.Read(ivs); err != nil {
		panic(fmt.Sprintf("sectorcrypt: random IVs: %v", err)) // crypto/rand does not fail on Linux
	}
	var ad [8 + gcmIVSize]byte
	out := make([]byte, 0, s+gcmTagSize)
	for k := range n {
		iv := ivs[k*gcmIVSize : (k+1)*gcmIVSize]
		binary.LittleEndian.PutUint64(ad[:], sector+uint64(k*s/512))
		copy(ad[8:], iv)
		out = c.aead.Seal(out[:0], iv, src[k*s:(k+1)*s], ad[:])
		copy(dst[k*s:], out[:s])
		t := tags[k*ts : (k+1)*ts]
		copy(t, out[s:])
		copy(t[gcmTagSize:], iv)
	}
}

// ErrAuth means that a sector's tag does not verify.
var ErrAuth = errors.New("sectorcrypt: the sector's tag does not verify")

// Open decrypts one sector (src, SectorSize bytes) with its tag and IV as
// dm-integrity stores them into dst, as dm-crypt reads it: [ErrAuth] when
// the tag does not verify.
func (c *GCMRandom) Open(dst, src, tag []byte, sector uint64) error {
	s := c.sectorSize
	if len(src) != s || len(dst) < s || len(tag) < c.TagSize() {
		return fmt.Errorf("sectorcrypt: want a %d-byte sector and a %d-byte tag", s, c.TagSize())
	}
	iv := tag[gcmTagSize:c.TagSize()]
	var ad [8 + gcmIVSize]byte
	binary.LittleEndian.PutUint64(ad[:], sector)
	copy(ad[8:], iv)
	sealed := append(append(make([]byte, 0, s+gcmTagSize), src...), tag[:gcmTagSize]...)
	if _, err := c.aead.Open(dst[:0], iv, sealed, ad[:]); err != nil {
		return fmt.Errorf("%w (sector %d)", ErrAuth, sector)
	}
	return nil
}

// checkSectorSize refuses sector sizes dm-crypt does not take.
func checkSectorSize(s int) error {
	switch s {
	case 512, 1024, 2048, 4096:
		return nil
	}
	return fmt.Errorf("sector size %d: want 512, 1024, 2048 or 4096", s)
}

// checkSeal panics on buffers Seal cannot take and returns the number of
// sectors.
func checkSeal(dst, tags, src []byte, s, ts int) int {
	if len(src) == 0 || len(src)%s != 0 || len(dst) < len(src) {
		panic(fmt.Sprintf("sectorcrypt: %d bytes are not whole %d-byte sectors (or dst is shorter)", len(src), s))
	}
	n := len(src) / s
	if len(tags) < n*ts {
		panic("sectorcrypt: tags shorter than TagSize per sector")
	}
	return n
}

// Sealer seals whole sectors and their tags as dm-crypt writes them.
type Sealer interface {
	Seal(dst, tags, src []byte, sector uint64)
	SectorSize() int
	TagSize() int
}

// ForSegment returns the sealer of a LUKS2 segment's encryption and
// integrity type: aes-xts-plain64 with hmac(sha256) or hmac(sha512), or
// aes-gcm-random with aead.
func ForSegment(encryption, integrity string, volumeKey []byte, sectorSize int) (Sealer, error) {
	switch {
	case encryption == "aes-xts-plain64" && (integrity == "hmac(sha256)" || integrity == "hmac(sha512)"):
		return New(integrity, volumeKey, sectorSize)
	case encryption == "aes-gcm-random" && integrity == "aead":
		return NewGCMRandom(volumeKey, sectorSize)
	}
	return nil, fmt.Errorf("offline writing supports aes-xts-plain64 with integrity hmac(sha256) or hmac(sha512) and aes-gcm-random with aead, not %s with integrity %s", encryption, integrity)
}
