//go:build !purego

package sha256mb

import (
	"sync"
	"time"
)

// groupKernel returns the kernel SumN hashes groups of messages with. Where
// the CPU has both block16 and blockX2, which is faster depends on the
// microarchitecture, not on any CPUID bit (see the package documentation:
// block16 is about twice as fast on Emerald Rapids, blockX2 about 10 %
// faster on Zen 4), so the first call times both on the same 64 KiB, best of
// five, and keeps the faster. The choice decides the speed only, never the
// digests.
var groupKernel = sync.OnceValue(func() kernel {
	switch {
	case have16 && haveX2:
		return fasterGroupKernel()
	case have16:
		return kernel16
	}
	return kernelPairs
})

// calibrationBlocks is how many 64-byte blocks per lane the calibration
// hashes with block16 (and, over eight calls, with blockX2): 64 KiB in all,
// about 20 µs.
const calibrationBlocks = 64

// fasterGroupKernel times block16 and blockX2 on the same data and returns
// the faster.
func fasterGroupKernel() kernel {
	const lane = calibrationBlocks * blockSize
	buf := make([]byte, 16*lane)
	var h16 [8][16]uint32
	var p16 [16]*byte
	for l := range p16 {
		p16[l] = &buf[l*lane]
	}
	var h0, h1 [8]uint32
	best16, best2 := time.Duration(1<<63-1), time.Duration(1<<63-1)
	for range 5 {
		t := time.Now()
		block16(&h16, &p16, calibrationBlocks)
		best16 = min(best16, time.Since(t))
		t = time.Now()
		for l := 0; l < 16; l += 2 {
			blockX2(&h0, &h1, buf[l*lane:(l+1)*lane], buf[(l+1)*lane:(l+2)*lane])
		}
		best2 = min(best2, time.Since(t))
	}
	if best2 < best16 {
		return kernelPairs
	}
	return kernel16
}
