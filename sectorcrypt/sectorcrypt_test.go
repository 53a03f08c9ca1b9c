package sectorcrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"hash"
	"math/rand/v2"
	"testing"

	"golang.org/x/crypto/xts"
)

// reference seals one sector with the standard library and x/crypto/xts,
// spelled out as dm-crypt's crypt_convert_block_aead lays the request out.
func reference(t *testing.T, newHash func() hash.Hash, vk, plain []byte, sector uint64) (ct, tag []byte) {
	t.Helper()
	macSize := newHash().Size()
	encKey, macKey := vk[:len(vk)-macSize], vk[len(vk)-macSize:]
	x, err := xts.NewCipher(aes.NewCipher, encKey)
	if err != nil {
		t.Fatal(err)
	}
	ct = make([]byte, len(plain))
	x.Encrypt(ct, plain, sector)
	ad := make([]byte, adSize)
	binary.LittleEndian.PutUint64(ad, sector)     // sector_LE
	binary.LittleEndian.PutUint64(ad[8:], sector) // IV: plain64
	m := hmac.New(newHash, macKey)
	m.Write(ad)
	m.Write(ct)
	return ct, m.Sum(nil)
}

func TestSealAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, alg := range []struct {
		integrity string
		hash      func() hash.Hash
		keyLens   []int
	}{
		{"hmac(sha256)", sha256.New, []int{64, 96}},
		{"hmac(sha512)", sha512.New, []int{96, 128}},
	} {
		for _, keyLen := range alg.keyLens {
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
					c, err := New(alg.integrity, vk, size)
					if err != nil {
						t.Fatal(err)
					}
					ts := alg.hash().Size()
					if c.TagSize() != ts {
						t.Fatalf("%s: TagSize %d, want %d", alg.integrity, c.TagSize(), ts)
					}
					dst := make([]byte, len(src))
					tags := make([]byte, n*ts)
					c.Seal(dst, tags, src, first)
					for k := range n {
						ct, tag := reference(t, alg.hash, vk, src[k*size:(k+1)*size], first+uint64(k*size/512))
						if !bytes.Equal(dst[k*size:(k+1)*size], ct) {
							t.Fatalf("%s, key %d, %d-byte sectors, %d sectors: sector %d ciphertext differs", alg.integrity, keyLen, size, n, k)
						}
						if !bytes.Equal(tags[k*ts:(k+1)*ts], tag) {
							t.Fatalf("%s, key %d, %d-byte sectors, %d sectors: sector %d tag differs", alg.integrity, keyLen, size, n, k)
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
}

func TestBadInput(t *testing.T) {
	for _, tt := range []struct {
		name      string
		key, size int
	}{{"short key", 32, 512}, {"long key", 128, 512}, {"aes-192", 56, 512}, {"sector 256", 64, 256}, {"sector 8192", 64, 8192}} {
		if _, err := New("hmac(sha256)", make([]byte, tt.key), tt.size); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	for _, tt := range []struct {
		integrity string
		key       int
	}{{"hmac(sha512)", 96 - 32}, {"hmac(sha512)", 160}, {"hmac(sha1)", 52}, {"aead", 32}} {
		if _, err := New(tt.integrity, make([]byte, tt.key), 4096); err == nil {
			t.Errorf("%s with a %d-byte key: no error", tt.integrity, tt.key)
		}
	}
	c, err := New("hmac(sha256)", make([]byte, 64), 512)
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
	c, _ := New("hmac(sha256)", make([]byte, 96), 4096)
	buf := make([]byte, 1<<20)
	tags := make([]byte, len(buf)/4096*c.TagSize())
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		c.Seal(buf, tags, buf, 0)
	}
}
