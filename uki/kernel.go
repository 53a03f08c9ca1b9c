package uki

import (
	"bytes"
	"errors"
)

// CheckKernel checks that b is an x86 Linux bzImage with an EFI stub, the
// kind of kernel systemd-stub starts from .linux: the "MZ" PE header at 0
// and the boot protocol's "HdrS" signature at 0x202 (Linux
// Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header").
func CheckKernel(b []byte) error {
	if len(b) < 0x206 || !bytes.Equal(b[0x202:0x206], []byte("HdrS")) {
		return errors.New("not a bzImage: no HdrS boot-protocol header at 0x202")
	}
	if !bytes.HasPrefix(b, []byte("MZ")) {
		return errors.New("bzImage without an efi stub (no MZ header): systemd-stub cannot start it")
	}
	if _, err := parseImage(b); err != nil {
		return errors.New("bzImage without a valid efi stub pe header: " + err.Error())
	}
	return nil
}
