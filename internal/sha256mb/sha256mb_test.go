package sha256mb

import (
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	prefixLens  = []int{0, 1, 31, 32, 55, 56, 63, 64, 65, 100}
	messageLens = []int{0, 1, 55, 56, 63, 64, 65, 119, 4096, 4097, 65536}
)

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// impls are the implementations under test, each hashing a fixed number of
// messages of one length. SumN with 19 messages goes through all three
// paths on a machine with AVX-512 and the SHA extensions (16 + 2 + 1); the
// others are the paths on their own (sum16/9 with 7 idle lanes), including
// the crypto/sha256 fallback that other machines use.
var impls = []struct {
	name  string
	n     int  // number of messages
	avail bool // whether the CPU can run it
	sum   func(p *Prefixed, dst [][Size]byte, msgs [][]byte)
}{
	{"SumN", 19, true, (*Prefixed).SumN},
	{"sum16", 16, have16, sum16},
	{"sum16/9", 9, have16, sum16},
	{"sum2", 2, haveX2, func(p *Prefixed, dst [][Size]byte, msgs [][]byte) {
		var ln lanes
		p.initLanes(&ln, len(msgs[0]), 2)
		p.sum2(&dst[0], &dst[1], msgs[0], msgs[1], &ln)
	}},
	{"generic", 3, true, (*Prefixed).sumNGeneric},
	{"Sum", 1, true, func(p *Prefixed, dst [][Size]byte, msgs [][]byte) {
		p.Sum(&dst[0], msgs[0])
	}},
}

// sum16 is Prefixed.sum16 with lanes of its own.
func sum16(p *Prefixed, dst [][Size]byte, msgs [][]byte) {
	var ln lanes
	p.initLanes(&ln, len(msgs[0]), len(msgs))
	p.sum16(dst, msgs, &ln)
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
	t.Logf("this machine cannot run %s (AVX-512 F+BW: %v, SHA extensions: %v): checking SumN's path on it instead", name, have16, haveX2)
	return (*Prefixed).SumN
}

// check hashes msgs with sum and compares with crypto/sha256.
func check(t *testing.T, sum func(*Prefixed, [][Size]byte, [][]byte), prefix []byte, msgs [][]byte) {
	t.Helper()
	got := make([][Size]byte, len(msgs))
	sum(NewPrefixed(prefix), got, msgs)
	want := make([][Size]byte, len(msgs))
	for i, m := range msgs {
		want[i] = sha256.Sum256(append(append([]byte(nil), prefix...), m...))
	}
	if slices.Equal(want, got) {
		return // cmp.Diff is slow for the many calls of TestAllLengths
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
	t.Logf("AVX-512 16 lanes: %v; SHA extensions 2 lanes: %v", have16, haveX2)
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
	prefix := randBytes(r, 2*64)
	const maxLen = 3 * 64
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			sum := runnable(t, im.name, im.avail, im.sum)
			msgs := randMsgs(r, im.n, maxLen)
			short := make([][]byte, len(msgs))
			for pl := 0; pl <= len(prefix); pl++ {
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

// TestSumNCounts covers the split of a SumN call into groups of 16, pairs
// and single messages.
func TestSumNCounts(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	salt := randBytes(r, 32)
	for n := 0; n <= 50; n++ {
		msgs := randMsgs(r, n, 4096)
		if n == 0 {
			NewPrefixed(salt).SumN(nil, nil)
			continue
		}
		check(t, (*Prefixed).SumN, salt, msgs)
	}
}

// TestVerity is the dm-verity case: a 32-byte salt and 4096-byte blocks,
// including lanes with equal messages and a known digest, so that a bug
// shared with crypto/sha256 (impossible in practice, but cheap to rule out)
// would show.
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

			// SHA-256 of 4128 zero bytes, as 32 zero bytes of salt and
			// 4096 of block.
			zero := make([]byte, 4096)
			for i := range msgs {
				msgs[i] = zero
			}
			got := make([][Size]byte, len(msgs))
			sum(NewPrefixed(make([]byte, 32)), got, msgs)
			want := [Size]byte{ // sha256sum of head -c 4128 /dev/zero
				0x2e, 0x53, 0x4e, 0xf0, 0x10, 0x7d, 0x59, 0x2d,
				0x17, 0x06, 0xac, 0x38, 0xad, 0x58, 0x59, 0x6b,
				0x85, 0xef, 0x33, 0x75, 0xd3, 0x60, 0xa6, 0xd6,
				0x69, 0xf9, 0x74, 0x79, 0x2d, 0xf5, 0xcb, 0x5a,
			}
			for i, d := range got {
				if d != want {
					t.Errorf("message %d: SHA-256 of 4128 zero bytes = %x, want %x", i, d, want)
				}
			}
		})
	}
}

// TestMidstate checks the hash value after the prefix's whole blocks, from
// either kernel, against the state crypto/sha256 marshals: "sha\x03", then
// the eight words big-endian.
func TestMidstate(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	kernels := []struct {
		name     string
		avail    bool
		midstate func([]byte) [8]uint32
	}{
		{"X2", haveX2, midstateX2},
		{"16", have16, midstate16},
	}
	for _, k := range kernels {
		t.Run(k.name, func(t *testing.T) {
			if !k.avail {
				// NewPrefixed then keeps no midstate: SumN rehashes
				// the prefix, which check compares.
				sum := runnable(t, "midstate"+k.name, false, nil)
				for _, n := range []int{64, 128, 640} {
					check(t, sum, randBytes(r, n), randMsgs(r, 3, 100))
				}
				return
			}
			for _, n := range []int{64, 128, 640} {
				b := randBytes(r, n)
				h := sha256.New()
				h.Write(b)
				state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				var want [8]uint32
				for j := range want {
					want[j] = binary.BigEndian.Uint32(state[4+4*j:])
				}
				if diff := cmp.Diff(want, k.midstate(b)); diff != "" {
					t.Errorf("%d bytes (-want +got):\n%s", n, diff)
				}
			}
		})
	}
}

// TestConcurrent runs one Prefixed from several goroutines (for -race).
func TestConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	salt := randBytes(r, 32)
	p := NewPrefixed(salt)
	const goroutines = 4
	msgs := randMsgs(r, 19, 4096)
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
	if d != sha256.Sum256([]byte("saltx")) {
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

// The benchmarks hash salt ‖ block for a 32-byte salt and 4096-byte blocks,
// the dm-verity default; b.SetBytes counts the block bytes only.
const benchBlock = 4096

func benchData() (salt []byte, blocks [][]byte) {
	r := rand.New(rand.NewPCG(7, 8))
	// 64 blocks, 256 KiB: about what stays in L2 between reading and hashing.
	return randBytes(r, 32), randMsgs(r, 64, benchBlock)
}

func BenchmarkCryptoSHA256(b *testing.B) {
	salt, blocks := benchData()
	h := sha256.New()
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

func BenchmarkSum(b *testing.B) {
	salt, blocks := benchData()
	p := NewPrefixed(salt)
	var d [Size]byte
	b.SetBytes(benchBlock)
	i := 0
	for b.Loop() {
		p.Sum(&d, blocks[i%len(blocks)])
		i++
	}
}

// BenchmarkSumN hashes n blocks per call: 2 uses the SHA extensions' two
// lanes, 16 and 64 the AVX-512 sixteen lanes (where the CPU has them).
func BenchmarkSumN(b *testing.B) {
	salt, blocks := benchData()
	p := NewPrefixed(salt)
	dst := make([][Size]byte, len(blocks))
	for _, n := range []int{2, 16, 64} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n) * benchBlock)
			i := 0
			for b.Loop() {
				p.SumN(dst[:n], blocks[i:i+n])
				i = (i + n) % len(blocks)
			}
		})
	}
}

// BenchmarkSumNDRAM is BenchmarkSumN's 64-message batches over 256 MiB of
// messages, far more than the caches hold: every block comes from memory,
// as it does when dm-verity hashes a device from the page cache.
func BenchmarkSumNDRAM(b *testing.B) {
	const total = 256 << 20
	r := rand.New(rand.NewPCG(9, 10))
	salt := randBytes(r, 32)
	buf := randBytes(r, total)
	p := NewPrefixed(salt)
	const n = 64
	dst := make([][Size]byte, n)
	msgs := make([][]byte, n)
	b.SetBytes(n * benchBlock)
	off := 0
	for b.Loop() {
		for j := range msgs {
			msgs[j] = buf[off+j*benchBlock : off+(j+1)*benchBlock]
		}
		p.SumN(dst, msgs)
		off = (off + n*benchBlock) % total
	}
}
