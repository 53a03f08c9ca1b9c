//go:build !purego

package sha256mb

import (
	"sync"
	"time"
)

// groupKernel returns the kernel that SumN hashes groups of messages with.
// Where the CPU has both block16 and blockX4, which one is faster depends on
// the microarchitecture, not on any CPUID bit: on Intel's Emerald Rapids
// SHA256RNDS2 issues once per 3 cycles and block16 is about twice as fast;
// on AMD's Zen 4, which runs 512-bit instructions in two halves,
// SHA256RNDS2 issues every cycle and blockX4 is about 20 % faster. So the
// first call times both on the same 64 KiB, best of five, and keeps the
// faster: the choice decides the speed only, never the digests.
var groupKernel = sync.OnceValue(func() kernel {
	switch {
	case have16 && have4:
		return fasterGroupKernel()
	case have16:
		return kernel16
	}
	return kernelNone
})

// calibrationBlocks is how many 64-byte blocks per lane the calibration
// hashes with block16 (and, over four calls, with blockX4): 64 KiB in all,
// tens of microseconds.
const calibrationBlocks = 64

// fasterGroupKernel times block16 and blockX4 on the same data and returns
// the faster.
func fasterGroupKernel() kernel {
	buf := make([]byte, 16*calibrationBlocks*blockSize)
	var h16 [8][16]uint32
	var p16 [16]*byte
	for l := range p16 {
		p16[l] = &buf[l*calibrationBlocks*blockSize]
	}
	var h4 [4][8]uint32
	var p4 [4]*byte
	best16, best4 := time.Duration(1<<63-1), time.Duration(1<<63-1)
	for range 5 {
		t := time.Now()
		block16(&h16, &p16, calibrationBlocks)
		best16 = min(best16, time.Since(t))
		t = time.Now()
		for g := 0; g < 16; g += 4 {
			copy(p4[:], p16[g:g+4])
			blockX4(&h4, &p4, calibrationBlocks)
		}
		best4 = min(best4, time.Since(t))
	}
	if best4 < best16 {
		return kernelX4
	}
	return kernel16
}
