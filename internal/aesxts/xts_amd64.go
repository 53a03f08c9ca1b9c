//go:build !purego

package aesxts

import "golang.org/x/sys/cpu"

// haveVAES reports whether encVAES may run: AVX-512 F and BW (ZMM registers,
// byte shifts within lanes), VAES on ZMM registers and VPCLMULQDQ on ZMM
// registers (the tweak reduction).
var haveVAES = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VAES && cpu.X86.HasAVX512VPCLMULQDQ

// encVAES encrypts n blocks (a multiple of 16) from src to dst with the
// round keys rk (rounds rounds: 10 or 14), the first four tweaks of the data
// unit being tw[0..3].
//
//go:noescape
func encVAES(rk *[maxRounds + 1][16]byte, rounds int, tw *[4][16]byte, dst, src *byte, n int)
