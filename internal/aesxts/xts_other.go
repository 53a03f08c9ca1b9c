//go:build !amd64 || purego

package aesxts

const haveVAES = false

func encVAES(rk *[maxRounds + 1][16]byte, rounds int, tw *[4][16]byte, dst, src *byte, n int) {
	panic("aesxts: encVAES without assembly")
}
