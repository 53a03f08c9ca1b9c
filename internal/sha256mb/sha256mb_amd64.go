//go:build !purego

package sha256mb

import "golang.org/x/sys/cpu"

// haveX2 reports whether blockX2 may run: it needs the SHA extensions
// (CPUID.(EAX=07H,ECX=0):EBX.SHA[bit 29], which golang.org/x/sys/cpu does not
// report), SSSE3 (PSHUFB, PALIGNR) and SSE4.1 (PBLENDW).
var haveX2 = cpu.X86.HasSSSE3 && cpu.X86.HasSSE41 && hasSHA()

func hasSHA() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, ebx, _, _ := cpuid(7, 0)
	return ebx&(1<<29) != 0
}

// cpuid executes the CPUID instruction.
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

// blockX2 runs the SHA-256 compression function over the 64-byte blocks of
// p0 with hash value *h0, and over those of p1 with *h1, interleaving the two.
// len(p0) and len(p1) must be the same multiple of 64.
//
//go:noescape
func blockX2(h0, h1 *[8]uint32, p0, p1 []byte)

// have16 reports whether block16 may run: it needs AVX-512 F (and the OS
// saving the ZMM registers, which cpu.X86.HasAVX512F includes) and BW (for
// VPSHUFB on ZMM registers).
var have16 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW

// block16 runs the SHA-256 compression function on sixteen lanes: for each
// lane l, over the n 64-byte blocks at p[l] with the hash value
// h[0][l]..h[7][l].
// With a carry buffer, every p[l] must be 32 bytes past a multiple of 64
// ([shifted]): block16 then loads aligned 64-byte lines, including the one
// that holds the 32 bytes before p[l] and the one that holds the 32 bytes
// after the last block, and keeps one line per lane in carry.
//
//go:noescape
func block16(h *[8][16]uint32, p *[16]*byte, n int, carry *[carrySize]byte)
