package uki

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"
)

// PCRSysexts holds the system extensions systemd-stub passes to the initrd
// (TPM2_PCR_SYSEXTS).
const PCRSysexts = 13

// SysextDir is where systemd-stub puts the system extensions it finds next
// to the UKI (<uki>.efi.extra.d/*.raw) in the initrd.
const SysextDir = ".extra/sysext"

// Sidecar is a file next to a UKI, in its .extra.d directory, that
// systemd-stub passes to the kernel in a cpio archive of its own.
type Sidecar struct {
	Name string
	Data []byte
}

// CheckSysextName reports whether systemd-stub picks up name as a system
// extension (src/boot/efi/stub.c and cpio.c, pack_cpio): a file name ending
// in ".raw" (any case) but not ".confext.raw" (257 and later take those as
// configuration extensions), ASCII, not starting with ".", at most 255
// characters.
func CheckSysextName(name string) error {
	lower := strings.ToLower(name)
	switch {
	case !strings.HasSuffix(lower, ".raw") || strings.HasSuffix(lower, ".confext.raw"):
		return fmt.Errorf("system extension %q: systemd-stub takes only NAME.raw (not .confext.raw)", name)
	case strings.HasPrefix(name, ".") || len(name) > 255 || strings.ContainsAny(name, `/\`):
		return fmt.Errorf("system extension %q: a file name of at most 255 characters, not starting with '.'", name)
	}
	for _, r := range name {
		if r > 0x7f {
			return fmt.Errorf("system extension %q: systemd-stub skips names that are not ASCII", name)
		}
	}
	return nil
}

// SysextCPIO is the archive systemd-stub makes of the system extensions
// next to a UKI (src/boot/efi/cpio.c, pack_cpio, the same in 252 to 257):
// newc headers with inodes counted from 1, uid, gid and mtime 0, nlink 1;
// the directories ".extra" and ".extra/sysext" (0555), then the files
// sorted by name (0444), each header and content padded to 4 bytes, then
// the trailer. It is nil without files (the stub then measures nothing).
func SysextCPIO(files []Sidecar) []byte {
	if len(files) == 0 {
		return nil
	}
	sorted := append([]Sidecar(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var b []byte
	inode := uint32(1)
	entry := func(mode uint32, name string, data []byte) {
		b = append(b, "070701"...)
		for _, w := range []uint32{inode, mode, 0, 0, 1, 0, uint32(len(data)), 0, 0, 0, 0, uint32(len(name) + 1), 0} {
			b = fmt.Appendf(b, "%08x", w)
		}
		inode++
		b = pad4(append(append(b, name...), 0))
		b = pad4(append(b, data...))
	}
	entry(0o040555, ".extra", nil)
	entry(0o040555, SysextDir, nil)
	for _, f := range sorted {
		entry(0o100444, SysextDir+"/"+f.Name, f.Data)
	}
	// The stub's literal trailer: nlink 1, name size 0xB in capitals.
	b = append(b, "070701"+strings.Repeat("00000000", 4)+"00000001"+strings.Repeat("00000000", 6)+"0000000B"+"00000000"+"TRAILER!!!\x00\x00\x00\x00"...)
	return b
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// SysextEvents are systemd-stub's PCR 13 measurements of files: one
// EV_IPL "System extension initrd" event of the whole [SysextCPIO]
// archive, or none without files.
func SysextEvents(files []Sidecar) []Event {
	if len(files) == 0 {
		return nil
	}
	return []Event{{PCR: PCRSysexts, Description: "System extension initrd", Digest: sha256.Sum256(SysextCPIO(files))}}
}
