// Package loop attaches image files to Linux loop block devices
// (loop(4), drivers/block/loop.c): it asks /dev/loop-control for a free
// device (LOOP_CTL_GET_FREE) and configures it in one step with
// LOOP_CONFIGURE (Linux 5.8+), falling back to LOOP_SET_FD plus
// LOOP_SET_STATUS64 on older kernels. Missing /dev/loopN nodes (an initrd
// without devtmpfs entries) are created.
//
// The package is Linux only; on other systems it is empty.
package loop
