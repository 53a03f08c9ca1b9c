//go:build !purego

#include "textflag.h"

// XTS-AES encryption (IEEE 1619 §5.1) of sixteen blocks at a time with VAES
// on ZMM registers: four blocks a register, C = E_K1(P ⊕ T) ⊕ T for each
// block with its tweak T. The tweaks of one step are those of the previous
// step times α^16, computed four blocks at a time by MULA4.
//
//	Z0-Z3     the tweaks of blocks 0-3, 4-7, 8-11 and 12-15 of the step
//	Z4-Z7     the blocks being encrypted
//	Z8-Z10    MULA4 scratch
//	Z16-Z30   the round keys, each broadcast to the four lanes
//	Z31       the reduction constant 0x87 in the low quadword of each lane
//
// Registers: AX round keys, R9 rounds, BX the first tweaks, DI dst, SI src,
// CX steps left.

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

// func encVAES(rk *[15][16]byte, rounds int, tw *[4][16]byte, dst, src *byte, n int)
TEXT ·encVAES(SB), NOSPLIT, $0-48
	MOVQ rk+0(FP), AX
	MOVQ rounds+8(FP), R9
	MOVQ tw+16(FP), BX
	MOVQ dst+24(FP), DI
	MOVQ src+32(FP), SI
	MOVQ n+40(FP), CX
	SHRQ $4, CX
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
	VMOVDQU64 (BX), Z0

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

	VZEROUPPER

done:
	RET

// gfpoly is x^7 + x^2 + x + 1 (0x87), the low terms of the XTS polynomial.
DATA gfpoly<>+0(SB)/8, $0x87
DATA gfpoly<>+8(SB)/8, $0
GLOBL gfpoly<>(SB), RODATA|NOPTR, $16
