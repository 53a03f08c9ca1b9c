package sha256mb

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sum24 hashes 24 messages of one length with block24 (an experiment).
func (p *Prefixed) sum24(dst [][Size]byte, msgs [][]byte) {
	var h [8][16]uint32
	for j := range h {
		for l := range h[j] {
			h[j][l] = p.h[j]
		}
	}
	var hx [8][8]uint32
	for l := range hx {
		hx[l] = toSHANI(&p.h)
	}
	var ln [2]lanes
	p.initLanes(&ln[0], len(msgs[0]), 16)
	p.initLanes(&ln[1], len(msgs[0]), 8)
	var ptrs [24]*byte
	for _, st := range ln[0].steps[:ln[0].k] {
		for l, m := range msgs[:24] {
			ptrs[l] = &ln[l/16].blocks(st, l%16, m)[0]
		}
		block24(&h, &hx, &ptrs, st.nb)
	}
	for l := range 16 {
		for j := range h {
			binary.BigEndian.PutUint32(dst[l][4*j:], h[j][l])
		}
	}
	for l := range hx {
		s := fromSHANI(&hx[l])
		putDigest(&dst[16+l], &s)
	}
}

func toSHANI(s *[8]uint32) [8]uint32 {
	return [8]uint32{s[5], s[4], s[1], s[0], s[7], s[6], s[3], s[2]}
}

func fromSHANI(x *[8]uint32) [8]uint32 {
	return [8]uint32{x[3], x[2], x[7], x[6], x[1], x[0], x[5], x[4]}
}

func TestSum24(t *testing.T) {
	if !have16 || !haveX2 {
		t.Skip("no AVX-512 and SHA extensions")
	}
	r := rand.New(rand.NewPCG(5, 6))
	salt := randBytes(r, 32)
	msgs := randMsgs(r, 24, 4096)
	got := make([][Size]byte, 24)
	NewPrefixed(salt).sum24(got, msgs)
	want := make([][Size]byte, 24)
	for i, m := range msgs {
		want[i] = sha256.Sum256(append(append([]byte(nil), salt...), m...))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
}

func BenchmarkSum24(b *testing.B) {
	salt, blocks := benchData()
	p := NewPrefixed(salt)
	dst := make([][Size]byte, 24)
	b.SetBytes(24 * benchBlock)
	i := 0
	for b.Loop() {
		p.sum24(dst, blocks[i:i+24])
		i = (i + 24) % 48
	}
}
