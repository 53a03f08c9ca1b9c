//go:build !amd64 || purego

package aesxts

const haveVAES = false

func encUnitsVAES(rk1, rk2 *[maxRounds + 1][16]byte, rounds int, dst, src *byte, unitBlocks, units int, first, step uint64) {
	panic("aesxts: encUnitsVAES without assembly")
}
