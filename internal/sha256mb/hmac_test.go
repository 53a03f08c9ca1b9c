package sha256mb

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHMACRFC4231 checks the HMAC-SHA-256 test cases 1, 2 and 6 of RFC 4231
// §4 (short key, key shorter than the output, key longer than a block).
func TestHMACRFC4231(t *testing.T) {
	rep := func(b byte, n int) []byte {
		s := make([]byte, n)
		for i := range s {
			s[i] = b
		}
		return s
	}
	for _, tt := range []struct {
		name     string
		key, msg []byte
		want     string
	}{
		{"case 1", rep(0x0b, 20), []byte("Hi There"), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{"case 2", []byte("Jefe"), []byte("what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{"case 6", rep(0xaa, 131), []byte("Test Using Larger Than Block-Size Key - Hash Key First"), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
	} {
		var d [1][Size]byte
		NewHMAC(tt.key).SumN(d[:], [][]byte{tt.msg})
		if got := hex.EncodeToString(d[0][:]); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestHMACAgainstStdlib compares SumN with crypto/hmac for group sizes that
// take every kernel path (16 lanes, pairs, single messages) and more than
// one batch, and for message lengths around the block boundaries, including
// dm-crypt's 24-byte associated data ahead of a 512- or 4096-byte sector.
func TestHMACAgainstStdlib(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, keyLen := range []int{0, 32, 64, 65, 100} {
		key := randBytes(r, keyLen)
		h := NewHMAC(key)
		for _, size := range []int{0, 1, 55, 56, 64, 536, 4120} {
			for _, n := range []int{1, 2, 9, 16, 17, 70, 130} {
				msgs := randMsgs(r, n, size)
				got := make([][Size]byte, n)
				h.SumN(got, msgs)
				want := make([][Size]byte, n)
				for i, m := range msgs {
					mac := hmac.New(sha256.New, key)
					mac.Write(m)
					mac.Sum(want[i][:0])
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("key %d bytes, %d messages of %d bytes (-want +got):\n%s", keyLen, n, size, diff)
				}
			}
		}
	}
}

func TestHMACAllocs(t *testing.T) {
	h := NewHMAC(make([]byte, 32))
	msgs := randMsgs(rand.New(rand.NewPCG(23, 24)), 70, 536)
	dst := make([][Size]byte, len(msgs))
	if n := testing.AllocsPerRun(10, func() { h.SumN(dst, msgs) }); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}

// BenchmarkHMAC tags 512-byte sectors with their 24 bytes of associated
// data, 64 at a time, against crypto/hmac one by one.
func BenchmarkHMAC(b *testing.B) {
	r := rand.New(rand.NewPCG(25, 26))
	key := randBytes(r, 32)
	msgs := randMsgs(r, 64, 536)
	dst := make([][Size]byte, len(msgs))
	b.Run("SumN", func(b *testing.B) {
		b.SetBytes(64 * 536)
		h := NewHMAC(key)
		for b.Loop() {
			h.SumN(dst, msgs)
		}
	})
	b.Run("crypto-hmac", func(b *testing.B) {
		b.SetBytes(64 * 536)
		mac := hmac.New(sha256.New, key)
		for b.Loop() {
			for i, m := range msgs {
				mac.Reset()
				mac.Write(m)
				mac.Sum(dst[i][:0])
			}
		}
	})
}
