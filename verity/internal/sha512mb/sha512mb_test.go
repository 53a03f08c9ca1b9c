package sha512mb

import (
	"crypto/sha512"
	"encoding"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	prefixLens  = []int{0, 1, 32, 63, 64, 111, 112, 127, 128, 129, 200}
	messageLens = []int{0, 1, 111, 112, 127, 128, 129, 239, 4096, 4097, 65536}
)

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// impls are the implementations under test, each hashing a fixed number of
// messages of one length. SumN with 7 messages goes through a full group of
// four and a group of three with an idle lane on a machine with AVX2 only,
// and through eight lanes with one idle on a machine with AVX-512; SumN with
// 19 goes through two full groups of eight and three messages on AVX2;
// sum4/1 and sum8/1 have idle lanes; generic is the crypto/sha512 fallback
// that other machines use.
var impls = []struct {
	name  string
	n     int  // number of messages
	avail bool // whether the CPU can run it
	sum   func(p *Prefixed, dst [][Size]byte, msgs [][]byte)
}{
	{"SumN", 7, true, (*Prefixed).SumN},
	{"SumN/19", 19, true, (*Prefixed).SumN},
	{"sum4", 4, have4, (*Prefixed).sum4},
	{"sum4/1", 1, have4, (*Prefixed).sum4},
	{"sum8", 8, have8, (*Prefixed).sum8},
	{"sum8/1", 1, have8, (*Prefixed).sum8},
	{"sum8/5", 5, have8, (*Prefixed).sum8},
	{"generic", 3, true, (*Prefixed).sumNGeneric},
	{"Sum", 1, true, func(p *Prefixed, dst [][Size]byte, msgs [][]byte) {
		p.Sum(&dst[0], msgs[0])
	}},
}

// runnable returns the function a subtest checks: the implementation
// itself, or, on a CPU that cannot run its kernel, what SumN uses there
// instead (said in the log) — a machine is tested on what it runs, never
// skipped.
func runnable(t *testing.T, name string, avail bool, sum func(*Prefixed, [][Size]byte, [][]byte)) func(*Prefixed, [][Size]byte, [][]byte) {
	t.Helper()
	if avail {
		return sum
	}
	t.Logf("this machine cannot run %s (AVX2: %v, AVX-512: %v): checking SumN's path on it instead", name, have4, have8)
	return (*Prefixed).SumN
}

// check hashes msgs with sum and compares with crypto/sha512.
func check(t *testing.T, sum func(*Prefixed, [][Size]byte, [][]byte), prefix []byte, msgs [][]byte) {
	t.Helper()
	got := make([][Size]byte, len(msgs))
	sum(NewPrefixed(prefix), got, msgs)
	want := make([][Size]byte, len(msgs))
	for i, m := range msgs {
		want[i] = sha512.Sum512(append(append([]byte(nil), prefix...), m...))
	}
	if slices.Equal(want, got) {
		return
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("prefix %d bytes, %d messages of %d bytes (-want +got):\n%s",
			len(prefix), len(msgs), len(msgs[0]), diff)
	}
}

func randMsgs(r *rand.Rand, n, size int) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = randBytes(r, size)
	}
	return msgs
}

func TestSum(t *testing.T) {
	t.Logf("AVX2 4 lanes: %v", have4)
	r := rand.New(rand.NewPCG(1, 2))
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			sum := runnable(t, im.name, im.avail, im.sum)
			for _, pl := range prefixLens {
				for _, ml := range messageLens {
					check(t, sum, randBytes(r, pl), randMsgs(r, im.n, ml))
				}
			}
		})
	}
}

// TestAllLengths covers every prefix length up to two blocks against every
// message length up to three blocks, so that each split of the stream into
// head, body and tail blocks occurs.
func TestAllLengths(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	prefix := randBytes(r, 2*blockSize)
	const maxLen = 3 * blockSize
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			sum := runnable(t, im.name, im.avail, im.sum)
			msgs := randMsgs(r, im.n, maxLen)
			short := make([][]byte, len(msgs))
			for pl := 0; pl <= len(prefix); pl += 3 {
				for ml := 0; ml <= maxLen; ml++ {
					for i := range msgs {
						short[i] = msgs[i][:ml]
					}
					check(t, sum, prefix[:pl], short)
					if t.Failed() {
						return
					}
				}
			}
		})
	}
}

// TestSumNCounts covers the split of a SumN call into groups of four, a
// group of three and one or two single messages.
func TestSumNCounts(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	salt := randBytes(r, 32)
	for n := 0; n <= 13; n++ {
		msgs := randMsgs(r, n, 4096)
		if n == 0 {
			NewPrefixed(salt).SumN(nil, nil)
			continue
		}
		check(t, (*Prefixed).SumN, salt, msgs)
	}
}

// TestVerity is the dm-verity case: a 32-byte salt and 4096-byte blocks,
// including lanes with equal messages and a known digest.
func TestVerity(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	salt := randBytes(r, 32)
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			sum := runnable(t, im.name, im.avail, im.sum)
			msgs := randMsgs(r, im.n, 4096)
			check(t, sum, salt, msgs)
			for i := range msgs {
				msgs[i] = msgs[0]
			}
			check(t, sum, salt, msgs)

			// SHA-512 of 4128 zero bytes, as 32 zero bytes of salt and
			// 4096 of block.
			zero := make([]byte, 4096)
			for i := range msgs {
				msgs[i] = zero
			}
			got := make([][Size]byte, len(msgs))
			sum(NewPrefixed(make([]byte, 32)), got, msgs)
			want := [Size]byte{ // sha512sum of head -c 4128 /dev/zero
				0x14, 0x8c, 0x05, 0xba, 0x88, 0x3d, 0x1e, 0x15,
				0x21, 0x04, 0x92, 0xd4, 0x65, 0x60, 0x0a, 0xbb,
				0xc5, 0x17, 0xee, 0xc3, 0xd6, 0x01, 0xcf, 0xce,
				0x6b, 0x05, 0xb9, 0xb0, 0xe0, 0xb4, 0xc7, 0xc5,
				0xba, 0xdf, 0x1f, 0xc2, 0x2a, 0x5f, 0xf5, 0xc6,
				0x4e, 0x08, 0xc7, 0xae, 0x2c, 0x9a, 0x80, 0x1b,
				0xed, 0xbc, 0x11, 0x08, 0x77, 0xaa, 0x07, 0xc6,
				0x8d, 0xaa, 0x86, 0x5a, 0x5c, 0x36, 0x45, 0xe3,
			}
			for i, d := range got {
				if d != want {
					t.Errorf("message %d: SHA-512 of 4128 zero bytes = %x, want %x", i, d, want)
				}
			}
		})
	}
}

// TestMidstate checks the hash value after the prefix's whole blocks from
// each kernel against the state crypto/sha512 marshals: "sha\x07", then the
// eight words big-endian.
func TestMidstate(t *testing.T) {
	for _, k := range []struct {
		name  string
		avail bool
		k     kernel
	}{{"block4", have4, avx2}, {"block8", have8, avx512}} {
		t.Run(k.name, func(t *testing.T) { testMidstate(t, k.name, k.avail, k.k) })
	}
}

func testMidstate(t *testing.T, name string, avail bool, k kernel) {
	r := rand.New(rand.NewPCG(15, 16))
	if !avail {
		// SumN then uses another kernel's midstate or none (and rehashes
		// the prefix), which check compares.
		sum := runnable(t, name, false, nil)
		for _, n := range []int{128, 256, 1280} {
			check(t, sum, randBytes(r, n), randMsgs(r, 3, 100))
		}
		return
	}
	for _, n := range []int{128, 256, 1280} {
		b := randBytes(r, n)
		h := sha512.New()
		h.Write(b)
		state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var want [8]uint64
		for j := range want {
			want[j] = binary.BigEndian.Uint64(state[4+8*j:])
		}
		if diff := cmp.Diff(want, midstate(k, b)); diff != "" {
			t.Errorf("%d bytes (-want +got):\n%s", n, diff)
		}
	}
}

// TestConcurrent runs one Prefixed from several goroutines (for -race).
func TestConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	p := NewPrefixed(randBytes(r, 32))
	const goroutines = 4
	msgs := randMsgs(r, 7, 4096)
	want := make([][Size]byte, len(msgs))
	p.sumNGeneric(want, msgs)
	errs := make(chan error, goroutines)
	for g := range goroutines {
		go func() {
			got := make([][Size]byte, len(msgs))
			for range 20 {
				p.SumN(got, msgs)
				if diff := cmp.Diff(want, got); diff != "" {
					errs <- fmt.Errorf("goroutine %d (-want +got):\n%s", g, diff)
					return
				}
			}
			errs <- nil
		}()
	}
	for range goroutines {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestPrefixCopied(t *testing.T) {
	prefix := []byte("salt")
	p := NewPrefixed(prefix)
	prefix[0] = 'S'
	var d [Size]byte
	p.Sum(&d, []byte("x"))
	if d != sha512.Sum512([]byte("saltx")) {
		t.Error("NewPrefixed does not copy the prefix")
	}
}

func TestSumNPanics(t *testing.T) {
	tests := []struct {
		name string
		dst  int
		lens []int
	}{
		{"lengths differ", 2, []int{64, 65}},
		{"dst too short", 1, []int{64, 64}},
		{"dst too long", 3, []int{64, 64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("SumN did not panic")
				}
			}()
			msgs := make([][]byte, len(tt.lens))
			for i, n := range tt.lens {
				msgs[i] = make([]byte, n)
			}
			NewPrefixed(nil).SumN(make([][Size]byte, tt.dst), msgs)
		})
	}
}

func TestAllocs(t *testing.T) {
	p := NewPrefixed(make([]byte, 32))
	msgs := randMsgs(rand.New(rand.NewPCG(13, 14)), 19, 4096)
	dst := make([][Size]byte, len(msgs))
	for _, im := range impls {
		if !im.avail {
			continue
		}
		if n := testing.AllocsPerRun(20, func() { im.sum(p, dst[:im.n], msgs[:im.n]) }); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", im.name, n)
		}
	}
}

// The benchmarks hash salt ‖ block for a 32-byte salt and 4096-byte blocks;
// b.SetBytes counts the block bytes only.
const benchBlock = 4096

func benchData() (salt []byte, blocks [][]byte) {
	r := rand.New(rand.NewPCG(7, 8))
	return randBytes(r, 32), randMsgs(r, 64, benchBlock)
}

func BenchmarkCryptoSHA512(b *testing.B) {
	salt, blocks := benchData()
	h := sha512.New()
	var d [Size]byte
	b.SetBytes(benchBlock)
	i := 0
	for b.Loop() {
		h.Reset()
		h.Write(salt)
		h.Write(blocks[i%len(blocks)])
		h.Sum(d[:0])
		i++
	}
}

// BenchmarkSumN hashes n blocks per call through SumN: 2 through
// crypto/sha512; with AVX-512, 8 and 64 keep all eight lanes busy and 3 to 7
// run with idle lanes (against 2, the choice of three in SumN); with AVX2
// only, 3 has an idle lane and 4 none.
func BenchmarkSumN(b *testing.B) {
	salt, blocks := benchData()
	p := NewPrefixed(salt)
	dst := make([][Size]byte, len(blocks))
	for _, n := range []int{2, 3, 4, 5, 6, 7, 8, 64} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n) * benchBlock)
			i := 0
			for b.Loop() {
				p.SumN(dst[:n], blocks[i:i+n])
				if i += n; i+n > len(blocks) {
					i = 0
				}
			}
		})
	}
}
