package verity

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
)

// ReadWriterAt is a hash device: [Format] writes the tree and reads lower
// levels back to hash the upper ones, as veritysetup does.
type ReadWriterAt interface {
	io.ReaderAt
	io.WriterAt
}

// Format builds the hash tree of the first p.DataBlocks blocks of data and
// writes it to hashDev, with the superblock unless p.NoSuperblock; it returns
// the root hash. For the same parameters the bytes written are those of
// `veritysetup format` (cryptsetup VERITY_create and VERITY_write_sb).
//
// Like veritysetup, which writes the superblock as a whole hash block, Format
// extends a regular *os.File hash device to at least the end of the hash
// block that holds the superblock.
//
// Format writes the superblock last and zeroes its place first, so a hash
// device whose format fails part-way never carries a valid superblock. It
// writes nothing outside [p.HashOffset, Geometry().HashDeviceSize).
//
// Level 0 (the data) is hashed on Options.Workers goroutines; memory stays
// bounded whatever the size of the data (a few MiB per worker).
func Format(ctx context.Context, data io.ReaderAt, hashDev ReadWriterAt, p Params, o *Options) ([]byte, error) {
	t, err := newTree(p)
	if err != nil {
		return nil, err
	}
	if o == nil {
		o = &Options{}
	}
	if !p.NoSuperblock {
		if err := growFile(hashDev, t.g.HashStartBlock*uint64(p.HashBlockSize)); err != nil {
			return nil, err
		}
		if _, err := hashDev.WriteAt(make([]byte, SuperblockSize), int64(p.HashOffset)); err != nil {
			return nil, fmt.Errorf("clear superblock: %w", err)
		}
	}
	pr := &progress{total: t.totalWork(), fn: o.Progress}
	hbs := int64(p.HashBlockSize)
	for _, s := range t.steps(data, hashDev) {
		err := t.run(ctx, s, o.Workers, pr, func(first uint64, parents, _ []byte) error {
			off := int64(s.parentStart+first) * hbs
			if _, err := hashDev.WriteAt(parents, off); err != nil {
				return fmt.Errorf("write hash level %d at offset %d: %w", s.parentLevel, off, err)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	block, _, _, err := t.rootBlock(data, hashDev)
	if err != nil {
		return nil, err
	}
	root := t.root(block)
	if !p.NoSuperblock {
		sb, err := superblockFor(&p).MarshalBinary()
		if err != nil {
			return nil, err
		}
		if _, err := hashDev.WriteAt(sb, int64(p.HashOffset)); err != nil {
			return nil, fmt.Errorf("write superblock: %w", err)
		}
	}
	return root, nil
}

// growFile extends a regular file (an *os.File) that is shorter than size.
func growFile(dev any, size uint64) error {
	f, ok := dev.(interface {
		Stat() (os.FileInfo, error)
		Truncate(int64) error
	})
	if !ok {
		return nil
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || uint64(st.Size()) >= size {
		return nil
	}
	if err := f.Truncate(int64(size)); err != nil {
		return fmt.Errorf("extend hash file to %d bytes: %w", size, err)
	}
	return nil
}

// Verify checks data and hashDev against root, hashing on all cores. It
// checks top-down, each level against the one above it already verified, so
// the block it blames is the corrupted one: a data block, or a hash block of
// some level. The error is a *[CorruptionError] (errors.Is ErrCorrupted) on a
// mismatch; other errors mean the devices could not be read.
func Verify(ctx context.Context, data, hashDev io.ReaderAt, p Params, root []byte, o *Options) error {
	t, err := newTree(p)
	if err != nil {
		return err
	}
	if o == nil {
		o = &Options{}
	}
	if len(root) != t.g.DigestSize {
		return fmt.Errorf("root hash has %d bytes, want %d for %s", len(root), t.g.DigestSize, p.HashName)
	}
	block, level, off, err := t.rootBlock(data, hashDev)
	if err != nil {
		return err
	}
	if !bytes.Equal(t.root(block), root) {
		return &CorruptionError{Level: level, Block: 0, Offset: off, Detail: "its hash is not the root hash"}
	}
	pr := &progress{total: t.totalWork(), fn: o.Progress}
	hbs := int(p.HashBlockSize)
	steps := t.steps(data, hashDev)
	for j := len(steps) - 1; j >= 0; j-- {
		s := steps[j]
		err := t.run(ctx, s, o.Workers, pr, func(first uint64, parents, stored []byte) error {
			off := int64(s.parentStart+first) * int64(hbs)
			if n, err := hashDev.ReadAt(stored, off); n < len(stored) {
				return fmt.Errorf("read hash level %d at offset %d: %w", s.parentLevel, off, err)
			}
			return t.compare(s, first, parents, stored)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// compare finds the first difference between computed and stored parent
// blocks of step s, starting at parent index first, and blames the child
// whose entry differs (the parents are already trusted).
func (t *tree) compare(s step, first uint64, computed, stored []byte) error {
	if bytes.Equal(computed, stored) {
		return nil
	}
	hbs := int(t.p.HashBlockSize)
	for i := 0; i < len(computed); i++ {
		if computed[i] == stored[i] {
			continue
		}
		pb := uint64(i / hbs)
		inBlock := uint64(i % hbs)
		e := inBlock / uint64(t.g.EntrySize)
		c := (first+pb)*t.g.HashesPerBlock + e
		if e < t.g.HashesPerBlock && inBlock < e*uint64(t.g.EntrySize)+uint64(t.g.DigestSize) && c < s.nChildren {
			return &CorruptionError{
				Level:  s.childLevel,
				Block:  c,
				Offset: s.childBase + int64(c)*int64(s.childSize),
				Detail: fmt.Sprintf("its hash differs from entry %d of hash block %d of level %d", e, first+pb, s.parentLevel),
			}
		}
		return &CorruptionError{
			Level:  s.parentLevel,
			Block:  first + pb,
			Offset: int64(s.parentStart+first+pb) * int64(hbs),
			Detail: fmt.Sprintf("non-zero padding at byte %d", inBlock),
		}
	}
	return nil
}
