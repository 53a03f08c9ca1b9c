//go:build !purego

package aesxts

import "golang.org/x/sys/cpu"

// haveVAES reports whether encUnitsVAES may run: AVX-512 F and BW (ZMM
// registers, byte shifts within lanes), VAES and VPCLMULQDQ on ZMM registers
// (the blocks, the tweak reduction), AES-NI with AVX (the tweak of each unit
// on an XMM register).
var haveVAES = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VAES &&
	cpu.X86.HasAVX512VPCLMULQDQ && cpu.X86.HasAES && cpu.X86.HasAVX

// encUnitsVAES encrypts units data units of unitBlocks blocks each (a
// multiple of 16) from src to dst, unit k with the number first + k*step,
// with the round keys rk1 of K1 and rk2 of K2 (rounds rounds: 10 or 14).
//
//go:noescape
func encUnitsVAES(rk1, rk2 *[maxRounds + 1][16]byte, rounds int, dst, src *byte, unitBlocks, units int, first, step uint64)
