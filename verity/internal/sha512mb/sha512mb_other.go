//go:build !amd64 || purego

package sha512mb

const have4 = false

func block4(h *[8][lanes]uint64, p *[lanes]*byte, n int) {
	panic("sha512mb: block4 without assembly")
}
