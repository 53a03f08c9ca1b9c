//go:build !purego

package sha512mb

import "golang.org/x/sys/cpu"

// have4 reports whether block4 may run: it needs AVX2 (and the OS saving the
// YMM registers, which cpu.X86.HasAVX2 includes).
var have4 = cpu.X86.HasAVX2

// block4 runs the SHA-512 compression function on four lanes: for each lane
// l, over the n 128-byte blocks at p[l] with the hash value h[0][l]..h[7][l].
//
//go:noescape
func block4(h *[8][lanes]uint64, p *[lanes]*byte, n int)
