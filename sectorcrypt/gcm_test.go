package sectorcrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"testing"
)

// TestGCMRandom: every sector gets its own IV, stored after its GCM tag;
// the standard library opens each sector with the associated data
// dm-crypt builds (le64 sector ‖ IV); Open refuses a changed ciphertext,
// tag, IV or sector number.
func TestGCMRandom(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	for _, s := range []int{512, 4096} {
		c, err := NewGCMRandom(key, s)
		if err != nil {
			t.Fatal(err)
		}
		if c.TagSize() != 28 {
			t.Fatalf("TagSize %d, want 28 (dm-integrity's integrity:28:aead)", c.TagSize())
		}
		n := 5
		src := bytes.Repeat([]byte("sector!!"), n*s/8)
		dst := make([]byte, len(src))
		tags := make([]byte, n*28)
		const first = 800
		c.Seal(dst, tags, src, first)
		b, _ := aes.NewCipher(key)
		ref, _ := cipher.NewGCM(b)
		seen := map[string]bool{}
		for k := range n {
			num := uint64(first + k*s/512)
			tag, iv := tags[k*28:k*28+16], tags[k*28+16:(k+1)*28]
			if seen[string(iv)] {
				t.Fatalf("%d-byte sectors: IV %x used twice", s, iv)
			}
			seen[string(iv)] = true
			ad := binary.LittleEndian.AppendUint64(nil, num)
			ad = append(ad, iv...)
			plain, err := ref.Open(nil, iv, append(append([]byte{}, dst[k*s:(k+1)*s]...), tag...), ad)
			if err != nil || !bytes.Equal(plain, src[k*s:(k+1)*s]) {
				t.Fatalf("%d-byte sectors: sector %d does not open with crypto/cipher (%v)", s, k, err)
			}
			out := make([]byte, s)
			if err := c.Open(out, dst[k*s:(k+1)*s], tags[k*28:(k+1)*28], num); err != nil || !bytes.Equal(out, plain) {
				t.Fatalf("%d-byte sectors: Open sector %d: %v", s, k, err)
			}
		}
		sector := append([]byte{}, dst[:s]...)
		tag := append([]byte{}, tags[:28]...)
		for _, tc := range []struct {
			name   string
			mutate func(sector, tag []byte) uint64
		}{
			{"ciphertext", func(sec, _ []byte) uint64 { sec[9] ^= 1; return first }},
			{"tag", func(_, tg []byte) uint64 { tg[3] ^= 1; return first }},
			{"iv", func(_, tg []byte) uint64 { tg[20] ^= 1; return first }},
			{"sector number", func(_, _ []byte) uint64 { return first + 8 }},
		} {
			sc, tg := append([]byte{}, sector...), append([]byte{}, tag...)
			num := tc.mutate(sc, tg)
			if err := c.Open(make([]byte, s), sc, tg, num); !errors.Is(err, ErrAuth) {
				t.Errorf("%d-byte sectors, changed %s: %v, want %v", s, tc.name, err, ErrAuth)
			}
		}
	}
	if _, err := NewGCMRandom(make([]byte, 20), 4096); err == nil {
		t.Error("a 20-byte key was accepted")
	}
	if _, err := ForSegment("aes-gcm-random", "hmac(sha256)", key, 4096); err == nil {
		t.Error("aes-gcm-random with hmac was accepted")
	}
}
