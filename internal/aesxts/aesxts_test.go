package aesxts

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/xts"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSbox(t *testing.T) {
	// FIPS 197 Figure 7.
	for in, want := range map[byte]byte{0x00: 0x63, 0x01: 0x7c, 0x53: 0xed, 0x10: 0xca, 0xff: 0x16, 0x9a: 0xb8} {
		if sbox[in] != want {
			t.Errorf("S(%#02x) = %#02x, want %#02x", in, sbox[in], want)
		}
	}
}

func TestExpandKey(t *testing.T) {
	// FIPS 197 Appendix A.1 and A.3: the last round key.
	for _, tt := range []struct{ key, last string }{
		{"2b7e151628aed2a6abf7158809cf4f3c", "d014f9a8c9ee2589e13f0cc8b6630ca6"},
		{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "fe4890d1e6188d0b046df344706c631e"},
	} {
		k := expandKey(unhex(t, tt.key))
		if got := hex.EncodeToString(k.rk[k.rounds][:]); got != tt.last {
			t.Errorf("key %s: last round key %s, want %s", tt.key, got, tt.last)
		}
		if !bytes.Equal(k.rk[0][:], unhex(t, tt.key)[:16]) {
			t.Errorf("key %s: round key 0 is not the key's first 16 bytes", tt.key)
		}
	}
}

// kernelState says in the log which path this machine tests.
func kernelState(t *testing.T) {
	t.Helper()
	if !haveVAES {
		t.Logf("this machine has no VAES + AVX-512: Encrypt runs golang.org/x/crypto/xts here")
	}
}

// TestIEEE1619 checks the standard's test vectors, 32-byte and 512-byte
// data units (the 512-byte ones go through the kernel where it runs).
func TestIEEE1619(t *testing.T) {
	kernelState(t)
	f, err := os.Open("testdata/ieee1619.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fl := strings.Fields(line)
		unit, err := strconv.ParseUint(fl[1], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		key, pt, want := unhex(t, fl[0]), unhex(t, fl[2]), unhex(t, fl[3])
		c, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(pt))
		c.Encrypt(got, pt, unit)
		if !bytes.Equal(got, want) {
			t.Errorf("vector %d (%d-byte key, %d-byte unit): encryption differs:\n got %x\nwant %x", n, len(key), len(pt), got, want)
		}
		back := make([]byte, len(got))
		c.Decrypt(back, got, unit)
		if !bytes.Equal(back, pt) {
			t.Errorf("vector %d: decryption does not give the plaintext back", n)
		}
		n++
	}
	if n < 5 {
		t.Fatalf("read %d vectors, want at least 5", n)
	}
}

// TestAgainstXTS compares Encrypt with golang.org/x/crypto/xts for both key
// sizes, data units from one block to 64 KiB (kernel and fallback sizes),
// unit numbers whose tweaks differ in every byte, in place and not.
func TestAgainstXTS(t *testing.T) {
	kernelState(t)
	r := rand.New(rand.NewPCG(1, 2))
	sizes := []int{16, 48, 240, 256, 512, 768, 1024, 4096, 4112, 65536}
	units := []uint64{0, 1, 7, 0x3333333333, 1<<63 | 12345, ^uint64(0)}
	for _, keyLen := range []int{32, 64} {
		for _, size := range sizes {
			for _, unit := range units {
				key := make([]byte, keyLen)
				pt := make([]byte, size)
				for i := range key {
					key[i] = byte(r.Uint32())
				}
				for i := range pt {
					pt[i] = byte(r.Uint32())
				}
				ref, err := xts.NewCipher(aes.NewCipher, key)
				if err != nil {
					t.Fatal(err)
				}
				want := make([]byte, size)
				ref.Encrypt(want, pt, unit)
				c, err := New(key)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]byte, size)
				c.Encrypt(got, pt, unit)
				if !bytes.Equal(got, want) {
					t.Fatalf("key %d bytes, unit %d bytes, number %#x: differs from x/crypto/xts at byte %d",
						keyLen, size, unit, firstDiff(got, want))
				}
				inPlace := append([]byte(nil), pt...)
				c.Encrypt(inPlace, inPlace, unit)
				if !bytes.Equal(inPlace, want) {
					t.Fatalf("key %d bytes, unit %d bytes: in-place encryption differs", keyLen, size)
				}
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestEncryptUnits compares EncryptUnits with x/crypto/xts unit by unit:
// plain64 steps of 1 (512-byte sectors) and 8 (4096-byte sectors), unit
// numbers that wrap around 2^64, unit sizes through the kernel and not.
func TestEncryptUnits(t *testing.T) {
	kernelState(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, keyLen := range []int{32, 64} {
		key := make([]byte, keyLen)
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		c, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := xts.NewCipher(aes.NewCipher, key)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			unit, units int
			first, step uint64
		}{
			{512, 1, 0, 1}, {512, 33, 5, 1}, {4096, 9, 8, 8}, {256, 4, ^uint64(0) - 1, 1},
			{48, 5, 100, 1}, {4096, 3, 1 << 40, 8}, {512, 7, 3, 0},
		} {
			src := make([]byte, tt.unit*tt.units)
			for i := range src {
				src[i] = byte(r.Uint32())
			}
			want := make([]byte, len(src))
			for k := range tt.units {
				ref.Encrypt(want[k*tt.unit:(k+1)*tt.unit], src[k*tt.unit:(k+1)*tt.unit], tt.first+uint64(k)*tt.step)
			}
			got := make([]byte, len(src))
			c.EncryptUnits(got, src, tt.unit, tt.first, tt.step)
			if !bytes.Equal(got, want) {
				t.Errorf("key %d bytes, %d units of %d bytes from %#x step %d: differs at byte %d",
					keyLen, tt.units, tt.unit, tt.first, tt.step, firstDiff(got, want))
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	for _, n := range []int{0, 16, 31, 48, 100, 128} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New with a %d-byte key: no error", n)
		}
	}
	c, err := New(make([]byte, 64))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		dst, src int
	}{{"empty", 0, 0}, {"partial block", 32, 31}, {"short dst", 16, 32}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Encrypt did not panic", tt.name)
				}
			}()
			c.Encrypt(make([]byte, tt.dst), make([]byte, tt.src), 0)
		}()
	}
	for _, tt := range []struct {
		name       string
		unit, size int
	}{{"zero unit", 0, 512}, {"unit not blocks", 500, 1000}, {"partial unit", 512, 768}, {"no data", 512, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("EncryptUnits, %s: did not panic", tt.name)
				}
			}()
			c.EncryptUnits(make([]byte, tt.size), make([]byte, tt.size), tt.unit, 0, 1)
		}()
	}
}

// The benchmarks encrypt 4096-byte data units, the sector size of LUKS2
// volumes on 4K devices (512-byte ones have the same per-block cost plus
// the tweak per unit).
func benchUnits(b *testing.B, enc func(dst, src []byte, unit uint64), size int) {
	buf := make([]byte, size)
	b.SetBytes(int64(size))
	u := uint64(0)
	for b.Loop() {
		enc(buf, buf, u)
		u++
	}
}

func BenchmarkEncrypt(b *testing.B) {
	for _, keyLen := range []int{32, 64} {
		c, _ := New(make([]byte, keyLen))
		ref, _ := xts.NewCipher(aes.NewCipher, make([]byte, keyLen))
		name := map[int]string{32: "AES-128", 64: "AES-256"}[keyLen]
		for _, size := range []int{512, 4096} {
			b.Run(name+"/"+strconv.Itoa(size)+"/aesxts", func(b *testing.B) { benchUnits(b, c.Encrypt, size) })
			b.Run(name+"/"+strconv.Itoa(size)+"/aesxts-units", func(b *testing.B) {
				// 64 KiB of consecutive units per call, as a volume writer
				// encrypts them.
				buf := make([]byte, 64<<10)
				b.SetBytes(int64(len(buf)))
				for b.Loop() {
					c.EncryptUnits(buf, buf, size, 0, uint64(size/512))
				}
			})
			b.Run(name+"/"+strconv.Itoa(size)+"/x-crypto-xts", func(b *testing.B) { benchUnits(b, ref.Encrypt, size) })
		}
	}
}
