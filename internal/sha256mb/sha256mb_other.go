//go:build !amd64 || purego

package sha256mb

const (
	haveX2 = false
	have16 = false
)

func blockX2(h0, h1 *[8]uint32, p0, p1 []byte) {
	panic("sha256mb: blockX2 without assembly")
}

func block16(h *[8][16]uint32, p *[16]*byte, n int, carry *[carrySize]byte) {
	panic("sha256mb: block16 without assembly")
}
