package luks2

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"runtime"
	"sync"

	"golang.org/x/crypto/argon2"

	"github.com/confidisk/confidisk/internal/hashes"
	"golang.org/x/crypto/xts"
)

// AFStripes is the number of anti-forensic stripes LUKS uses.
const AFStripes = 4000

// hashByName maps cryptsetup's hash names to constructors.
func hashByName(name string) (func() hash.Hash, error) {
	if h, ok := hashes.ByName(name); ok {
		return h, nil
	}
	return nil, fmt.Errorf("%w: hash %q", ErrUnsupported, name)
}

// afSize is the size of the split key material in a keyslot area, rounded up
// to whole 512-byte sectors (cryptsetup AF_split_sectors).
func afSize(keySize, stripes int) uint64 {
	n := uint64(keySize) * uint64(stripes)
	return (n + 511) / 512 * 512
}

// diffuse is the AF diffusion of cryptsetup lib/luks1/af.c: each digest-size
// piece j of buf becomes H(BE32(j) ‖ piece), the tail piece truncated.
func diffuse(buf []byte, nh func() hash.Hash) {
	h := nh()
	d := h.Size()
	var iv [4]byte
	for j := 0; j*d < len(buf); j++ {
		piece := buf[j*d : min((j+1)*d, len(buf))]
		h.Reset()
		binary.BigEndian.PutUint32(iv[:], uint32(j))
		h.Write(iv[:])
		h.Write(piece)
		copy(piece, h.Sum(nil))
	}
}

// afSplit splits key into stripes pieces (AF_split): stripes-1 random pieces
// and a last one that depends on all of them.
func afSplit(key []byte, stripes int, hashName string) ([]byte, error) {
	nh, err := hashByName(hashName)
	if err != nil {
		return nil, err
	}
	n := len(key)
	out := make([]byte, n*stripes)
	if _, err := rand.Read(out[:n*(stripes-1)]); err != nil {
		return nil, fmt.Errorf("af split: %w", err)
	}
	d := make([]byte, n)
	for i := 0; i < stripes-1; i++ {
		subtle.XORBytes(d, d, out[i*n:(i+1)*n])
		diffuse(d, nh)
	}
	subtle.XORBytes(out[(stripes-1)*n:], key, d)
	return out, nil
}

// afMerge recovers the key from split material (AF_merge).
func afMerge(material []byte, keySize, stripes int, hashName string) ([]byte, error) {
	nh, err := hashByName(hashName)
	if err != nil {
		return nil, err
	}
	if len(material) < keySize*stripes {
		return nil, fmt.Errorf("af merge: %d bytes of material, want %d", len(material), keySize*stripes)
	}
	d := make([]byte, keySize)
	for i := 0; i < stripes-1; i++ {
		subtle.XORBytes(d, d, material[i*keySize:(i+1)*keySize])
		diffuse(d, nh)
	}
	key := make([]byte, keySize)
	subtle.XORBytes(key, d, material[(stripes-1)*keySize:stripes*keySize])
	return key, nil
}

// deriveKey runs a keyslot's KDF over the passphrase (section 3.2.2).
func deriveKey(k *KDF, passphrase []byte, keyLen int) ([]byte, error) {
	switch k.Type {
	case "pbkdf2":
		nh, err := hashByName(k.Hash)
		if err != nil {
			return nil, err
		}
		if k.Iterations <= 0 {
			return nil, fmt.Errorf("pbkdf2: invalid iterations %d", k.Iterations)
		}
		return pbkdf2.Key(nh, string(passphrase), k.Salt, k.Iterations, keyLen)
	case "argon2i", "argon2id":
		if k.Time <= 0 || k.Memory < 8 || k.CPUs <= 0 || k.CPUs > 255 || k.Memory > maxArgonMemoryKiB {
			return nil, fmt.Errorf("%s: invalid cost time=%d memory=%d cpus=%d", k.Type, k.Time, k.Memory, k.CPUs)
		}
		warmHeap(k.Memory)
		if k.Type == "argon2i" {
			return argon2.Key(passphrase, k.Salt, uint32(k.Time), uint32(k.Memory), uint8(k.CPUs), uint32(keyLen)), nil
		}
		return argon2.IDKey(passphrase, k.Salt, uint32(k.Time), uint32(k.Memory), uint8(k.CPUs), uint32(keyLen)), nil
	}
	return nil, fmt.Errorf("%w: kdf %q", ErrUnsupported, k.Type)
}

// warmHeap faults in memKiB of heap and hands it back to the Go heap, so
// that Argon2's large allocation reuses pages that are already mapped.
// Letting the Argon2 lanes fault a fresh allocation in while they compute is
// 2–3× slower on virtual machines (measured: 1.9 s instead of 0.8 s for
// 308 MiB, t=4, p=2).
func warmHeap(memKiB int) {
	if memKiB < 64*1024 {
		return
	}
	b := make([]byte, memKiB*1024)
	// Touch the pages from a few threads, each its own contiguous part
	// (measured: 0.19 s instead of 0.30 s for 713 MiB on 2 cores).
	workers := min(runtime.NumCPU(), 4)
	part := (len(b)/workers + 4095) &^ 4095
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*part, min((w+1)*part, len(b))
		wg.Go(func() {
			for i := lo; i < hi; i += 4096 {
				b[i] = 1
			}
		})
	}
	wg.Wait()
	runtime.KeepAlive(b)
	b = nil
	runtime.GC()
}

// maxArgonMemoryKiB is cryptsetup's upper bound on Argon2 memory (4 GiB).
const maxArgonMemoryKiB = 4 * 1024 * 1024

// sectorCipher encrypts a keyslot area as 512-byte sectors numbered from 0
// at the area's start, the way dm-crypt would (luks2_keyslot_luks2.c).
type sectorCipher interface {
	encrypt(dst, src []byte, sector uint64)
	decrypt(dst, src []byte, sector uint64)
}

// newSectorCipher supports the keyslot area ciphers cryptsetup writes
// (aes-xts-plain64, the default) and the ones older headers carry
// (aes-cbc-essiv:sha256, aes-xts-plain).
func newSectorCipher(spec string, key []byte) (sectorCipher, error) {
	switch spec {
	case "aes-xts-plain64", "aes-xts-plain":
		if len(key) != 32 && len(key) != 64 {
			return nil, fmt.Errorf("%s: key of %d bytes, want 32 or 64", spec, len(key))
		}
		c, err := xts.NewCipher(aes.NewCipher, key)
		if err != nil {
			return nil, err
		}
		return xtsSectors{c: c, plain32: spec == "aes-xts-plain"}, nil
	case "aes-cbc-essiv:sha256":
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		salt := sha256.Sum256(key)
		essiv, err := aes.NewCipher(salt[:])
		if err != nil {
			return nil, err
		}
		return cbcEssiv{b: b, essiv: essiv}, nil
	}
	return nil, fmt.Errorf("%w: keyslot area cipher %q", ErrUnsupported, spec)
}

type xtsSectors struct {
	c       *xts.Cipher
	plain32 bool
}

func (x xtsSectors) tweak(s uint64) uint64 {
	if x.plain32 {
		return s & 0xffffffff
	}
	return s
}
func (x xtsSectors) encrypt(dst, src []byte, s uint64) { x.c.Encrypt(dst, src, x.tweak(s)) }
func (x xtsSectors) decrypt(dst, src []byte, s uint64) { x.c.Decrypt(dst, src, x.tweak(s)) }

type cbcEssiv struct{ b, essiv cipher.Block }

func (c cbcEssiv) iv(s uint64) []byte {
	iv := make([]byte, aes.BlockSize)
	binary.LittleEndian.PutUint64(iv, s)
	c.essiv.Encrypt(iv, iv)
	return iv
}
func (c cbcEssiv) encrypt(dst, src []byte, s uint64) {
	cipher.NewCBCEncrypter(c.b, c.iv(s)).CryptBlocks(dst, src)
}
func (c cbcEssiv) decrypt(dst, src []byte, s uint64) {
	cipher.NewCBCDecrypter(c.b, c.iv(s)).CryptBlocks(dst, src)
}

// cryptSectors en- or decrypts buf in place as consecutive 512-byte sectors.
func cryptSectors(c sectorCipher, buf []byte, encrypt bool) {
	for s := 0; s*512 < len(buf); s++ {
		sec := buf[s*512 : (s+1)*512]
		if encrypt {
			c.encrypt(sec, sec, uint64(s))
		} else {
			c.decrypt(sec, sec, uint64(s))
		}
	}
}

// computeDigest is the volume-key digest: PBKDF2(hash, vk, salt, iterations,
// len(digest)) (section 3.4).
func computeDigest(d *Digest, vk []byte, n int) ([]byte, error) {
	nh, err := hashByName(d.Hash)
	if err != nil {
		return nil, err
	}
	return pbkdf2.Key(nh, string(vk), d.Salt, d.Iterations, n)
}

// checkDigest reports whether vk matches digest d, in constant time.
func checkDigest(d *Digest, vk []byte) (bool, error) {
	got, err := computeDigest(d, vk, len(d.Digest))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, d.Digest) == 1, nil
}
