package verity

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/confidisk/confidisk/internal/sha256mb"
	"github.com/confidisk/confidisk/verity/internal/sha512mb"
)

// Options tune [Format] and [Verify]. The zero value is ready to use.
type Options struct {
	// Workers is the number of goroutines that hash in parallel; 0 means
	// runtime.GOMAXPROCS(0).
	Workers int
	// Progress, when set, is called after each chunk of work with the number
	// of bytes hashed so far and the total. Calls are serialized but come
	// from worker goroutines; keep it quick.
	Progress func(done, total uint64)
}

// ErrCorrupted is matched (with errors.Is) by every [CorruptionError].
var ErrCorrupted = errors.New("verity: data does not match the hash tree")

// DataLevel is the [CorruptionError.Level] of a data block.
const DataLevel = -1

// CorruptionError locates a block whose content does not match the tree: a
// data block (Level == DataLevel) or a hash block of the given level.
type CorruptionError struct {
	// Level is DataLevel for a data block, else the hash level (0 hashes the data).
	Level int
	// Block is the index within the level (the data block number for data).
	Block uint64
	// Offset is the byte offset of the block on its device.
	Offset int64
	// Detail says what did not match.
	Detail string
}

func (e *CorruptionError) Error() string {
	if e.Level == DataLevel {
		return fmt.Sprintf("data block %d (data device offset %d) is corrupted: %s", e.Block, e.Offset, e.Detail)
	}
	return fmt.Sprintf("hash block %d of level %d (hash device offset %d) is corrupted: %s", e.Block, e.Level, e.Offset, e.Detail)
}

// Is makes errors.Is(err, ErrCorrupted) true.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupted }

// tree holds what every tree operation needs for one Params.
type tree struct {
	p       Params
	g       *Geometry
	newHash func() hash.Hash
	// mb hashes many blocks at once (SHA-256 or SHA-512 with the salt
	// first, hash type 1: the default and what every current tool
	// writes); nil for other hashes and for type 0.
	mb batchHasher
}

// batchHasher writes the digest of salt ‖ msgs[j] to dst[j], for up to
// mbBatch messages of one length.
type batchHasher func(dst, msgs [][]byte)

// sha256Batch hashes with the multi-buffer kernels of sha256mb.
func sha256Batch(p *sha256mb.Prefixed) batchHasher {
	return func(dst, msgs [][]byte) {
		var sums [mbBatch][sha256mb.Size]byte
		p.SumN(sums[:len(msgs)], msgs)
		for j := range msgs {
			copy(dst[j], sums[j][:])
		}
	}
}

// sha512Batch hashes with the multi-buffer kernel of sha512mb.
func sha512Batch(p *sha512mb.Prefixed) batchHasher {
	return func(dst, msgs [][]byte) {
		var sums [mbBatch][sha512mb.Size]byte
		p.SumN(sums[:len(msgs)], msgs)
		for j := range msgs {
			copy(dst[j], sums[j][:])
		}
	}
}

func newTree(p Params) (*tree, error) {
	g, err := p.Geometry()
	if err != nil {
		return nil, err
	}
	nh, _ := newHash(p.HashName)
	t := &tree{p: p, g: g, newHash: nh}
	switch {
	case p.HashType != 1:
	case p.HashName == "sha256":
		t.mb = sha256Batch(sha256mb.NewPrefixed(p.Salt))
	case p.HashName == "sha512":
		t.mb = sha512Batch(sha512mb.NewPrefixed(p.Salt))
	}
	return t, nil
}

// mbBatch is how many blocks hashChildren hands a batchHasher at once (a
// multiple of sha256mb's 16 lanes and sha512mb's 8).
const mbBatch = 64

// digest writes the tree entry of block into dst[:DigestSize]: H(salt ‖ block)
// for hash type 1, H(block ‖ salt) for type 0 (verity_hash.c verify_hash_block).
func (t *tree) digest(h hash.Hash, block, dst []byte) {
	h.Reset()
	if t.p.HashType == 1 {
		h.Write(t.p.Salt)
		h.Write(block)
	} else {
		h.Write(block)
		h.Write(t.p.Salt)
	}
	h.Sum(dst[:0])
}

// entryOffset is the byte offset of entry i within a hash block.
func (t *tree) entryOffset(i uint64) uint64 { return i * uint64(t.g.EntrySize) }

// step is one level of the tree seen from its parents: nParents hash blocks
// at parentStart (in hash blocks) that hold the entries of nChildren blocks of
// childSize bytes at childBase (in bytes) of child.
type step struct {
	parentLevel int
	parentStart uint64
	nParents    uint64
	child       io.ReaderAt
	childLevel  int // DataLevel or the hash level of the children
	childBase   int64
	childSize   int
	nChildren   uint64
}

// steps lists the levels bottom-up: index 0 hashes the data.
func (t *tree) steps(data, hashDev io.ReaderAt) []step {
	hbs := int64(t.p.HashBlockSize)
	s := make([]step, t.g.Levels)
	for j := range s {
		s[j] = step{parentLevel: j, parentStart: t.g.LevelStart[j], nParents: t.g.LevelBlocks[j]}
		if j == 0 {
			s[j].child, s[j].childLevel, s[j].childBase = data, DataLevel, 0
			s[j].childSize, s[j].nChildren = int(t.p.DataBlockSize), t.p.DataBlocks
		} else {
			s[j].child, s[j].childLevel, s[j].childBase = hashDev, j-1, int64(t.g.LevelStart[j-1])*hbs
			s[j].childSize, s[j].nChildren = int(hbs), t.g.LevelBlocks[j-1]
		}
	}
	return s
}

// totalWork is the number of child bytes all steps hash.
func (t *tree) totalWork() uint64 {
	total := t.p.DataSize()
	for j := 1; j < t.g.Levels; j++ {
		total += t.g.LevelBlocks[j-1] * uint64(t.p.HashBlockSize)
	}
	return total
}

// chunkBytes is about how many child bytes one worker hashes at a time
// from a memory-mapped device, and readChunkBytes from one it reads into a
// buffer of its own (the upper levels of the tree, and devices that cannot
// be mapped): at most one parent's children more. The buffers of all the
// workers together stay under the 4 MiB at which Go's first garbage
// collection starts, which stops the world while the workers are deep in
// assembly (3-5 ms each time, measured on the EPYC with GODEBUG=gctrace=1).
const (
	chunkBytes     = 2 << 20
	readChunkBytes = 512 << 10
)

// progress serializes calls to Options.Progress.
type progress struct {
	mu    sync.Mutex
	done  uint64
	total uint64
	fn    func(done, total uint64)
}

func (p *progress) add(n uint64) {
	if p == nil || p.fn == nil {
		return
	}
	p.mu.Lock()
	p.done += n
	p.fn(p.done, p.total)
	p.mu.Unlock()
}

// run computes the parent blocks of one step in parallel. For each batch of
// consecutive parents it calls emit(first, parents, scratch) with the parent
// blocks (hash blocks, zero-padded) in one buffer, and a buffer of the same
// length that emit may use as it likes (Verify reads the stored blocks into
// it): both belong to the worker, so nothing is allocated per batch. emit
// may be called concurrently and must not keep either buffer. The first
// error stops the run; run returns the error of the lowest batch that
// failed, so that with emit reporting corruption the first bad block is the
// one reported.
func (t *tree) run(ctx context.Context, s step, workers int, pr *progress, emit func(first uint64, parents, scratch []byte) error) error {
	hbs := int(t.p.HashBlockSize)
	hpb := t.g.HashesPerBlock
	perParent := int(hpb) * s.childSize
	chunk := chunkBytes
	if _, ok := s.child.(*Mapping); !ok {
		chunk = readChunkBytes
	}
	batch := uint64(max(1, chunk/perParent))
	nBatches := (s.nParents + batch - 1) / batch
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = int(min(uint64(workers), nBatches))

	var (
		next     atomic.Uint64
		mu       sync.Mutex
		firstBad = nBatches // lowest failed batch
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(b uint64, err error) {
		mu.Lock()
		if b < firstBad {
			firstBad, firstErr = b, err
		}
		mu.Unlock()
	}
	stopped := func(b uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return b > firstBad
	}
	for range workers {
		wg.Go(func() {
			w := &worker{h: t.newHash()}
			var children []byte
			if _, ok := s.child.(*Mapping); !ok {
				children = make([]byte, int(batch)*perParent)
			}
			parents := make([]byte, int(batch)*hbs)
			scratch := make([]byte, len(parents))
			for {
				b := next.Add(1) - 1
				if b >= nBatches || stopped(b) {
					return
				}
				if err := ctx.Err(); err != nil {
					fail(b, err)
					return
				}
				first := b * batch
				np := min(batch, s.nParents-first)
				c0 := first * hpb
				nc := min(np*hpb, s.nChildren-c0)
				off := s.childBase + int64(c0)*int64(s.childSize)
				buf, ok := mapped(s.child, off, int(nc)*s.childSize)
				if !ok {
					buf = children[:int(nc)*s.childSize]
					if n, err := s.child.ReadAt(buf, off); n < len(buf) {
						fail(b, t.shortRead(s, c0+uint64(n/s.childSize), err))
						return
					}
				}
				out := parents[:int(np)*hbs]
				if err := t.hashChildren(w, s, buf, out, nc); err != nil {
					fail(b, err)
					return
				}
				if ok {
					s.child.(*Mapping).release(off, len(buf))
				}
				if err := emit(first, out, scratch[:len(out)]); err != nil {
					fail(b, err)
					return
				}
				pr.add(uint64(len(buf)))
			}
		})
	}
	wg.Wait()
	return firstErr
}

// mapped returns the bytes of a memory-mapped child device without a copy.
func mapped(r io.ReaderAt, off int64, n int) ([]byte, bool) {
	if m, ok := r.(*Mapping); ok {
		return m.slice(off, n)
	}
	return nil, false
}

// worker is what one of run's goroutines hashes with: a hash for the
// one-at-a-time path, and the message and digest lists for the batch
// hasher, allocated once per worker rather than per call (passed through a
// function value, they would escape to the heap on every call: 1.85 MB per
// GiB, enough to start a garbage collection).
type worker struct {
	h         hash.Hash
	msgs, dst [mbBatch][]byte
}

// hashChildren writes the entries of the nc child blocks in buf into the
// zeroed parent blocks out. A fault while reading a memory-mapped file that
// shrank under us becomes an error.
func (t *tree) hashChildren(w *worker, s step, buf, out []byte, nc uint64) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// With SetPanicOnFault a fault panics with an error that has the
			// faulting address; anything else is a bug and panics on.
			fault, ok := r.(interface {
				error
				Addr() uintptr
			})
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("read level %d blocks: memory fault at %#x (did the device shrink while being hashed?): %w", s.childLevel, fault.Addr(), fault)
		}
	}()
	hbs := int(t.p.HashBlockSize)
	hpb := t.g.HashesPerBlock
	clear(out)
	entry := func(i uint64) []byte { return out[int(i/hpb)*hbs+int(t.entryOffset(i%hpb)):] }
	if t.mb != nil {
		msgs, dst := &w.msgs, &w.dst
		for first := uint64(0); first < nc; first += mbBatch {
			n := int(min(mbBatch, nc-first))
			for j := range n {
				c := int(first) + j
				msgs[j] = buf[c*s.childSize : (c+1)*s.childSize]
				dst[j] = entry(first + uint64(j))
			}
			t.mb(dst[:n], msgs[:n])
		}
		return nil
	}
	for i := range nc {
		t.digest(w.h, buf[int(i)*s.childSize:int(i+1)*s.childSize], entry(i))
	}
	return nil
}

// shortRead explains a read that ended before child block c.
func (t *tree) shortRead(s step, c uint64, err error) error {
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if s.childLevel == DataLevel {
		return fmt.Errorf("read data block %d of %d: data device ends early (it must hold %d bytes): %w",
			c, t.p.DataBlocks, t.p.DataSize(), err)
	}
	return fmt.Errorf("read hash block %d of level %d: hash device ends early (it must hold %d bytes): %w",
		c, s.childLevel, t.g.HashDeviceSize, err)
}

// readBlock reads one whole block of size n at off, or explains why not.
func readBlock(r io.ReaderAt, n int, off int64, what string) ([]byte, error) {
	b := make([]byte, n)
	if got, err := r.ReadAt(b, off); got < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s at offset %d: device ends early: %w", what, off, err)
	}
	return b, nil
}

// rootBlock returns the block whose digest is the root hash, and where it is.
func (t *tree) rootBlock(data, hashDev io.ReaderAt) (block []byte, level int, off int64, err error) {
	if t.g.Levels == 0 {
		b, err := readBlock(data, int(t.p.DataBlockSize), 0, "data block 0")
		return b, DataLevel, 0, err
	}
	top := t.g.Levels - 1
	off = int64(t.g.LevelStart[top]) * int64(t.p.HashBlockSize)
	b, err := readBlock(hashDev, int(t.p.HashBlockSize), off, "top-level hash block")
	return b, top, off, err
}

// root computes the root hash from the root block.
func (t *tree) root(block []byte) []byte {
	d := make([]byte, t.g.DigestSize)
	t.digest(t.newHash(), block, d)
	return d
}
