// Package probe recognises what a block device or image already holds, by
// the magic numbers blkid looks for, so that confidisk never formats over a
// file system or volume by accident (and the guest can tell a blank state
// partition from one that holds something).
package probe

import (
	"bytes"
	"encoding/binary"
	"io"
)

// signature is one magic number at a fixed offset.
type signature struct {
	name  string
	off   int64
	magic []byte
}

// signatures are the common ones (util-linux libblkid superblocks/*.c).
var signatures = []signature{
	{"LUKS", 0, []byte("LUKS\xba\xbe")},
	{"LUKS2 (secondary header)", 16384, []byte("SKUL\xba\xbe")},
	{"verity", 0, []byte("verity\x00\x00")},
	{"xfs", 0, []byte("XFSB")},
	{"squashfs", 0, []byte("hsqs")},
	{"ext2/3/4", 1080, []byte{0x53, 0xef}},
	{"erofs", 1024, []byte{0xe2, 0xe1, 0xf5, 0xe0}},
	{"btrfs", 65600, []byte("_BHRfS_M")},
	{"swap", 4086, []byte("SWAPSPACE2")},
	{"swap", 4086, []byte("SWAP-SPACE")},
	{"vfat", 82, []byte("FAT32   ")},
	{"vfat", 54, []byte("FAT16   ")},
	{"vfat", 54, []byte("FAT12   ")},
	{"iso9660", 32769, []byte("CD001")},
	{"dm-integrity", 0, []byte("integrt\x00")},
	{"GPT partition table", 512, []byte("EFI PART")},
	{"GPT partition table", 4096, []byte("EFI PART")},
}

// Identify returns the name of the first signature found on r, or "" when
// none is. A device shorter than a signature's offset simply lacks it.
func Identify(r io.ReaderAt) (string, error) {
	for _, s := range signatures {
		b := make([]byte, len(s.magic))
		n, err := r.ReadAt(b, s.off)
		if n < len(b) {
			if err == nil || err == io.EOF {
				continue
			}
			return "", err
		}
		if bytes.Equal(b, s.magic) {
			return s.name, nil
		}
	}
	mbr := make([]byte, 512)
	if n, _ := r.ReadAt(mbr, 0); n == 512 && mbr[510] == 0x55 && mbr[511] == 0xaa && hasPartition(mbr) {
		return "MBR partition table", nil
	}
	return "", nil
}

// hasPartition reports whether an MBR holds a non-empty partition entry.
func hasPartition(mbr []byte) bool {
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i : 446+16*(i+1)]
		if e[4] != 0 && binary.LittleEndian.Uint32(e[12:]) != 0 {
			return true
		}
	}
	return false
}

// IsBlank reports whether the first n bytes of r are all zero (a device the
// host handed over without anything on it).
func IsBlank(r io.ReaderAt, n int64) (bool, error) {
	buf := make([]byte, 64<<10)
	for off := int64(0); off < n; off += int64(len(buf)) {
		m := int(min(int64(len(buf)), n-off))
		got, err := r.ReadAt(buf[:m], off)
		if got < m {
			if err == io.EOF {
				return true, nil
			}
			return false, err
		}
		for _, c := range buf[:m] {
			if c != 0 {
				return false, nil
			}
		}
	}
	return true, nil
}

// MountType is the kernel's file system type for a name [Identify]
// returns ("ext2/3/4" mounts as "ext4"), or "" when what is not one of the
// file systems a verity root may hold: ext4, erofs, squashfs, xfs, btrfs.
func MountType(what string) string {
	switch what {
	case "ext2/3/4":
		return "ext4"
	case "erofs", "squashfs", "xfs", "btrfs":
		return what
	}
	return ""
}
