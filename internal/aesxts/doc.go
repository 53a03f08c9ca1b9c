// Package aesxts encrypts disk sectors with XTS-AES (IEEE Std 1619-2007),
// the aes-xts-plain64 cipher of dm-crypt and LUKS2, fast enough to write a
// whole pre-encrypted volume in userspace.
//
// On amd64 CPUs with VAES, VPCLMULQDQ and AVX-512 (F, BW), one kernel
// encrypts runs of data units: per unit it encrypts the unit number with K2
// (AES-NI), then sixteen 16-byte blocks at a time, four in each ZMM register,
// deriving the tweaks four at a time by carry-less multiplication. Elsewhere,
// and for the decryption direction, the code uses golang.org/x/crypto/xts
// over crypto/aes. Both give the same bytes.
//
// Sources (read for facts; no code is copied): IEEE Std 1619-2007 §5.1
// (the XTS-AES-blockEnc procedure, the tweak T = E_K2(i) ⊗ α^j, the
// multiplication by α in GF(2^128) with the polynomial x^128 + x^7 + x^2 +
// x + 1, little-endian); FIPS 197 §5.1 and §5.2 (AES rounds, KeyExpansion);
// the Intel 64 and IA-32 Architectures Software Developer's Manual, Vol. 2
// (VAESENC, VAESENCLAST, VPCLMULQDQ, VPTERNLOGQ); Linux
// drivers/md/dm-crypt.c (crypt_iv_plain64_gen: the IV is the 512-byte
// sector number, little-endian, zero-padded to 16 bytes).
package aesxts
