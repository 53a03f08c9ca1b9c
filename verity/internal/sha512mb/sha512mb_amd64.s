//go:build !purego

#include "textflag.h"

// SHA-512 compression (FIPS 180-4 §6.4.2) of several messages at once:
// block4 with AVX2 (four messages, one per 64-bit lane of the YMM registers),
// block8 with AVX-512 (eight, one per lane of the ZMM registers). Both read
// whole 128-byte blocks; padding is the Go code's business.

// ---- block4 ----
//
// Registers:
//
//	Y0-Y7     the working variables a..h of the four lanes, renamed from
//	          round to round instead of moved (round t has a in Y(-t mod 8))
//	Y8-Y11    round temporaries (T1, Σ0 + Maj, scratch)
//	Y12-Y15   message schedule temporaries
//	R8        h: the hash value, word-major (h[j][lane], 8 lanes a row)
//	R10-R13   the current block of lanes 0-3
//	CX        blocks left
//
// The frame holds the message schedule W[t] (§6.4.2 step 1) as a ring of
// sixteen 32-byte slots, slot t mod 16 holding W[t] of the four lanes.

// ROTR(x, n, tmp, acc): acc ^= ROTR^n(x) (§4.1.3; the two shifted halves
// have no bit in common, so XOR does the OR).
#define ROTR(x, n, m, tmp, acc) \
	VPSRLQ $n, x, tmp;    \
	VPXOR  tmp, acc, acc; \
	VPSLLQ $m, x, tmp;    \
	VPXOR  tmp, acc, acc

// ROUND is round t (§6.4.2 step 3): T1 = h + Σ1(e) + Ch(e,f,g) + K[t] + W[t],
// T2 = Σ0(a) + Maj(a,b,c) (§4.1.3, (4.8)-(4.11)); d += T1 and h = T1 + T2,
// the other variables moving by renaming. koff is 8t, woff the slot of W[t].
#define ROUND(a, b, c, d, e, f, g, h, koff, woff) \
	VPSRLQ       $14, e, Y8;              \
	VPSLLQ       $50, e, Y9;              \
	VPXOR        Y9, Y8, Y8;              \
	ROTR(e, 18, 46, Y9, Y8);              \
	ROTR(e, 41, 23, Y9, Y8);              \
	VPAND        f, e, Y9;                \
	VPANDN       g, e, Y10;               \
	VPXOR        Y10, Y9, Y9;             \
	VPADDQ       Y9, Y8, Y8;              \
	VPADDQ       h, Y8, Y8;               \
	VPBROADCASTQ k512<>+koff(SB), Y9;     \
	VPADDQ       Y9, Y8, Y8;              \
	VPADDQ       woff(SP), Y8, Y8;        \
	VPADDQ       Y8, d, d;                \
	VPSRLQ       $28, a, Y9;              \
	VPSLLQ       $36, a, Y10;             \
	VPXOR        Y10, Y9, Y9;             \
	ROTR(a, 34, 30, Y10, Y9);             \
	ROTR(a, 39, 25, Y10, Y9);             \
	VPOR         b, a, Y10;               \
	VPAND        c, Y10, Y10;             \
	VPAND        b, a, Y11;               \
	VPOR         Y11, Y10, Y10;           \
	VPADDQ       Y10, Y9, Y9;             \
	VPADDQ       Y9, Y8, h

// SCHED computes W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]
// (§6.4.2 step 1, σ of (4.12) and (4.13)) into the slot of W[t-16]; w2, w7,
// w15 and w16 are the slots of W[t-2], W[t-7], W[t-15] and W[t-16].
#define SCHED(w2, w7, w15, w16) \
	VMOVDQU w2(SP), Y12;        \
	VPSRLQ  $6, Y12, Y13;       \
	ROTR(Y12, 19, 45, Y14, Y13); \
	ROTR(Y12, 61, 3, Y14, Y13); \
	VMOVDQU w15(SP), Y12;       \
	VPSRLQ  $7, Y12, Y15;       \
	ROTR(Y12, 1, 63, Y14, Y15); \
	ROTR(Y12, 8, 56, Y14, Y15); \
	VPADDQ  Y15, Y13, Y13;      \
	VPADDQ  w7(SP), Y13, Y13;   \
	VPADDQ  w16(SP), Y13, Y13;  \
	VMOVDQU Y13, w16(SP)

// LOAD4 loads message words W[4g..4g+3] of the four lanes from byte offset
// off of their blocks, transposes them from lane-major to word-major and
// converts them from big endian into slots 4g..4g+3 (offsets s0..s3).
#define LOAD4(off, s0, s1, s2, s3) \
	VMOVDQU     off(R10), Y8;         \
	VMOVDQU     off(R11), Y9;         \
	VMOVDQU     off(R12), Y10;        \
	VMOVDQU     off(R13), Y11;        \
	VPUNPCKLQDQ Y9, Y8, Y12;          \
	VPUNPCKHQDQ Y9, Y8, Y13;          \
	VPUNPCKLQDQ Y11, Y10, Y14;        \
	VPUNPCKHQDQ Y11, Y10, Y15;        \
	VPERM2I128  $0x20, Y14, Y12, Y8;  \
	VPERM2I128  $0x20, Y15, Y13, Y9;  \
	VPERM2I128  $0x31, Y14, Y12, Y10; \
	VPERM2I128  $0x31, Y15, Y13, Y11; \
	VPSHUFB     bswap<>(SB), Y8, Y8;  \
	VPSHUFB     bswap<>(SB), Y9, Y9;  \
	VPSHUFB     bswap<>(SB), Y10, Y10; \
	VPSHUFB     bswap<>(SB), Y11, Y11; \
	VMOVDQU     Y8, s0(SP);           \
	VMOVDQU     Y9, s1(SP);           \
	VMOVDQU     Y10, s2(SP);          \
	VMOVDQU     Y11, s3(SP)

// func block4(h *[8][8]uint64, p *[8]*byte, n int): lanes 0-3 of h and p
TEXT ·block4(SB), NOSPLIT, $512-24
	MOVQ h+0(FP), R8
	MOVQ p+8(FP), AX
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ   done
	MOVQ 0(AX), R10
	MOVQ 8(AX), R11
	MOVQ 16(AX), R12
	MOVQ 24(AX), R13
	VMOVDQU 0(R8), Y0
	VMOVDQU 64(R8), Y1
	VMOVDQU 128(R8), Y2
	VMOVDQU 192(R8), Y3
	VMOVDQU 256(R8), Y4
	VMOVDQU 320(R8), Y5
	VMOVDQU 384(R8), Y6
	VMOVDQU 448(R8), Y7

loop:
	LOAD4(0, 0, 32, 64, 96)
	LOAD4(32, 128, 160, 192, 224)
	LOAD4(64, 256, 288, 320, 352)
	LOAD4(96, 384, 416, 448, 480)
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, 0, 0)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, 8, 32)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, 16, 64)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, 24, 96)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, 32, 128)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, 40, 160)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, 48, 192)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, 56, 224)
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, 64, 256)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, 72, 288)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, 80, 320)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, 88, 352)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, 96, 384)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, 104, 416)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, 112, 448)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, 120, 480)
	SCHED(448, 288, 32, 0)
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, 128, 0)
	SCHED(480, 320, 64, 32)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, 136, 32)
	SCHED(0, 352, 96, 64)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, 144, 64)
	SCHED(32, 384, 128, 96)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, 152, 96)
	SCHED(64, 416, 160, 128)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, 160, 128)
	SCHED(96, 448, 192, 160)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, 168, 160)
	SCHED(128, 480, 224, 192)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, 176, 192)
	SCHED(160, 0, 256, 224)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, 184, 224)
	SCHED(192, 32, 288, 256)
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, 192, 256)
	SCHED(224, 64, 320, 288)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, 200, 288)
	SCHED(256, 96, 352, 320)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, 208, 320)
	SCHED(288, 128, 384, 352)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, 216, 352)
	SCHED(320, 160, 416, 384)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, 224, 384)
	SCHED(352, 192, 448, 416)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, 232, 416)
	SCHED(384, 224, 480, 448)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, 240, 448)
	SCHED(416, 256, 0, 480)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, 248, 480)
	SCHED(448, 288, 32, 0)
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, 256, 0)
	SCHED(480, 320, 64, 32)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, 264, 32)
	SCHED(0, 352, 96, 64)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, 272, 64)
	SCHED(32, 384, 128, 96)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, 280, 96)
	SCHED(64, 416, 160, 128)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, 288, 128)
	SCHED(96, 448, 192, 160)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, 296, 160)
	SCHED(128, 480, 224, 192)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, 304, 192)
	SCHED(160, 0, 256, 224)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, 312, 224)
	SCHED(192, 32, 288, 256)
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, 320, 256)
	SCHED(224, 64, 320, 288)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, 328, 288)
	SCHED(256, 96, 352, 320)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, 336, 320)
	SCHED(288, 128, 384, 352)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, 344, 352)
	SCHED(320, 160, 416, 384)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, 352, 384)
	SCHED(352, 192, 448, 416)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, 360, 416)
	SCHED(384, 224, 480, 448)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, 368, 448)
	SCHED(416, 256, 0, 480)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, 376, 480)
	SCHED(448, 288, 32, 0)
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, 384, 0)
	SCHED(480, 320, 64, 32)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, 392, 32)
	SCHED(0, 352, 96, 64)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, 400, 64)
	SCHED(32, 384, 128, 96)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, 408, 96)
	SCHED(64, 416, 160, 128)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, 416, 128)
	SCHED(96, 448, 192, 160)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, 424, 160)
	SCHED(128, 480, 224, 192)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, 432, 192)
	SCHED(160, 0, 256, 224)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, 440, 224)
	SCHED(192, 32, 288, 256)
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, 448, 256)
	SCHED(224, 64, 320, 288)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, 456, 288)
	SCHED(256, 96, 352, 320)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, 464, 320)
	SCHED(288, 128, 384, 352)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, 472, 352)
	SCHED(320, 160, 416, 384)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, 480, 384)
	SCHED(352, 192, 448, 416)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, 488, 416)
	SCHED(384, 224, 480, 448)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, 496, 448)
	SCHED(416, 256, 0, 480)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, 504, 480)
	SCHED(448, 288, 32, 0)
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, 512, 0)
	SCHED(480, 320, 64, 32)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, 520, 32)
	SCHED(0, 352, 96, 64)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, 528, 64)
	SCHED(32, 384, 128, 96)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, 536, 96)
	SCHED(64, 416, 160, 128)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, 544, 128)
	SCHED(96, 448, 192, 160)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, 552, 160)
	SCHED(128, 480, 224, 192)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, 560, 192)
	SCHED(160, 0, 256, 224)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, 568, 224)
	SCHED(192, 32, 288, 256)
	ROUND(Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, 576, 256)
	SCHED(224, 64, 320, 288)
	ROUND(Y7, Y0, Y1, Y2, Y3, Y4, Y5, Y6, 584, 288)
	SCHED(256, 96, 352, 320)
	ROUND(Y6, Y7, Y0, Y1, Y2, Y3, Y4, Y5, 592, 320)
	SCHED(288, 128, 384, 352)
	ROUND(Y5, Y6, Y7, Y0, Y1, Y2, Y3, Y4, 600, 352)
	SCHED(320, 160, 416, 384)
	ROUND(Y4, Y5, Y6, Y7, Y0, Y1, Y2, Y3, 608, 384)
	SCHED(352, 192, 448, 416)
	ROUND(Y3, Y4, Y5, Y6, Y7, Y0, Y1, Y2, 616, 416)
	SCHED(384, 224, 480, 448)
	ROUND(Y2, Y3, Y4, Y5, Y6, Y7, Y0, Y1, 624, 448)
	SCHED(416, 256, 0, 480)
	ROUND(Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y0, 632, 480)

	// Feed-forward (§6.4.2 step 4): H(i) = working variables + H(i-1).
	VPADDQ 0(R8), Y0, Y0
	VPADDQ 64(R8), Y1, Y1
	VPADDQ 128(R8), Y2, Y2
	VPADDQ 192(R8), Y3, Y3
	VPADDQ 256(R8), Y4, Y4
	VPADDQ 320(R8), Y5, Y5
	VPADDQ 384(R8), Y6, Y6
	VPADDQ 448(R8), Y7, Y7
	VMOVDQU Y0, 0(R8)
	VMOVDQU Y1, 64(R8)
	VMOVDQU Y2, 128(R8)
	VMOVDQU Y3, 192(R8)
	VMOVDQU Y4, 256(R8)
	VMOVDQU Y5, 320(R8)
	VMOVDQU Y6, 384(R8)
	VMOVDQU Y7, 448(R8)
	ADDQ $128, R10
	ADDQ $128, R11
	ADDQ $128, R12
	ADDQ $128, R13
	DECQ CX
	JNZ  loop
	VZEROUPPER

done:
	RET

// ---- block8 ----
//
// SHA-512 of eight messages at once with AVX-512: lane i of each ZMM register
// holds the 64-bit word of message i. The rounds are those of block4, with
// VPRORQ for the rotations and VPTERNLOGQ for the three-input functions
// (0x96 is x ^ y ^ z for the Σ and σ functions, 0xca is Ch, 0xe8 is Maj), and
// the message schedule is kept in registers rather than in the frame:
//
//	Z0-Z7     working variables, renamed from round to round (round t has a
//	          in Z(-t mod 8), b in the next...)
//	Z8-Z11    round scratch (and transposition scratch with Z12-Z15)
//	Z13-Z15   message schedule scratch
//	Z16-Z31   W[t] for the last 16 t, W[t] in Z(16 + t mod 16)
//
// Registers: R8 points at the [8][8]uint64 hash values (word-major), which
// also serve for the feed-forward; DI at the 8 data pointers; CX is the
// offset of the current block in each lane's data, DX the end offset; AX
// points at k512.

// LOAD8_ROW loads 64 bytes at byte offset off of the current block of lane
// i into z.
#define LOAD8_ROW(i, off, z) \
	MOVQ      (8*i)(DI), R10;    \
	VMOVDQU64 off(R10)(CX*1), z

// TRANSPOSE8 transposes the 8x8 matrix of 64-bit words in r0..r7 (row i is
// 64 bytes of lane i) so that r(k) holds word k of every lane, converted
// from big endian; Z8-Z15 are scratch. Each output is written only after
// the inputs that share its register have been used.
#define TRANSPOSE8(r0, r1, r2, r3, r4, r5, r6, r7) \
	VPUNPCKLQDQ r1, r0, Z8;         \
	VPUNPCKHQDQ r1, r0, Z9;         \
	VPUNPCKLQDQ r3, r2, Z10;        \
	VPUNPCKHQDQ r3, r2, Z11;        \
	VPUNPCKLQDQ r5, r4, Z12;        \
	VPUNPCKHQDQ r5, r4, Z13;        \
	VPUNPCKLQDQ r7, r6, Z14;        \
	VPUNPCKHQDQ r7, r6, Z15;        \
	VSHUFI64X2  $0x44, Z10, Z8, r4; \
	VSHUFI64X2  $0xee, Z10, Z8, r5; \
	VSHUFI64X2  $0x44, Z14, Z12, r6; \
	VSHUFI64X2  $0xee, Z14, Z12, r7; \
	VSHUFI64X2  $0x88, r6, r4, r0;  \
	VSHUFI64X2  $0xdd, r6, r4, r2;  \
	VSHUFI64X2  $0x88, r7, r5, r4;  \
	VSHUFI64X2  $0xdd, r7, r5, r6;  \
	VSHUFI64X2  $0x44, Z11, Z9, Z8; \
	VSHUFI64X2  $0xee, Z11, Z9, Z10; \
	VSHUFI64X2  $0x44, Z15, Z13, Z12; \
	VSHUFI64X2  $0xee, Z15, Z13, Z14; \
	VSHUFI64X2  $0x88, Z12, Z8, r1; \
	VSHUFI64X2  $0xdd, Z12, Z8, r3; \
	VSHUFI64X2  $0x88, Z14, Z10, r5; \
	VSHUFI64X2  $0xdd, Z14, Z10, r7; \
	VPSHUFB     bswap<>(SB), r0, r0; \
	VPSHUFB     bswap<>(SB), r1, r1; \
	VPSHUFB     bswap<>(SB), r2, r2; \
	VPSHUFB     bswap<>(SB), r3, r3; \
	VPSHUFB     bswap<>(SB), r4, r4; \
	VPSHUFB     bswap<>(SB), r5, r5; \
	VPSHUFB     bswap<>(SB), r6, r6; \
	VPSHUFB     bswap<>(SB), r7, r7

// ROUND8 is round t (§6.4.2 step 3), koff = 8t being the offset of K[t] and
// w holding W[t]: T1 = h + Σ1(e) + Ch(e, f, g) + K[t] + W[t],
// T2 = Σ0(a) + Maj(a, b, c); d += T1, h = T1 + T2 (the new a; the caller
// renames).
#define ROUND8(koff, a, b, c, d, e, f, g, h, w) \
	VPADDQ.BCST koff(AX), w, Z8;     \
	VPADDQ      Z8, h, h;            \
	VPRORQ      $14, e, Z9;          \
	VPRORQ      $18, e, Z10;         \
	VPRORQ      $41, e, Z11;         \
	VPTERNLOGQ  $0x96, Z11, Z10, Z9; \
	VMOVDQA64   e, Z10;              \
	VPTERNLOGQ  $0xca, g, f, Z10;    \
	VPADDQ      Z10, Z9, Z9;         \
	VPADDQ      Z9, h, h;            \
	VPADDQ      h, d, d;             \
	VPRORQ      $28, a, Z9;          \
	VPRORQ      $34, a, Z10;         \
	VPRORQ      $39, a, Z11;         \
	VPTERNLOGQ  $0x96, Z11, Z10, Z9; \
	VMOVDQA64   a, Z10;              \
	VPTERNLOGQ  $0xe8, c, b, Z10;    \
	VPADDQ      Z10, Z9, Z9;         \
	VPADDQ      Z9, h, h

// SCHED8 sets w = W[t+16] = σ1(W[t+14]) + W[t+9] + σ0(W[t+1]) + W[t]
// (§6.4.2 step 1; σ0 and σ1 of §4.1.3 (4.12), (4.13)), w holding W[t] and
// w1, w9, w14 the others.
#define SCHED8(w, w1, w9, w14) \
	VPRORQ     $1, w1, Z13;          \
	VPRORQ     $8, w1, Z14;          \
	VPSRLQ     $7, w1, Z15;          \
	VPTERNLOGQ $0x96, Z15, Z14, Z13; \
	VPADDQ     Z13, w, w;            \
	VPADDQ     w9, w, w;             \
	VPRORQ     $19, w14, Z13;        \
	VPRORQ     $61, w14, Z14;        \
	VPSRLQ     $6, w14, Z15;         \
	VPTERNLOGQ $0x96, Z15, Z14, Z13; \
	VPADDQ     Z13, w, w

// FEED8 adds the hash value word j at (R8) to z and stores the sum there
// (§6.4.2 step 4).
#define FEED8(j, z) \
	VPADDQ    (64*j)(R8), z, z; \
	VMOVDQU64 z, (64*j)(R8)

// func block8(h *[8][8]uint64, p *[8]*byte, n int)
TEXT ·block8(SB), NOSPLIT, $0-24
	MOVQ h+0(FP), R8
	MOVQ p+8(FP), DI
	MOVQ n+16(FP), DX
	SHLQ $7, DX
	JZ   done8
	XORQ CX, CX
	LEAQ k512<>(SB), AX
	VMOVDQU64 (64*0)(R8), Z0
	VMOVDQU64 (64*1)(R8), Z1
	VMOVDQU64 (64*2)(R8), Z2
	VMOVDQU64 (64*3)(R8), Z3
	VMOVDQU64 (64*4)(R8), Z4
	VMOVDQU64 (64*5)(R8), Z5
	VMOVDQU64 (64*6)(R8), Z6
	VMOVDQU64 (64*7)(R8), Z7

loop8:
	// One block per lane, transposed so that Z(16+k) holds word k of
	// every lane.
	LOAD8_ROW(0, 0, Z16)
	LOAD8_ROW(1, 0, Z17)
	LOAD8_ROW(2, 0, Z18)
	LOAD8_ROW(3, 0, Z19)
	LOAD8_ROW(4, 0, Z20)
	LOAD8_ROW(5, 0, Z21)
	LOAD8_ROW(6, 0, Z22)
	LOAD8_ROW(7, 0, Z23)
	TRANSPOSE8(Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23)
	LOAD8_ROW(0, 64, Z24)
	LOAD8_ROW(1, 64, Z25)
	LOAD8_ROW(2, 64, Z26)
	LOAD8_ROW(3, 64, Z27)
	LOAD8_ROW(4, 64, Z28)
	LOAD8_ROW(5, 64, Z29)
	LOAD8_ROW(6, 64, Z30)
	LOAD8_ROW(7, 64, Z31)
	TRANSPOSE8(Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31)

	// Rounds 0-63 also compute W[16..79]; rounds 64-79 only consume.
	// Round t: a..h are Z((0-t) mod 8)..Z((7-t) mod 8), W[t] is Z(16 + t mod 16).
	ROUND8(0, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z16)
	SCHED8(Z16, Z17, Z25, Z30)
	ROUND8(8, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z17)
	SCHED8(Z17, Z18, Z26, Z31)
	ROUND8(16, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z18)
	SCHED8(Z18, Z19, Z27, Z16)
	ROUND8(24, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z19)
	SCHED8(Z19, Z20, Z28, Z17)
	ROUND8(32, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z20)
	SCHED8(Z20, Z21, Z29, Z18)
	ROUND8(40, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z21)
	SCHED8(Z21, Z22, Z30, Z19)
	ROUND8(48, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z22)
	SCHED8(Z22, Z23, Z31, Z20)
	ROUND8(56, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z23)
	SCHED8(Z23, Z24, Z16, Z21)
	ROUND8(64, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z24)
	SCHED8(Z24, Z25, Z17, Z22)
	ROUND8(72, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z25)
	SCHED8(Z25, Z26, Z18, Z23)
	ROUND8(80, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z26)
	SCHED8(Z26, Z27, Z19, Z24)
	ROUND8(88, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z27)
	SCHED8(Z27, Z28, Z20, Z25)
	ROUND8(96, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z28)
	SCHED8(Z28, Z29, Z21, Z26)
	ROUND8(104, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z29)
	SCHED8(Z29, Z30, Z22, Z27)
	ROUND8(112, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z30)
	SCHED8(Z30, Z31, Z23, Z28)
	ROUND8(120, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z31)
	SCHED8(Z31, Z16, Z24, Z29)
	ROUND8(128, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z16)
	SCHED8(Z16, Z17, Z25, Z30)
	ROUND8(136, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z17)
	SCHED8(Z17, Z18, Z26, Z31)
	ROUND8(144, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z18)
	SCHED8(Z18, Z19, Z27, Z16)
	ROUND8(152, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z19)
	SCHED8(Z19, Z20, Z28, Z17)
	ROUND8(160, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z20)
	SCHED8(Z20, Z21, Z29, Z18)
	ROUND8(168, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z21)
	SCHED8(Z21, Z22, Z30, Z19)
	ROUND8(176, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z22)
	SCHED8(Z22, Z23, Z31, Z20)
	ROUND8(184, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z23)
	SCHED8(Z23, Z24, Z16, Z21)
	ROUND8(192, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z24)
	SCHED8(Z24, Z25, Z17, Z22)
	ROUND8(200, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z25)
	SCHED8(Z25, Z26, Z18, Z23)
	ROUND8(208, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z26)
	SCHED8(Z26, Z27, Z19, Z24)
	ROUND8(216, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z27)
	SCHED8(Z27, Z28, Z20, Z25)
	ROUND8(224, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z28)
	SCHED8(Z28, Z29, Z21, Z26)
	ROUND8(232, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z29)
	SCHED8(Z29, Z30, Z22, Z27)
	ROUND8(240, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z30)
	SCHED8(Z30, Z31, Z23, Z28)
	ROUND8(248, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z31)
	SCHED8(Z31, Z16, Z24, Z29)
	ROUND8(256, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z16)
	SCHED8(Z16, Z17, Z25, Z30)
	ROUND8(264, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z17)
	SCHED8(Z17, Z18, Z26, Z31)
	ROUND8(272, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z18)
	SCHED8(Z18, Z19, Z27, Z16)
	ROUND8(280, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z19)
	SCHED8(Z19, Z20, Z28, Z17)
	ROUND8(288, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z20)
	SCHED8(Z20, Z21, Z29, Z18)
	ROUND8(296, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z21)
	SCHED8(Z21, Z22, Z30, Z19)
	ROUND8(304, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z22)
	SCHED8(Z22, Z23, Z31, Z20)
	ROUND8(312, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z23)
	SCHED8(Z23, Z24, Z16, Z21)
	ROUND8(320, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z24)
	SCHED8(Z24, Z25, Z17, Z22)
	ROUND8(328, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z25)
	SCHED8(Z25, Z26, Z18, Z23)
	ROUND8(336, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z26)
	SCHED8(Z26, Z27, Z19, Z24)
	ROUND8(344, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z27)
	SCHED8(Z27, Z28, Z20, Z25)
	ROUND8(352, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z28)
	SCHED8(Z28, Z29, Z21, Z26)
	ROUND8(360, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z29)
	SCHED8(Z29, Z30, Z22, Z27)
	ROUND8(368, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z30)
	SCHED8(Z30, Z31, Z23, Z28)
	ROUND8(376, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z31)
	SCHED8(Z31, Z16, Z24, Z29)
	ROUND8(384, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z16)
	SCHED8(Z16, Z17, Z25, Z30)
	ROUND8(392, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z17)
	SCHED8(Z17, Z18, Z26, Z31)
	ROUND8(400, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z18)
	SCHED8(Z18, Z19, Z27, Z16)
	ROUND8(408, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z19)
	SCHED8(Z19, Z20, Z28, Z17)
	ROUND8(416, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z20)
	SCHED8(Z20, Z21, Z29, Z18)
	ROUND8(424, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z21)
	SCHED8(Z21, Z22, Z30, Z19)
	ROUND8(432, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z22)
	SCHED8(Z22, Z23, Z31, Z20)
	ROUND8(440, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z23)
	SCHED8(Z23, Z24, Z16, Z21)
	ROUND8(448, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z24)
	SCHED8(Z24, Z25, Z17, Z22)
	ROUND8(456, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z25)
	SCHED8(Z25, Z26, Z18, Z23)
	ROUND8(464, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z26)
	SCHED8(Z26, Z27, Z19, Z24)
	ROUND8(472, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z27)
	SCHED8(Z27, Z28, Z20, Z25)
	ROUND8(480, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z28)
	SCHED8(Z28, Z29, Z21, Z26)
	ROUND8(488, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z29)
	SCHED8(Z29, Z30, Z22, Z27)
	ROUND8(496, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z30)
	SCHED8(Z30, Z31, Z23, Z28)
	ROUND8(504, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z31)
	SCHED8(Z31, Z16, Z24, Z29)
	ROUND8(512, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z16)
	ROUND8(520, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z17)
	ROUND8(528, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z18)
	ROUND8(536, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z19)
	ROUND8(544, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z20)
	ROUND8(552, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z21)
	ROUND8(560, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z22)
	ROUND8(568, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z23)
	ROUND8(576, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z24)
	ROUND8(584, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z25)
	ROUND8(592, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z26)
	ROUND8(600, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z27)
	ROUND8(608, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z28)
	ROUND8(616, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z29)
	ROUND8(624, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z30)
	ROUND8(632, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z31)

	FEED8(0, Z0)
	FEED8(1, Z1)
	FEED8(2, Z2)
	FEED8(3, Z3)
	FEED8(4, Z4)
	FEED8(5, Z5)
	FEED8(6, Z6)
	FEED8(7, Z7)

	ADDQ $128, CX
	CMPQ CX, DX
	JNE  loop8

	VZEROUPPER

done8:
	RET

// bswap reverses the bytes of each 64-bit word (VPSHUFB mask; block4 reads
// the first 32 bytes, block8 all 64).
DATA bswap<>+0(SB)/8, $0x0001020304050607
DATA bswap<>+8(SB)/8, $0x08090a0b0c0d0e0f
DATA bswap<>+16(SB)/8, $0x0001020304050607
DATA bswap<>+24(SB)/8, $0x08090a0b0c0d0e0f
DATA bswap<>+32(SB)/8, $0x0001020304050607
DATA bswap<>+40(SB)/8, $0x08090a0b0c0d0e0f
DATA bswap<>+48(SB)/8, $0x0001020304050607
DATA bswap<>+56(SB)/8, $0x08090a0b0c0d0e0f
GLOBL bswap<>(SB), RODATA|NOPTR, $64

// k512 holds the constants K[0..79] of FIPS 180-4 §4.2.3.
DATA k512<>+0(SB)/8, $0x428a2f98d728ae22
DATA k512<>+8(SB)/8, $0x7137449123ef65cd
DATA k512<>+16(SB)/8, $0xb5c0fbcfec4d3b2f
DATA k512<>+24(SB)/8, $0xe9b5dba58189dbbc
DATA k512<>+32(SB)/8, $0x3956c25bf348b538
DATA k512<>+40(SB)/8, $0x59f111f1b605d019
DATA k512<>+48(SB)/8, $0x923f82a4af194f9b
DATA k512<>+56(SB)/8, $0xab1c5ed5da6d8118
DATA k512<>+64(SB)/8, $0xd807aa98a3030242
DATA k512<>+72(SB)/8, $0x12835b0145706fbe
DATA k512<>+80(SB)/8, $0x243185be4ee4b28c
DATA k512<>+88(SB)/8, $0x550c7dc3d5ffb4e2
DATA k512<>+96(SB)/8, $0x72be5d74f27b896f
DATA k512<>+104(SB)/8, $0x80deb1fe3b1696b1
DATA k512<>+112(SB)/8, $0x9bdc06a725c71235
DATA k512<>+120(SB)/8, $0xc19bf174cf692694
DATA k512<>+128(SB)/8, $0xe49b69c19ef14ad2
DATA k512<>+136(SB)/8, $0xefbe4786384f25e3
DATA k512<>+144(SB)/8, $0x0fc19dc68b8cd5b5
DATA k512<>+152(SB)/8, $0x240ca1cc77ac9c65
DATA k512<>+160(SB)/8, $0x2de92c6f592b0275
DATA k512<>+168(SB)/8, $0x4a7484aa6ea6e483
DATA k512<>+176(SB)/8, $0x5cb0a9dcbd41fbd4
DATA k512<>+184(SB)/8, $0x76f988da831153b5
DATA k512<>+192(SB)/8, $0x983e5152ee66dfab
DATA k512<>+200(SB)/8, $0xa831c66d2db43210
DATA k512<>+208(SB)/8, $0xb00327c898fb213f
DATA k512<>+216(SB)/8, $0xbf597fc7beef0ee4
DATA k512<>+224(SB)/8, $0xc6e00bf33da88fc2
DATA k512<>+232(SB)/8, $0xd5a79147930aa725
DATA k512<>+240(SB)/8, $0x06ca6351e003826f
DATA k512<>+248(SB)/8, $0x142929670a0e6e70
DATA k512<>+256(SB)/8, $0x27b70a8546d22ffc
DATA k512<>+264(SB)/8, $0x2e1b21385c26c926
DATA k512<>+272(SB)/8, $0x4d2c6dfc5ac42aed
DATA k512<>+280(SB)/8, $0x53380d139d95b3df
DATA k512<>+288(SB)/8, $0x650a73548baf63de
DATA k512<>+296(SB)/8, $0x766a0abb3c77b2a8
DATA k512<>+304(SB)/8, $0x81c2c92e47edaee6
DATA k512<>+312(SB)/8, $0x92722c851482353b
DATA k512<>+320(SB)/8, $0xa2bfe8a14cf10364
DATA k512<>+328(SB)/8, $0xa81a664bbc423001
DATA k512<>+336(SB)/8, $0xc24b8b70d0f89791
DATA k512<>+344(SB)/8, $0xc76c51a30654be30
DATA k512<>+352(SB)/8, $0xd192e819d6ef5218
DATA k512<>+360(SB)/8, $0xd69906245565a910
DATA k512<>+368(SB)/8, $0xf40e35855771202a
DATA k512<>+376(SB)/8, $0x106aa07032bbd1b8
DATA k512<>+384(SB)/8, $0x19a4c116b8d2d0c8
DATA k512<>+392(SB)/8, $0x1e376c085141ab53
DATA k512<>+400(SB)/8, $0x2748774cdf8eeb99
DATA k512<>+408(SB)/8, $0x34b0bcb5e19b48a8
DATA k512<>+416(SB)/8, $0x391c0cb3c5c95a63
DATA k512<>+424(SB)/8, $0x4ed8aa4ae3418acb
DATA k512<>+432(SB)/8, $0x5b9cca4f7763e373
DATA k512<>+440(SB)/8, $0x682e6ff3d6b2b8a3
DATA k512<>+448(SB)/8, $0x748f82ee5defb2fc
DATA k512<>+456(SB)/8, $0x78a5636f43172f60
DATA k512<>+464(SB)/8, $0x84c87814a1f0ab72
DATA k512<>+472(SB)/8, $0x8cc702081a6439ec
DATA k512<>+480(SB)/8, $0x90befffa23631e28
DATA k512<>+488(SB)/8, $0xa4506cebde82bde9
DATA k512<>+496(SB)/8, $0xbef9a3f7b2c67915
DATA k512<>+504(SB)/8, $0xc67178f2e372532b
DATA k512<>+512(SB)/8, $0xca273eceea26619c
DATA k512<>+520(SB)/8, $0xd186b8c721c0c207
DATA k512<>+528(SB)/8, $0xeada7dd6cde0eb1e
DATA k512<>+536(SB)/8, $0xf57d4f7fee6ed178
DATA k512<>+544(SB)/8, $0x06f067aa72176fba
DATA k512<>+552(SB)/8, $0x0a637dc5a2c898a6
DATA k512<>+560(SB)/8, $0x113f9804bef90dae
DATA k512<>+568(SB)/8, $0x1b710b35131c471b
DATA k512<>+576(SB)/8, $0x28db77f523047d84
DATA k512<>+584(SB)/8, $0x32caab7b40c72493
DATA k512<>+592(SB)/8, $0x3c9ebe0a15c9bebc
DATA k512<>+600(SB)/8, $0x431d67c49c100d4c
DATA k512<>+608(SB)/8, $0x4cc5d4becb3e42b6
DATA k512<>+616(SB)/8, $0x597f299cfc657e2a
DATA k512<>+624(SB)/8, $0x5fcb6fab3ad6faec
DATA k512<>+632(SB)/8, $0x6c44198c4a475817
GLOBL k512<>(SB), RODATA|NOPTR, $640
