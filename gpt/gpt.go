// Package gpt reads and writes GUID Partition Tables as the UEFI
// specification defines them (version 2.10, chapter 5.3, "GUID Partition
// Table (GPT) Disk Layout"): a protective MBR in LBA 0, the primary GPT header
// in LBA 1 followed by the partition entry array, and a backup entry array and
// backup header at the end of the disk.
//
// It works on [io.ReaderAt] and [io.WriterAt] and never touches a device by
// itself. The guest's initrd uses [Read] and [Find] to locate its root,
// verity-hash and state partitions by the type GUIDs of the Discoverable
// Partitions Specification (uapi-group, specs/discoverable_partitions_specification.md)
// and by label; tests and the image builder use [New], [Table.Add] and
// [Table.Write] to make small GPT images, with [VerityUUIDs] giving the DPS
// partition UUIDs of a dm-verity pair.
//
// Read validates everything it uses, never panics, and never allocates a size
// chosen by the disk beyond [MaxEntryArrayBytes].
package gpt

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"unicode/utf16"
)

// Sizes and limits of the format.
const (
	// HeaderSize is the size of the GPT header this package writes (UEFI 5.3.2).
	HeaderSize = 92
	// EntrySize is the partition entry size this package writes (UEFI 5.3.3).
	EntrySize = 128
	// DefaultEntryCount is the number of entries [New] reserves: 16 KiB of
	// entries, the minimum the UEFI specification asks for.
	DefaultEntryCount = 128
	// MaxEntryArrayBytes caps entry count × entry size on read, so that a
	// hostile header cannot make Read allocate much memory.
	MaxEntryArrayBytes = 1 << 20
	// Alignment is the partition start alignment [Table.Add] uses (1 MiB).
	Alignment = 1 << 20
	// NameLen is the length of a partition name in UTF-16 code units.
	NameLen = 36

	revision1 = 0x00010000
	signature = "EFI PART"
)

// Errors callers may test for with [errors.Is].
var (
	// ErrNoProtectiveMBR means LBA 0 has no MBR with a partition of type 0xEE.
	ErrNoProtectiveMBR = errors.New("no protective MBR")
	// ErrHeaderCRC means a GPT header's CRC32 does not match its contents.
	ErrHeaderCRC = errors.New("header CRC32 mismatch")
	// ErrEntriesCRC means a partition entry array's CRC32 does not match the
	// value in its header.
	ErrEntriesCRC = errors.New("partition entry array CRC32 mismatch")
	// ErrInvalid means a header or partition entry breaks a rule of the
	// format; the wrapping error says which.
	ErrInvalid = errors.New("invalid GPT")
)

// Source tells which GPT header a [Table] was read from.
type Source int

const (
	// Primary is the header in LBA 1.
	Primary Source = iota
	// Backup is the header in the last LBA, used when the primary is damaged.
	Backup
)

// String returns "primary" or "backup".
func (s Source) String() string {
	switch s {
	case Primary:
		return "primary"
	case Backup:
		return "backup"
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// Table is a GUID partition table.
type Table struct {
	// SectorSize is the logical block size in bytes (512 or 4096 usually).
	SectorSize int
	// DiskGUID identifies the disk.
	DiskGUID GUID
	// FirstUsableLBA and LastUsableLBA bound the space partitions may use.
	FirstUsableLBA, LastUsableLBA uint64
	// EntryCount is the number of slots in the partition entry array.
	EntryCount uint32
	// EntrySize is the size of one partition entry in bytes.
	EntrySize uint32
	// Partitions are the used entries (type GUID not zero) in slot order.
	Partitions []Partition
	// Source is the header Read used.
	Source Source
	// PrimaryErr is why the primary header was rejected when Source is
	// Backup, nil otherwise.
	PrimaryErr error
}

// Partition is one used entry of the partition entry array.
type Partition struct {
	// Index is the 1-based slot in the entry array: the N of /dev/vdaN.
	Index int
	// Type is the partition type GUID (see the Type* variables).
	Type GUID
	// UUID is the unique partition GUID (PARTUUID).
	UUID GUID
	// Name is the partition label (at most [NameLen] UTF-16 code units).
	Name string
	// Attributes are the attribute bits (see the Attr* constants).
	Attributes uint64
	// FirstLBA and LastLBA are the first and last sector, inclusive.
	FirstLBA, LastLBA uint64
	// Start is the byte offset of the partition: FirstLBA × sector size.
	Start int64
	// Size is the partition size in bytes. [Table.Add] takes it as the
	// requested size (0 means the rest of the disk).
	Size int64
}

// header is a decoded GPT header.
type header struct {
	myLBA, alternateLBA     uint64
	firstUsable, lastUsable uint64
	diskGUID                GUID
	entriesLBA              uint64
	entryCount, entrySize   uint32
	entriesCRC              uint32
}

func checkSectorSize(ss int) error {
	if ss < 512 || ss > 65536 || ss&(ss-1) != 0 {
		return fmt.Errorf("%w: sector size %d is not a power of two between 512 and 65536", ErrInvalid, ss)
	}
	return nil
}

// entrySectors returns how many sectors an entry array of count×size bytes takes.
func entrySectors(count, size uint32, ss int) uint64 {
	n := uint64(count) * uint64(size)
	return (n + uint64(ss) - 1) / uint64(ss)
}

// decodeName decodes a NUL-terminated UTF-16LE name of up to NameLen units.
func decodeName(b []byte) string {
	u := make([]uint16, 0, NameLen)
	for i := 0; i+1 < len(b) && len(u) < NameLen; i += 2 {
		c := uint16(b[i]) | uint16(b[i+1])<<8
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

// encodeName encodes name as UTF-16LE into b (72 bytes, zero-padded).
func encodeName(b []byte, name string) error {
	u := utf16.Encode([]rune(name))
	if len(u) > NameLen {
		return fmt.Errorf("%w: name %q is %d UTF-16 code units, at most %d fit", ErrInvalid, name, len(u), NameLen)
	}
	for i, c := range u {
		if c == 0 {
			return fmt.Errorf("%w: name %q contains NUL", ErrInvalid, name)
		}
		b[2*i] = byte(c)
		b[2*i+1] = byte(c >> 8)
	}
	return nil
}

// validatePartitions checks the partitions of t against its usable range,
// entry count, and each other.
func validatePartitions(t *Table) error {
	seen := make(map[int]bool, len(t.Partitions))
	for _, p := range t.Partitions {
		if p.Index < 1 || uint64(p.Index) > uint64(t.EntryCount) {
			return fmt.Errorf("%w: partition %d: index outside 1..%d", ErrInvalid, p.Index, t.EntryCount)
		}
		if seen[p.Index] {
			return fmt.Errorf("%w: partition %d: index used twice", ErrInvalid, p.Index)
		}
		seen[p.Index] = true
		if p.Type.IsZero() {
			return fmt.Errorf("%w: partition %d: zero type GUID marks an unused entry", ErrInvalid, p.Index)
		}
		if p.FirstLBA > p.LastLBA {
			return fmt.Errorf("%w: partition %d: first LBA %d after last LBA %d", ErrInvalid, p.Index, p.FirstLBA, p.LastLBA)
		}
		if p.FirstLBA < t.FirstUsableLBA || p.LastLBA > t.LastUsableLBA {
			return fmt.Errorf("%w: partition %d: LBAs %d..%d outside the usable range %d..%d",
				ErrInvalid, p.Index, p.FirstLBA, p.LastLBA, t.FirstUsableLBA, t.LastUsableLBA)
		}
	}
	sorted := slices.Clone(t.Partitions)
	slices.SortFunc(sorted, func(a, b Partition) int { return cmp.Compare(a.FirstLBA, b.FirstLBA) })
	for i := 1; i < len(sorted); i++ {
		if q, p := sorted[i-1], sorted[i]; p.FirstLBA <= q.LastLBA {
			return fmt.Errorf("%w: partitions %d and %d overlap", ErrInvalid, q.Index, p.Index)
		}
	}
	return nil
}

func crc(b []byte) uint32 { return crc32.ChecksumIEEE(b) }
