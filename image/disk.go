package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/confidisk/confidisk/gpt"
	"github.com/confidisk/confidisk/verity"
)

// Layout is the disk an image build writes, laid out as the Discoverable
// Partitions Specification (uapi-group specs/discoverable_partitions_specification.md)
// asks: the ESP, the verity-protected root (or /usr) and its hash
// partition, whose UUIDs are the halves of the root hash, and the blank
// partition the first boot encrypts.
type Layout struct {
	// ESP is the EFI System Partition's FAT file system image; the
	// partition is as large as the file.
	ESP string
	// Data and Hash are the verity data (a file system image) and hash
	// tree images; RootHash is the tree's root hash.
	Data, Hash string
	RootHash   []byte
	// Usr lays the verity pair out as /usr partitions (usrhash=) instead
	// of root ones (roothash=).
	Usr bool
	// StateSize is the size of the state partition, labelled StateLabel
	// ("state" when empty): what `confidisk boot` encrypts on first boot.
	StateSize  int64
	StateLabel string
	// Seed gives the disk GUID and the ESP's and state partition's UUIDs.
	Seed Seed
	// Extension makes a system extension image (systemd-sysext(8), a
	// Discoverable Disk Image): only the verity pair, no ESP and no state
	// partition; ESP and StateSize are unused.
	Extension bool
	// VeritySig, when set, is the file holding the verity signature
	// partition's contents ([VeritySigPartition]), laid out after the hash
	// partition: the order of systemd-repart's definitions (usr,
	// usr-verity, usr-verity-sig). Only with Usr and Extension.
	VeritySig string
	// MoveData lets Write turn the Data file itself into the disk (a
	// scratch file in out's file system): its blocks are shifted to the
	// partition's offset with FALLOC_FL_INSERT_RANGE instead of copied.
	// Where the file system cannot (tmpfs, ext4 without extents), or for a
	// caller's own image, the data is copied.
	MoveData bool
}

// Partition is one partition of a written disk.
type Partition struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	UUID  string `json:"uuid"`
	Index int    `json:"index"`
	Start int64  `json:"start"`
	Size  int64  `json:"size"`
}

// verityTypes are the partition types of the verity pair.
func (l *Layout) verityTypes() (data, hash gpt.GUID, dataName, hashName string) {
	if l.Usr {
		return gpt.TypeUsrX86_64, gpt.TypeUsrVerityX86_64, "usr-x86-64", "usr-x86-64-verity"
	}
	return gpt.TypeRootX86_64, gpt.TypeRootVerityX86_64, "root-x86-64", "root-x86-64-verity"
}

// plan is one partition of the disk and the file it holds ("" for none).
type plan struct {
	part gpt.Partition
	src  string
}

// plans are the partitions of l in table order, with their sizes from
// their files.
func (l *Layout) plans() ([]plan, error) {
	dataUUID, hashUUID := gpt.VerityUUIDs(l.RootHash)
	dt, ht, dn, hn := l.verityTypes()
	ps := []plan{
		{gpt.Partition{Type: dt, UUID: dataUUID, Name: dn, Attributes: gpt.AttrReadOnly}, l.Data},
		{gpt.Partition{Type: ht, UUID: hashUUID, Name: hn, Attributes: gpt.AttrReadOnly}, l.Hash},
	}
	if l.VeritySig != "" {
		if !l.Usr || !l.Extension {
			return nil, errors.New("a verity signature partition is laid out only in a /usr extension image")
		}
		ps = append(ps, plan{gpt.Partition{Type: gpt.TypeUsrVeritySigX86_64, UUID: VeritySigUUID(l.Seed), Name: veritySigLabel}, l.VeritySig})
	}
	if !l.Extension {
		if l.StateSize <= 0 {
			return nil, fmt.Errorf("state partition size %d: want a positive size", l.StateSize)
		}
		label := l.StateLabel
		if label == "" {
			label = "state"
		}
		esp := plan{gpt.Partition{Type: gpt.TypeESP, UUID: l.Seed.UUID("esp partition uuid"), Name: "esp"}, l.ESP}
		state := plan{gpt.Partition{Type: gpt.TypeVar, UUID: l.Seed.UUID("state partition uuid"), Name: label, Size: l.StateSize}, ""}
		ps = append([]plan{esp}, append(ps, state)...)
	}
	for i := range ps {
		if ps[i].src == "" {
			continue
		}
		fi, err := os.Stat(ps[i].src)
		if err != nil {
			return nil, err
		}
		ps[i].part.Size = fi.Size()
	}
	return ps, nil
}

// table lays the planned partitions out in a GPT, each aligned to 1 MiB,
// and returns it with the disk's size.
func (l *Layout) table(ps []plan) (*gpt.Table, int64, error) {
	const mib = 1 << 20
	total := int64(mib) // the primary header and entries, aligned
	for _, p := range ps {
		total += (p.part.Size + mib - 1) &^ (mib - 1)
	}
	total += mib // and the backup
	t, err := gpt.New(total, 512)
	if err != nil {
		return nil, 0, err
	}
	t.DiskGUID = l.Seed.UUID("disk guid")
	for _, p := range ps {
		if _, err := t.Add(p.part); err != nil {
			return nil, 0, err
		}
	}
	return t, total, nil
}

// Write writes the disk image to out, through a temporary file renamed
// into place only when complete, so that out is never a half-written
// image. The image is sparse where the partitions are.
func (l *Layout) Write(out string) ([]Partition, error) {
	ps, err := l.plans()
	if err != nil {
		return nil, err
	}
	t, total, err := l.table(ps)
	if err != nil {
		return nil, fmt.Errorf("plan the disk: %w", err)
	}
	data := 1 // the verity data partition's place in ps
	if l.Extension {
		data = 0
	}
	tmp, err := l.diskFile(out, t.Partitions[data].Start)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	srcs := make([]string, len(ps))
	for i, p := range ps {
		srcs[i] = p.src
	}
	if tmp.Name() == l.Data {
		srcs[data] = "" // already in place
	}
	err = writeDisk(tmp, t, total, srcs)
	if err = errors.Join(err, tmp.Sync(), tmp.Close()); err != nil {
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return nil, err
	}
	return partitions(t), nil
}

// diskFile returns the file the disk is written to: with MoveData, the
// data file with dataStart bytes inserted before its contents, else a new
// temporary file next to out.
func (l *Layout) diskFile(out string, dataStart int64) (*os.File, error) {
	if l.MoveData {
		f, err := os.OpenFile(l.Data, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		if unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_INSERT_RANGE, 0, dataStart) == nil {
			return f, nil
		}
		f.Close() // not supported here: copy instead
	}
	return os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
}

func writeDisk(f *os.File, t *gpt.Table, total int64, srcs []string) error {
	if err := f.Truncate(total); err != nil {
		return err
	}
	if err := t.Write(f, total); err != nil {
		return err
	}
	for i, p := range srcs {
		if p == "" {
			continue
		}
		if err := copyAt(f, t.Partitions[i].Start, p); err != nil {
			return err
		}
	}
	return nil
}

// copyAt copies the file src into f at off (copy_file_range where the
// kernel has it, so the data is not read into this process).
func copyAt(f *os.File, off int64, src string) error {
	s, err := os.Open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(f, s); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

func partitions(t *gpt.Table) []Partition {
	out := make([]Partition, len(t.Partitions))
	for i, p := range t.Partitions {
		out[i] = Partition{Name: p.Name, Type: p.Type.String(), UUID: p.UUID.String(), Index: p.Index, Start: p.Start, Size: p.Size}
	}
	return out
}

// formatVerity writes the hash tree of the file system image data to hash
// (veritysetup's defaults: sha256, 4 KiB blocks, a superblock) with the
// salt and UUID derived from seed, and returns the root hash.
func formatVerity(ctx context.Context, data, hash string, seed Seed) ([]byte, error) {
	d, err := os.Open(data)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fi, err := d.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size()%verity.DefaultBlockSize != 0 {
		return nil, fmt.Errorf("%s: size %d is not a multiple of %d", data, fi.Size(), verity.DefaultBlockSize)
	}
	p := verity.DefaultParams(uint64(fi.Size() / verity.DefaultBlockSize))
	salt := seed.Derive("verity salt")
	p.Salt = salt[:]
	p.UUID = seed.UUID("verity uuid")
	src, err := verity.Map(d, fi.Size())
	if err != nil {
		return nil, err
	}
	defer src.Close()
	h, err := os.Create(hash)
	if err != nil {
		return nil, err
	}
	root, err := verity.Format(ctx, src, h, p, nil)
	if err = errors.Join(err, h.Close()); err != nil {
		return nil, fmt.Errorf("verity format: %w", err)
	}
	return root, nil
}
