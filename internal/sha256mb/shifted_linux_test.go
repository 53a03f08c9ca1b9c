package sha256mb

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestShiftedLoads hashes sixteen messages laid out in a mapping between
// two inaccessible pages, each starting lead bytes into a cache line, so
// that the body blocks start 32 bytes into a line (block16's shifted loads,
// which also read the line before the first block and after the last) or
// not; once with the first message at the very start of the mapping and
// once with the last one as near its end as its alignment allows. The
// digests match crypto/sha256's, shifted says which loads block16 uses (on
// a CPU without AVX-512 SumN takes another path, checked the same way), and
// no load touched a guard page (it would have faulted).
func TestShiftedLoads(t *testing.T) {
	page := os.Getpagesize()
	r := rand.New(rand.NewPCG(11, 12))
	for _, tc := range []struct {
		prefix, size, lead int
		want               bool
	}{
		{32, 4096, 0, true},    // dm-verity: 32-byte salt, 4 KiB blocks
		{96, 4096, 0, true},    // one whole prefix block, then 32 bytes
		{0, 4096, 32, true},    // no prefix, messages 32 bytes into a line
		{32, 4096, 16, false},  // 32-byte salt, messages 16 bytes into a line
		{32, 4096, 32, false},  // 32-byte salt, the body on line boundaries
		{32, 33 * 64, 0, true}, // a body of 32 blocks
		{32, 96, 0, true},      // a body of one block
	} {
		for _, atEnd := range []bool{false, true} {
			name := fmt.Sprintf("prefix%d/size%d/lead%d/atEnd=%v", tc.prefix, tc.size, tc.lead, atEnd)
			t.Run(name, func(t *testing.T) {
				stride := (tc.size + 63) / 64 * 64
				n := (16*stride + 64 + page - 1) / page * page
				mem, err := unix.Mmap(-1, 0, n+2*page, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANON)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Munmap(mem)
				region := mem[page : page+n]
				if err := unix.Mprotect(region, unix.PROT_READ|unix.PROT_WRITE); err != nil {
					t.Fatal(err)
				}
				first := tc.lead
				if atEnd {
					last := (n-tc.size-tc.lead)/64*64 + tc.lead
					first = last - 15*stride
				}
				msgs := make([][]byte, 16)
				for i := range msgs {
					off := first + i*stride
					msgs[i] = region[off : off+tc.size : off+tc.size]
					copy(msgs[i], randBytes(r, tc.size))
				}
				prefix := randBytes(r, tc.prefix)
				p := NewPrefixed(prefix)
				steps, k := p.steps(tc.size)
				var body [16]*byte
				for _, st := range steps[:k] {
					if st.kind == bodyStep {
						for l, m := range msgs {
							body[l] = &m[st.off]
						}
					}
				}
				if got := shifted(&body); got != tc.want {
					t.Errorf("shifted = %v, want %v (body at %d into a line)", got, tc.want, uintptr(unsafe.Pointer(body[0]))%64)
				}
				got := make([][Size]byte, 16)
				p.SumN(got, msgs)
				want := make([][Size]byte, 16)
				for i, m := range msgs {
					want[i] = sha256.Sum256(append(append([]byte(nil), prefix...), m...))
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	}
}
