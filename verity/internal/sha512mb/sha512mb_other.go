//go:build !amd64 || purego

package sha512mb

const (
	have4 = false
	have8 = false
)

func block4(h *[8][maxLanes]uint64, p *[maxLanes]*byte, n int) {
	panic("sha512mb: block4 without assembly")
}

func block8(h *[8][maxLanes]uint64, p *[maxLanes]*byte, n int) {
	panic("sha512mb: block8 without assembly")
}
