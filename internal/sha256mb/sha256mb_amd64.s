//go:build !purego

#include "textflag.h"

// SHA-256 compression (FIPS 180-4 §6.2.2) of several messages at once:
// blockX2 with the Intel SHA extensions (two messages), block16 with
// AVX-512 (sixteen messages). Both read whole 64-byte blocks; padding is the
// Go code's business.

// ---- blockX2 ----
//
// Each lane follows the usual SHA-NI scheme (as in Go's
// crypto/internal/fips140/sha256 blockSHANI): the hash value lives in two
// registers in the order SHA256RNDS2 wants, ABEF and CDGH; SHA256RNDS2 does
// two rounds with the message-plus-constant words in the low half of X0;
// SHA256MSG1 and SHA256MSG2 compute the message schedule four words at a
// time. The two lanes are independent, so while one lane waits for the
// result of its SHA256RNDS2 (4 cycles of latency on Emerald Rapids, but one
// issue per 3 cycles) the other one runs.
//
// The SHA instructions have no VEX encoding, so only X0-X15 are usable:
//
//	X0        W[t..t+3] + K[t..t+3], the implicit operand of SHA256RNDS2
//	X1, X2    lane 0 hash value, ABEF and CDGH
//	X3-X6     lane 0 message schedule, a ring of four groups of four words
//	X7, X8    lane 1 hash value, ABEF and CDGH
//	X9-X12    lane 1 message schedule
//	X13       scratch
//	X14       byte-swap mask for PSHUFB
//
// The hash values at the start of a block, needed for the feed-forward, are
// kept in the 64-byte frame.
//
// Registers: SI, DI point at the current block of lane 0 and 1; DX is the
// end of lane 0's data; AX points at K256; R8, R9 are h0, h1.

// LOAD_STATE loads the hash value [a b c d e f g h] at (ptr) as ABEF and
// CDGH (lane 3 of a register being its most significant word).
#define LOAD_STATE(ptr, abef, cdgh) \
	MOVOU   (ptr), abef;       \
	MOVOU   16(ptr), cdgh;     \
	PSHUFD  $0xb1, abef, abef; \
	PSHUFD  $0x1b, cdgh, cdgh; \
	MOVO    abef, X13;         \
	PALIGNR $8, cdgh, abef;    \
	PBLENDW $0xf0, X13, cdgh

// STORE_STATE is the inverse of LOAD_STATE.
#define STORE_STATE(ptr, abef, cdgh) \
	PSHUFD  $0x1b, abef, abef; \
	PSHUFD  $0xb1, cdgh, cdgh; \
	MOVO    abef, X13;         \
	PBLENDW $0xf0, cdgh, abef; \
	PALIGNR $8, X13, cdgh;     \
	MOVOU   abef, (ptr);       \
	MOVOU   cdgh, 16(ptr)

// LOADW loads message words W[4j..4j+3] of both lanes, from byte offset off
// of the block, converting them from big endian.
#define LOADW(off, wa, wb) \
	MOVOU  off(SI), wa; \
	PSHUFB X14, wa;     \
	MOVOU  off(DI), wb; \
	PSHUFB X14, wb

// ROUNDS4 does rounds 4j..4j+3 of one lane with the schedule words w, the
// round constants being at koff(AX).
#define ROUNDS4(koff, w, abef, cdgh) \
	MOVO        w, X0;           \
	PADDD       koff(AX), X0;    \
	SHA256RNDS2 X0, abef, cdgh;  \
	PSHUFD      $0x0e, X0, X0;   \
	SHA256RNDS2 X0, cdgh, abef

// QROUNDS does rounds 4j..4j+3 of both lanes.
#define QROUNDS(koff, wa, wb) \
	ROUNDS4(koff, wa, X1, X2); \
	ROUNDS4(koff, wb, X7, X8)

// NEXTW computes W[4j+4..4j+7] into wn, which holds
// SHA256MSG1(W[4j-12..4j-9], W[4j-8..4j-5]), from wj = W[4j..4j+3] and
// wp = W[4j-4..4j-1]: wn += W[4j-3..4j] (the σ-free W[t-7] term), then
// SHA256MSG2 adds σ1 of W[t-2].
#define NEXTW(wn, wj, wp) \
	MOVO       wj, X13;    \
	PALIGNR    $4, wp, X13; \
	PADDD      X13, wn;    \
	SHA256MSG2 wj, wn

// MSG1 sets wp = SHA256MSG1(wp, wj), that is W[t-16] + σ0(W[t-15]) for
// t = 4j+12..4j+15 (wp is W[4j-4..4j-1], wj is W[4j..4j+3]): the first step
// towards W[4j+12..4j+15], which NEXTW finishes three steps later.
#define MSG1(wp, wj) \
	SHA256MSG1 wj, wp

// STEP does rounds 4j..4j+3 of both lanes for 3 < j < 13, with the schedule
// work that can be done then. For each lane, w holds W[4j..4j+3], wn the
// partial W[4j+4..4j+7] and wp W[4j-4..4j-1] (the registers of the ring
// take turns).
#define STEP(koff, wa, wna, wpa, wb, wnb, wpb) \
	QROUNDS(koff, wa, wb); \
	NEXTW(wna, wa, wpa);   \
	NEXTW(wnb, wb, wpb);   \
	MSG1(wpa, wa);         \
	MSG1(wpb, wb)

// func blockX2(h0, h1 *[8]uint32, p0, p1 []byte)
TEXT ·blockX2(SB), NOSPLIT, $64-64
	MOVQ h0+0(FP), R8
	MOVQ h1+8(FP), R9
	MOVQ p0_base+16(FP), SI
	MOVQ p0_len+24(FP), DX
	MOVQ p1_base+40(FP), DI
	ANDQ $-64, DX
	JZ   done
	ADDQ SI, DX

	LOAD_STATE(R8, X1, X2)
	LOAD_STATE(R9, X7, X8)
	MOVOU flip_mask<>(SB), X14
	LEAQ  K256<>(SB), AX

loop:
	// Save the hash values for the feed-forward.
	MOVOU X1, 0(SP)
	MOVOU X2, 16(SP)
	MOVOU X7, 32(SP)
	MOVOU X8, 48(SP)

	// Rounds 0-15 take the message words themselves.
	LOADW(0, X3, X9)
	QROUNDS(0, X3, X9)
	LOADW(16, X4, X10)
	QROUNDS(16, X4, X10)
	MSG1(X3, X4)
	MSG1(X9, X10)
	LOADW(32, X5, X11)
	QROUNDS(32, X5, X11)
	MSG1(X4, X5)
	MSG1(X10, X11)
	LOADW(48, X6, X12)
	QROUNDS(48, X6, X12)
	NEXTW(X3, X6, X5)
	NEXTW(X9, X12, X11)
	MSG1(X5, X6)
	MSG1(X11, X12)

	// Rounds 16-51.
	STEP(64, X3, X4, X6, X9, X10, X12)
	STEP(80, X4, X5, X3, X10, X11, X9)
	STEP(96, X5, X6, X4, X11, X12, X10)
	STEP(112, X6, X3, X5, X12, X9, X11)
	STEP(128, X3, X4, X6, X9, X10, X12)
	STEP(144, X4, X5, X3, X10, X11, X9)
	STEP(160, X5, X6, X4, X11, X12, X10)
	STEP(176, X6, X3, X5, X12, X9, X11)
	STEP(192, X3, X4, X6, X9, X10, X12)

	// Rounds 52-63: the schedule is complete after W[60..63].
	QROUNDS(208, X4, X10)
	NEXTW(X5, X4, X3)
	NEXTW(X11, X10, X9)
	QROUNDS(224, X5, X11)
	NEXTW(X6, X5, X4)
	NEXTW(X12, X11, X10)
	QROUNDS(240, X6, X12)

	// Feed-forward: H(i) = H(i-1) + the working variables.
	MOVOU 0(SP), X13
	PADDD X13, X1
	MOVOU 16(SP), X13
	PADDD X13, X2
	MOVOU 32(SP), X13
	PADDD X13, X7
	MOVOU 48(SP), X13
	PADDD X13, X8

	ADDQ $64, SI
	ADDQ $64, DI
	CMPQ SI, DX
	JNE  loop

	STORE_STATE(R8, X1, X2)
	STORE_STATE(R9, X7, X8)

done:
	RET

// ---- block16 ----
//
// Lane i of each ZMM register holds the 32-bit word of message i; the rounds
// are the plain FIPS 180-4 ones, with VPRORD for the rotations and
// VPTERNLOGD for the three-input functions: 0x96 is x ^ y ^ z (the Σ and σ
// functions), 0xca is Ch, 0xe8 is Maj. A 16-lane block costs about 1,700
// vector instructions, a third of them rotations and shifts, which only
// port 0 executes on 512-bit registers; with ports 0 and 5 this is about
// 850 cycles per 16 blocks, which is what it takes on Emerald Rapids.
//
//	Z0-Z7     working variables; the round macros rename instead of moving
//	          them, so after round t, a is in Z((-t) mod 8), b in the next...
//	Z8-Z11    round scratch (and transposition scratch)
//	Z12       byte-swap mask for VPSHUFB
//	Z13-Z15   message schedule scratch
//	Z16-Z31   W[t] for the last 16 t, W[t] in Z(16 + t mod 16)
//
// Registers: R8 points at the [8][16]uint32 hash values (word-major), which
// also serve for the feed-forward; DI at the 16 data pointers; CX is the
// offset of the current block in each lane's data, DX the end offset; AX
// points at K256; R9 is zero, or, when every lane's blocks start 32 bytes
// into a cache line (the caller says so by passing carry), points at the
// 64-byte aligned lines LOAD_ROW_SHIFTED carries from one block to the next.

// LOAD_ROW loads the current 64-byte block of lane i into z (y being its
// low half), big-endian words converted to native. It loads two 32-byte
// halves, so that a block that does not start on a cache line costs no
// 64-byte load split across two lines: on Zen 4 such loads cost the kernel
// 7 % (19.5 against 18.1 us for sixteen 4 KiB messages), the halves 2.5 %
// (19.0), and 1 % when the blocks are aligned (18.3). Blocks 32 bytes into
// a line, the usual dm-verity case, take LOAD_ROW_SHIFTED instead (18.5).
#define LOAD_ROW(i, y, z) \
	MOVQ         (8*i)(DI), R10;           \
	VMOVDQU32    (R10)(CX*1), y;           \
	VINSERTI64X4 $1, 32(R10)(CX*1), z, z;  \
	VPSHUFB      Z12, z, z

// LOAD_ROW_SHIFTED is LOAD_ROW for blocks that start 32 bytes into a cache
// line, as the body of a message after a 32-byte salt does: it loads the
// next aligned line, takes the block from the upper half of the line
// before it (kept at (64*i)(R9) from the previous pass) and the lower half
// of this one (VALIGND), and keeps this line for the next pass. Every pass
// then touches one new cache line per lane instead of two.
#define LOAD_ROW_SHIFTED(i, z) \
	MOVQ      (8*i)(DI), R10;           \
	VMOVDQU32 32(R10)(CX*1), Z8;        \
	VALIGND   $8, (64*i)(R9), Z8, z;    \
	VMOVDQA32 Z8, (64*i)(R9);           \
	VPSHUFB   Z12, z, z

// CARRY_INIT keeps the aligned line before lane i's first block.
#define CARRY_INIT(i) \
	MOVQ      (8*i)(DI), R10;  \
	VMOVDQU32 -32(R10), Z8;    \
	VMOVDQA32 Z8, (64*i)(R9)

// TRANSPOSE4_DQ transposes the 4x4 matrices of words formed by the same
// 128-bit lane of r0..r3: afterwards 128-bit lane k of rq holds word 4k+q of
// the four input rows.
#define TRANSPOSE4_DQ(r0, r1, r2, r3) \
	VPUNPCKLDQ  r1, r0, Z8;   \
	VPUNPCKHDQ  r1, r0, Z9;   \
	VPUNPCKLDQ  r3, r2, Z10;  \
	VPUNPCKHDQ  r3, r2, Z11;  \
	VPUNPCKLQDQ Z10, Z8, r0;  \
	VPUNPCKHQDQ Z10, Z8, r1;  \
	VPUNPCKLQDQ Z11, Z9, r2;  \
	VPUNPCKHQDQ Z11, Z9, r3

// TRANSPOSE4_128 transposes the 4x4 matrix of 128-bit lanes in x0..x3.
#define TRANSPOSE4_128(x0, x1, x2, x3) \
	VSHUFI64X2 $0x44, x1, x0, Z8;   \
	VSHUFI64X2 $0xee, x1, x0, Z9;   \
	VSHUFI64X2 $0x44, x3, x2, Z10;  \
	VSHUFI64X2 $0xee, x3, x2, Z11;  \
	VSHUFI64X2 $0x88, Z10, Z8, x0;  \
	VSHUFI64X2 $0xdd, Z10, Z8, x1;  \
	VSHUFI64X2 $0x88, Z11, Z9, x2;  \
	VSHUFI64X2 $0xdd, Z11, Z9, x3

// ROUND is round t of FIPS 180-4 §6.2.2 step 3, koff = 4t being the offset
// of K[t] and w holding W[t]:
//
//	T1 = h + Σ1(e) + Ch(e, f, g) + K[t] + W[t]
//	T2 = Σ0(a) + Maj(a, b, c)
//	d += T1; h = T1 + T2 (the new a; the caller renames)
#define ROUND(koff, a, b, c, d, e, f, g, h, w) \
	VPADDD.BCST koff(AX), w, Z8;     \
	VPADDD      Z8, h, h;            \
	VPRORD      $6, e, Z9;           \
	VPRORD      $11, e, Z10;         \
	VPRORD      $25, e, Z11;         \
	VPTERNLOGD  $0x96, Z11, Z10, Z9; \
	VMOVDQA32   e, Z10;              \
	VPTERNLOGD  $0xca, g, f, Z10;    \
	VPADDD      Z10, Z9, Z9;         \
	VPADDD      Z9, h, h;            \
	VPADDD      h, d, d;             \
	VPRORD      $2, a, Z9;           \
	VPRORD      $13, a, Z10;         \
	VPRORD      $22, a, Z11;         \
	VPTERNLOGD  $0x96, Z11, Z10, Z9; \
	VMOVDQA32   a, Z10;              \
	VPTERNLOGD  $0xe8, c, b, Z10;    \
	VPADDD      Z10, Z9, Z9;         \
	VPADDD      Z9, h, h

// SCHED sets w = W[t+16] = σ1(W[t+14]) + W[t+9] + σ0(W[t+1]) + W[t]
// (FIPS 180-4 §6.2.2 step 1), w holding W[t] and w1, w9, w14 the others.
#define SCHED(w, w1, w9, w14) \
	VPRORD     $7, w1, Z13;         \
	VPRORD     $18, w1, Z14;        \
	VPSRLD     $3, w1, Z15;         \
	VPTERNLOGD $0x96, Z15, Z14, Z13; \
	VPADDD     Z13, w, w;           \
	VPADDD     w9, w, w;            \
	VPRORD     $17, w14, Z13;       \
	VPRORD     $19, w14, Z14;       \
	VPSRLD     $10, w14, Z15;       \
	VPTERNLOGD $0x96, Z15, Z14, Z13; \
	VPADDD     Z13, w, w

// ROUND_SCHED is ROUND followed by SCHED, for t < 48.
#define ROUND_SCHED(koff, a, b, c, d, e, f, g, h, w, w1, w9, w14) \
	ROUND(koff, a, b, c, d, e, f, g, h, w); \
	SCHED(w, w1, w9, w14)

// FEED_FORWARD adds the hash value word j at (R8) to z and stores the sum
// there (FIPS 180-4 §6.2.2 step 4).
#define FEED_FORWARD(j, z) \
	VPADDD    (64*j)(R8), z, z; \
	VMOVDQU32 z, (64*j)(R8)

// func block16(h *[8][16]uint32, p *[16]*byte, n int, carry *[carrySize]byte)
TEXT ·block16(SB), NOSPLIT, $0-32
	MOVQ h+0(FP), R8
	MOVQ p+8(FP), DI
	MOVQ n+16(FP), DX
	MOVQ carry+24(FP), R9
	SHLQ $6, DX
	JZ   done16
	XORQ CX, CX
	LEAQ K256<>(SB), AX
	VBROADCASTI32X4 flip_mask<>(SB), Z12
	TESTQ R9, R9
	JZ    state16
	LEAQ  63(R9), R9
	ANDQ  $-64, R9
	CARRY_INIT(0)
	CARRY_INIT(1)
	CARRY_INIT(2)
	CARRY_INIT(3)
	CARRY_INIT(4)
	CARRY_INIT(5)
	CARRY_INIT(6)
	CARRY_INIT(7)
	CARRY_INIT(8)
	CARRY_INIT(9)
	CARRY_INIT(10)
	CARRY_INIT(11)
	CARRY_INIT(12)
	CARRY_INIT(13)
	CARRY_INIT(14)
	CARRY_INIT(15)

state16:

	VMOVDQU32 (64*0)(R8), Z0
	VMOVDQU32 (64*1)(R8), Z1
	VMOVDQU32 (64*2)(R8), Z2
	VMOVDQU32 (64*3)(R8), Z3
	VMOVDQU32 (64*4)(R8), Z4
	VMOVDQU32 (64*5)(R8), Z5
	VMOVDQU32 (64*6)(R8), Z6
	VMOVDQU32 (64*7)(R8), Z7

loop16:
	// Load one block per lane, then transpose so that Z(16+j) holds
	// word j of every lane.
	TESTQ R9, R9
	JNZ   shifted16
	LOAD_ROW(0, Y16, Z16)
	LOAD_ROW(1, Y17, Z17)
	LOAD_ROW(2, Y18, Z18)
	LOAD_ROW(3, Y19, Z19)
	LOAD_ROW(4, Y20, Z20)
	LOAD_ROW(5, Y21, Z21)
	LOAD_ROW(6, Y22, Z22)
	LOAD_ROW(7, Y23, Z23)
	LOAD_ROW(8, Y24, Z24)
	LOAD_ROW(9, Y25, Z25)
	LOAD_ROW(10, Y26, Z26)
	LOAD_ROW(11, Y27, Z27)
	LOAD_ROW(12, Y28, Z28)
	LOAD_ROW(13, Y29, Z29)
	LOAD_ROW(14, Y30, Z30)
	LOAD_ROW(15, Y31, Z31)
	JMP   loaded16

shifted16:
	LOAD_ROW_SHIFTED(0, Z16)
	LOAD_ROW_SHIFTED(1, Z17)
	LOAD_ROW_SHIFTED(2, Z18)
	LOAD_ROW_SHIFTED(3, Z19)
	LOAD_ROW_SHIFTED(4, Z20)
	LOAD_ROW_SHIFTED(5, Z21)
	LOAD_ROW_SHIFTED(6, Z22)
	LOAD_ROW_SHIFTED(7, Z23)
	LOAD_ROW_SHIFTED(8, Z24)
	LOAD_ROW_SHIFTED(9, Z25)
	LOAD_ROW_SHIFTED(10, Z26)
	LOAD_ROW_SHIFTED(11, Z27)
	LOAD_ROW_SHIFTED(12, Z28)
	LOAD_ROW_SHIFTED(13, Z29)
	LOAD_ROW_SHIFTED(14, Z30)
	LOAD_ROW_SHIFTED(15, Z31)

loaded16:
	TRANSPOSE4_DQ(Z16, Z17, Z18, Z19)
	TRANSPOSE4_DQ(Z20, Z21, Z22, Z23)
	TRANSPOSE4_DQ(Z24, Z25, Z26, Z27)
	TRANSPOSE4_DQ(Z28, Z29, Z30, Z31)
	TRANSPOSE4_128(Z16, Z20, Z24, Z28)
	TRANSPOSE4_128(Z17, Z21, Z25, Z29)
	TRANSPOSE4_128(Z18, Z22, Z26, Z30)
	TRANSPOSE4_128(Z19, Z23, Z27, Z31)

	// Rounds 0-47 also compute W[16..63]; rounds 48-63 only consume.
	// Round t: the working variables a..h are Z((0-t) mod 8)..Z((7-t) mod 8),
	// W[t] is Z(16 + t mod 16).
	ROUND_SCHED(0, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z16, Z17, Z25, Z30)
	ROUND_SCHED(4, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z17, Z18, Z26, Z31)
	ROUND_SCHED(8, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z18, Z19, Z27, Z16)
	ROUND_SCHED(12, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z19, Z20, Z28, Z17)
	ROUND_SCHED(16, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z20, Z21, Z29, Z18)
	ROUND_SCHED(20, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z21, Z22, Z30, Z19)
	ROUND_SCHED(24, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z22, Z23, Z31, Z20)
	ROUND_SCHED(28, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z23, Z24, Z16, Z21)
	ROUND_SCHED(32, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z24, Z25, Z17, Z22)
	ROUND_SCHED(36, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z25, Z26, Z18, Z23)
	ROUND_SCHED(40, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z26, Z27, Z19, Z24)
	ROUND_SCHED(44, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z27, Z28, Z20, Z25)
	ROUND_SCHED(48, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z28, Z29, Z21, Z26)
	ROUND_SCHED(52, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z29, Z30, Z22, Z27)
	ROUND_SCHED(56, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z30, Z31, Z23, Z28)
	ROUND_SCHED(60, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z31, Z16, Z24, Z29)
	ROUND_SCHED(64, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z16, Z17, Z25, Z30)
	ROUND_SCHED(68, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z17, Z18, Z26, Z31)
	ROUND_SCHED(72, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z18, Z19, Z27, Z16)
	ROUND_SCHED(76, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z19, Z20, Z28, Z17)
	ROUND_SCHED(80, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z20, Z21, Z29, Z18)
	ROUND_SCHED(84, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z21, Z22, Z30, Z19)
	ROUND_SCHED(88, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z22, Z23, Z31, Z20)
	ROUND_SCHED(92, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z23, Z24, Z16, Z21)
	ROUND_SCHED(96, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z24, Z25, Z17, Z22)
	ROUND_SCHED(100, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z25, Z26, Z18, Z23)
	ROUND_SCHED(104, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z26, Z27, Z19, Z24)
	ROUND_SCHED(108, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z27, Z28, Z20, Z25)
	ROUND_SCHED(112, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z28, Z29, Z21, Z26)
	ROUND_SCHED(116, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z29, Z30, Z22, Z27)
	ROUND_SCHED(120, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z30, Z31, Z23, Z28)
	ROUND_SCHED(124, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z31, Z16, Z24, Z29)
	ROUND_SCHED(128, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z16, Z17, Z25, Z30)
	ROUND_SCHED(132, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z17, Z18, Z26, Z31)
	ROUND_SCHED(136, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z18, Z19, Z27, Z16)
	ROUND_SCHED(140, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z19, Z20, Z28, Z17)
	ROUND_SCHED(144, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z20, Z21, Z29, Z18)
	ROUND_SCHED(148, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z21, Z22, Z30, Z19)
	ROUND_SCHED(152, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z22, Z23, Z31, Z20)
	ROUND_SCHED(156, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z23, Z24, Z16, Z21)
	ROUND_SCHED(160, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z24, Z25, Z17, Z22)
	ROUND_SCHED(164, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z25, Z26, Z18, Z23)
	ROUND_SCHED(168, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z26, Z27, Z19, Z24)
	ROUND_SCHED(172, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z27, Z28, Z20, Z25)
	ROUND_SCHED(176, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z28, Z29, Z21, Z26)
	ROUND_SCHED(180, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z29, Z30, Z22, Z27)
	ROUND_SCHED(184, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z30, Z31, Z23, Z28)
	ROUND_SCHED(188, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z31, Z16, Z24, Z29)
	ROUND(192, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z16)
	ROUND(196, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z17)
	ROUND(200, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z18)
	ROUND(204, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z19)
	ROUND(208, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z20)
	ROUND(212, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z21)
	ROUND(216, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z22)
	ROUND(220, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z23)
	ROUND(224, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z24)
	ROUND(228, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z25)
	ROUND(232, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z5, Z26)
	ROUND(236, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z4, Z27)
	ROUND(240, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z3, Z28)
	ROUND(244, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z2, Z29)
	ROUND(248, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z1, Z30)
	ROUND(252, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z0, Z31)

	FEED_FORWARD(0, Z0)
	FEED_FORWARD(1, Z1)
	FEED_FORWARD(2, Z2)
	FEED_FORWARD(3, Z3)
	FEED_FORWARD(4, Z4)
	FEED_FORWARD(5, Z5)
	FEED_FORWARD(6, Z6)
	FEED_FORWARD(7, Z7)

	ADDQ $64, CX
	CMPQ CX, DX
	JNE  loop16

	VZEROUPPER

done16:
	RET

// func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL eaxArg+0(FP), AX
	MOVL ecxArg+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// PSHUFB mask that byte-swaps each 32-bit word.
DATA flip_mask<>+0(SB)/8, $0x0405060700010203
DATA flip_mask<>+8(SB)/8, $0x0c0d0e0f08090a0b
GLOBL flip_mask<>(SB), RODATA|NOPTR, $16

// The round constants K of FIPS 180-4 §4.2.2. Being 256 bytes long, the
// table is aligned to 32 bytes by the linker, as blockX2's PADDD with a
// memory operand requires 16-byte alignment.
DATA K256<>+0(SB)/8, $0x71374491428a2f98
DATA K256<>+8(SB)/8, $0xe9b5dba5b5c0fbcf
DATA K256<>+16(SB)/8, $0x59f111f13956c25b
DATA K256<>+24(SB)/8, $0xab1c5ed5923f82a4
DATA K256<>+32(SB)/8, $0x12835b01d807aa98
DATA K256<>+40(SB)/8, $0x550c7dc3243185be
DATA K256<>+48(SB)/8, $0x80deb1fe72be5d74
DATA K256<>+56(SB)/8, $0xc19bf1749bdc06a7
DATA K256<>+64(SB)/8, $0xefbe4786e49b69c1
DATA K256<>+72(SB)/8, $0x240ca1cc0fc19dc6
DATA K256<>+80(SB)/8, $0x4a7484aa2de92c6f
DATA K256<>+88(SB)/8, $0x76f988da5cb0a9dc
DATA K256<>+96(SB)/8, $0xa831c66d983e5152
DATA K256<>+104(SB)/8, $0xbf597fc7b00327c8
DATA K256<>+112(SB)/8, $0xd5a79147c6e00bf3
DATA K256<>+120(SB)/8, $0x1429296706ca6351
DATA K256<>+128(SB)/8, $0x2e1b213827b70a85
DATA K256<>+136(SB)/8, $0x53380d134d2c6dfc
DATA K256<>+144(SB)/8, $0x766a0abb650a7354
DATA K256<>+152(SB)/8, $0x92722c8581c2c92e
DATA K256<>+160(SB)/8, $0xa81a664ba2bfe8a1
DATA K256<>+168(SB)/8, $0xc76c51a3c24b8b70
DATA K256<>+176(SB)/8, $0xd6990624d192e819
DATA K256<>+184(SB)/8, $0x106aa070f40e3585
DATA K256<>+192(SB)/8, $0x1e376c0819a4c116
DATA K256<>+200(SB)/8, $0x34b0bcb52748774c
DATA K256<>+208(SB)/8, $0x4ed8aa4a391c0cb3
DATA K256<>+216(SB)/8, $0x682e6ff35b9cca4f
DATA K256<>+224(SB)/8, $0x78a5636f748f82ee
DATA K256<>+232(SB)/8, $0x8cc7020884c87814
DATA K256<>+240(SB)/8, $0xa4506ceb90befffa
DATA K256<>+248(SB)/8, $0xc67178f2bef9a3f7
GLOBL K256<>(SB), RODATA|NOPTR, $256
