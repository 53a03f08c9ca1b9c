//go:build !purego

package sha512mb

import "golang.org/x/sys/cpu"

// have4 reports whether block4 may run: it needs AVX2 (and the OS saving the
// YMM registers, which cpu.X86.HasAVX2 includes).
var have4 = cpu.X86.HasAVX2

// have8 reports whether block8 may run: it needs AVX-512 F (and the OS
// saving the ZMM registers, which cpu.X86.HasAVX512F includes) and BW (for
// VPSHUFB on ZMM registers).
var have8 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW

// block4 runs the SHA-512 compression function on lanes 0-3: for each lane
// l, over the n 128-byte blocks at p[l] with the hash value h[0][l]..h[7][l].
//
//go:noescape
func block4(h *[8][maxLanes]uint64, p *[maxLanes]*byte, n int)

// block8 is block4 on all eight lanes, with AVX-512.
//
//go:noescape
func block8(h *[8][maxLanes]uint64, p *[maxLanes]*byte, n int)
