package sectorcrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/xts"
)

// reference seals one sector with the standard library and x/crypto/xts,
// spelled out as dm-crypt's crypt_convert_block_aead lays the request out.
func reference(t *testing.T, vk, plain []byte, sector uint64) (ct, tag []byte) {
	t.Helper()
	encKey, macKey := vk[:len(vk)-MACKeySize], vk[len(vk)-MACKeySize:]
	x, err := xts.NewCipher(aes.NewCipher, encKey)
	if err != nil {
		t.Fatal(err)
	}
	ct = make([]byte, len(plain))
	x.Encrypt(ct, plain, sector)
	ad := make([]byte, adSize)
	binary.LittleEndian.PutUint64(ad, sector)     // sector_LE
	binary.LittleEndian.PutUint64(ad[8:], sector) // IV: plain64
	m := hmac.New(sha256.New, macKey)
	m.Write(ad)
	m.Write(ct)
	return ct, m.Sum(nil)
}

func TestSealAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, keyLen := range []int{64, 96} {
		for _, size := range []int{512, 4096} {
			for _, n := range []int{1, 3, 64, 65, 130} {
				vk := make([]byte, keyLen)
				src := make([]byte, n*size)
				for i := range vk {
					vk[i] = byte(r.Uint32())
				}
				for i := range src {
					src[i] = byte(r.Uint32())
				}
				first := uint64(r.Uint32()) &^ 7
				c, err := NewHMACXTS(vk, size)
				if err != nil {
					t.Fatal(err)
				}
				dst := make([]byte, len(src))
				tags := make([]byte, n*TagSize)
				c.Seal(dst, tags, src, first)
				for k := range n {
					ct, tag := reference(t, vk, src[k*size:(k+1)*size], first+uint64(k*size/512))
					if !bytes.Equal(dst[k*size:(k+1)*size], ct) {
						t.Fatalf("key %d, %d-byte sectors, %d sectors: sector %d ciphertext differs", keyLen, size, n, k)
					}
					if !bytes.Equal(tags[k*TagSize:(k+1)*TagSize], tag) {
						t.Fatalf("key %d, %d-byte sectors, %d sectors: sector %d tag differs", keyLen, size, n, k)
					}
				}
				// In place gives the same.
				c.Seal(src, tags, src, first)
				if !bytes.Equal(src, dst) {
					t.Fatalf("in-place Seal differs")
				}
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	for _, tt := range []struct {
		name      string
		key, size int
	}{{"short key", 32, 512}, {"long key", 128, 512}, {"aes-192", 56, 512}, {"sector 256", 64, 256}, {"sector 8192", 64, 8192}} {
		if _, err := NewHMACXTS(make([]byte, tt.key), tt.size); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	c, err := NewHMACXTS(make([]byte, 64), 512)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name           string
		dst, tags, src int
	}{{"partial sector", 600, 64, 600}, {"short tags", 1024, 32, 1024}, {"short dst", 512, 64, 1024}, {"empty", 0, 0, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Seal did not panic", tt.name)
				}
			}()
			c.Seal(make([]byte, tt.dst), make([]byte, tt.tags), make([]byte, tt.src), 0)
		}()
	}
}

// BenchmarkSeal seals 1 MiB of 4096-byte sectors per call on one goroutine.
func BenchmarkSeal(b *testing.B) {
	c, _ := NewHMACXTS(make([]byte, 96), 4096)
	buf := make([]byte, 1<<20)
	tags := make([]byte, len(buf)/4096*TagSize)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		c.Seal(buf, tags, buf, 0)
	}
}
