//go:build !purego

#include "textflag.h"

// XTS-AES encryption (IEEE 1619 §5.1) of consecutive data units with VAES on
// ZMM registers, sixteen blocks at a time, four in each register:
// C = E_K1(P ⊕ T) ⊕ T for each block with its tweak T. For each data unit
// the kernel encrypts the unit number with K2 (AES-NI on an XMM register)
// into T0, spreads T0·α^0..α^3 over the four lanes of Z0, and derives the
// other tweaks four lanes at a time with MULA4.
//
//	Z0-Z3     the tweaks of blocks 0-3, 4-7, 8-11 and 12-15 of the step
//	Z4-Z7     the blocks being encrypted
//	Z8-Z10    MULA4 scratch
//	Z11       the tweak of the unit as it is encrypted (X11), then scratch
//	Z12-Z13   per-lane shift counts for T0·α^lane
//	Z16-Z30   the round keys of K1, each broadcast to the four lanes
//	Z31       the reduction constant 0x87 in the low quadword of each lane
//
// Registers: AX K1's round keys, R12 K2's, R9 rounds, DI dst, SI src, R10
// steps per unit, CX steps left in the unit, DX units left, R13 the unit
// number, R14 the step between unit numbers.

// MULA4 sets dst to src times α^4 in each 128-bit lane (GF(2^128) modulo
// x^128 + x^7 + x^2 + x + 1, little-endian): the lane shifted left by four
// bits, the four bits shifted out of the top folded back in as their
// carry-less product with 0x87.
#define MULA4(src, dst) \
	VPSRLQ     $60, src, Z8;         \
	VPSLLQ     $4, src, dst;         \
	VPSLLDQ    $8, Z8, Z9;           \
	VPCLMULQDQ $0x01, Z31, Z8, Z10;  \
	VPTERNLOGQ $0x96, Z10, Z9, dst

// ENC4 applies round key k to the four block registers.
#define ENC4(k) \
	VAESENC k, Z4, Z4; \
	VAESENC k, Z5, Z5; \
	VAESENC k, Z6, Z6; \
	VAESENC k, Z7, Z7

// LAST4 applies the last round with key k.
#define LAST4(k) \
	VAESENCLAST k, Z4, Z4; \
	VAESENCLAST k, Z5, Z5; \
	VAESENCLAST k, Z6, Z6; \
	VAESENCLAST k, Z7, Z7

// func encUnitsVAES(rk1, rk2 *[15][16]byte, rounds int, dst, src *byte, unitBlocks, units int, first, step uint64)
TEXT ·encUnitsVAES(SB), NOSPLIT, $0-72
	MOVQ rk1+0(FP), AX
	MOVQ rk2+8(FP), R12
	MOVQ rounds+16(FP), R9
	MOVQ dst+24(FP), DI
	MOVQ src+32(FP), SI
	MOVQ unitBlocks+40(FP), R10
	MOVQ units+48(FP), DX
	MOVQ first+56(FP), R13
	MOVQ step+64(FP), R14
	SHRQ $4, R10
	JZ   done
	TESTQ DX, DX
	JZ   done
	VBROADCASTI32X4 0(AX), Z16
	VBROADCASTI32X4 16(AX), Z17
	VBROADCASTI32X4 32(AX), Z18
	VBROADCASTI32X4 48(AX), Z19
	VBROADCASTI32X4 64(AX), Z20
	VBROADCASTI32X4 80(AX), Z21
	VBROADCASTI32X4 96(AX), Z22
	VBROADCASTI32X4 112(AX), Z23
	VBROADCASTI32X4 128(AX), Z24
	VBROADCASTI32X4 144(AX), Z25
	VBROADCASTI32X4 160(AX), Z26
	VBROADCASTI32X4 176(AX), Z27
	VBROADCASTI32X4 192(AX), Z28
	VBROADCASTI32X4 208(AX), Z29
	VBROADCASTI32X4 224(AX), Z30
	VBROADCASTI32X4 gfpoly<>(SB), Z31
	VMOVDQU64 shl<>(SB), Z12
	VMOVDQU64 shr<>(SB), Z13

unit:
	// T0 = E_K2(unit number, little-endian, zero-padded).
	VMOVQ   R13, X11
	VPXOR   0(R12), X11, X11
	VAESENC 16(R12), X11, X11
	VAESENC 32(R12), X11, X11
	VAESENC 48(R12), X11, X11
	VAESENC 64(R12), X11, X11
	VAESENC 80(R12), X11, X11
	VAESENC 96(R12), X11, X11
	VAESENC 112(R12), X11, X11
	VAESENC 128(R12), X11, X11
	VAESENC 144(R12), X11, X11
	CMPQ R9, $14
	JEQ  tweak256
	VAESENCLAST 160(R12), X11, X11
	JMP  spread

tweak256:
	VAESENC 160(R12), X11, X11
	VAESENC 176(R12), X11, X11
	VAESENC 192(R12), X11, X11
	VAESENC 208(R12), X11, X11
	VAESENCLAST 224(R12), X11, X11

spread:
	// Z0 = [T0, T0·α, T0·α², T0·α³]: lane k shifted left by k bits, the
	// bits out of the top reduced as in MULA4.
	VSHUFI64X2 $0, Z11, Z11, Z11
	VPSRLVQ    Z13, Z11, Z8
	VPSLLVQ    Z12, Z11, Z0
	VPSLLDQ    $8, Z8, Z9
	VPCLMULQDQ $0x01, Z31, Z8, Z10
	VPTERNLOGQ $0x96, Z10, Z9, Z0
	MOVQ R10, CX

loop:
	MULA4(Z0, Z1)
	MULA4(Z1, Z2)
	MULA4(Z2, Z3)
	VMOVDQU64 0(SI), Z4
	VMOVDQU64 64(SI), Z5
	VMOVDQU64 128(SI), Z6
	VMOVDQU64 192(SI), Z7

	// Round 0: P ⊕ T ⊕ K[0].
	VPTERNLOGQ $0x96, Z16, Z0, Z4
	VPTERNLOGQ $0x96, Z16, Z1, Z5
	VPTERNLOGQ $0x96, Z16, Z2, Z6
	VPTERNLOGQ $0x96, Z16, Z3, Z7
	ENC4(Z17)
	ENC4(Z18)
	ENC4(Z19)
	ENC4(Z20)
	ENC4(Z21)
	ENC4(Z22)
	ENC4(Z23)
	ENC4(Z24)
	ENC4(Z25)
	CMPQ R9, $14
	JEQ  aes256
	LAST4(Z26)
	JMP  out

aes256:
	ENC4(Z26)
	ENC4(Z27)
	ENC4(Z28)
	ENC4(Z29)
	LAST4(Z30)

out:
	VPXORQ Z0, Z4, Z4
	VPXORQ Z1, Z5, Z5
	VPXORQ Z2, Z6, Z6
	VPXORQ Z3, Z7, Z7
	VMOVDQU64 Z4, 0(DI)
	VMOVDQU64 Z5, 64(DI)
	VMOVDQU64 Z6, 128(DI)
	VMOVDQU64 Z7, 192(DI)
	MULA4(Z3, Z0)
	ADDQ $256, SI
	ADDQ $256, DI
	DECQ CX
	JNZ  loop

	ADDQ R14, R13
	DECQ DX
	JNZ  unit

	VZEROUPPER

done:
	RET

// gfpoly is x^7 + x^2 + x + 1 (0x87), the low terms of the XTS polynomial.
DATA gfpoly<>+0(SB)/8, $0x87
DATA gfpoly<>+8(SB)/8, $0
GLOBL gfpoly<>(SB), RODATA|NOPTR, $16

// shl and shr are the per-quadword shift counts that multiply lane k by α^k:
// left by k, and right by 64-k for the bits that cross into the next
// quadword or out of the top (a count of 64 gives zero).
DATA shl<>+0(SB)/8, $0
DATA shl<>+8(SB)/8, $0
DATA shl<>+16(SB)/8, $1
DATA shl<>+24(SB)/8, $1
DATA shl<>+32(SB)/8, $2
DATA shl<>+40(SB)/8, $2
DATA shl<>+48(SB)/8, $3
DATA shl<>+56(SB)/8, $3
GLOBL shl<>(SB), RODATA|NOPTR, $64
DATA shr<>+0(SB)/8, $64
DATA shr<>+8(SB)/8, $64
DATA shr<>+16(SB)/8, $63
DATA shr<>+24(SB)/8, $63
DATA shr<>+32(SB)/8, $62
DATA shr<>+40(SB)/8, $62
DATA shr<>+48(SB)/8, $61
DATA shr<>+56(SB)/8, $61
GLOBL shr<>(SB), RODATA|NOPTR, $64
