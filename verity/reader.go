package verity

import (
	"bytes"
	"container/list"
	"fmt"
	"hash"
	"io"
	"sync"
)

// DefaultCacheBlocks is the number of verified hash blocks a [Reader] keeps.
const DefaultCacheBlocks = 256

// Reader reads verity-protected data: every data block is checked against the
// hash tree, from the trusted root hash down, before any byte of it is
// returned — in userspace, the way the kernel's dm-verity target checks reads.
// Verified hash blocks are cached (least recently used first out), so
// sequential reads hash each tree block once.
//
// A Reader is safe for concurrent use. A block that does not match yields a
// *[CorruptionError] and no data from that block.
type Reader struct {
	t       *tree
	data    io.ReaderAt
	hashDev io.ReaderAt
	root    []byte

	mu    sync.Mutex
	cache map[cacheKey]*list.Element
	lru   *list.List
	limit int
	pool  sync.Pool
}

type cacheKey struct {
	level int
	index uint64
}

type cacheEntry struct {
	key   cacheKey
	block []byte
}

// NewReader returns a Reader of the data described by p, checked against
// hashDev and root. cacheBlocks bounds the cache of verified hash blocks
// (0 means DefaultCacheBlocks).
func NewReader(data, hashDev io.ReaderAt, p Params, root []byte, cacheBlocks int) (*Reader, error) {
	t, err := newTree(p)
	if err != nil {
		return nil, err
	}
	if len(root) != t.g.DigestSize {
		return nil, fmt.Errorf("root hash has %d bytes, want %d for %s", len(root), t.g.DigestSize, p.HashName)
	}
	if cacheBlocks <= 0 {
		cacheBlocks = DefaultCacheBlocks
	}
	r := &Reader{
		t: t, data: data, hashDev: hashDev, root: bytes.Clone(root),
		cache: make(map[cacheKey]*list.Element), lru: list.New(), limit: cacheBlocks,
	}
	r.pool.New = func() any { return t.newHash() }
	return r, nil
}

// Size is the number of bytes the Reader covers.
func (r *Reader) Size() int64 { return int64(r.t.p.DataSize()) }

// ReadAt implements [io.ReaderAt] over the verified data. It returns io.EOF
// when the read reaches past [Reader.Size].
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("verity: negative offset %d", off)
	}
	size := r.Size()
	if off >= size {
		return 0, io.EOF
	}
	bs := int64(r.t.p.DataBlockSize)
	n := 0
	block := make([]byte, bs)
	for n < len(p) && off < size {
		idx := uint64(off / bs)
		if err := r.readBlock(idx, block); err != nil {
			return n, err
		}
		c := copy(p[n:], block[off%bs:])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readBlock reads data block idx into buf and checks it.
func (r *Reader) readBlock(idx uint64, buf []byte) error {
	bs := int64(r.t.p.DataBlockSize)
	off := int64(idx) * bs
	if n, err := r.data.ReadAt(buf, off); n < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read data block %d: %w", idx, err)
	}
	got := make([]byte, r.t.g.DigestSize)
	h := r.pool.Get().(hash.Hash)
	r.t.digest(h, buf, got)
	r.pool.Put(h)
	var want []byte
	if r.t.g.Levels == 0 {
		want = r.root
	} else {
		parent, err := r.hashBlock(0, idx/r.t.g.HashesPerBlock)
		if err != nil {
			return err
		}
		e := r.t.entryOffset(idx % r.t.g.HashesPerBlock)
		want = parent[e : e+uint64(r.t.g.DigestSize)]
	}
	if !bytes.Equal(got, want) {
		return &CorruptionError{Level: DataLevel, Block: idx, Offset: off, Detail: "its hash does not match the hash tree"}
	}
	return nil
}

// hashBlock returns the verified hash block index of level, reading and
// checking it (and, recursively, its parents) when it is not cached.
func (r *Reader) hashBlock(level int, index uint64) ([]byte, error) {
	key := cacheKey{level, index}
	r.mu.Lock()
	if el, ok := r.cache[key]; ok {
		r.lru.MoveToFront(el)
		b := el.Value.(*cacheEntry).block
		r.mu.Unlock()
		return b, nil
	}
	r.mu.Unlock()

	hbs := int64(r.t.p.HashBlockSize)
	off := int64(r.t.g.LevelStart[level]+index) * hbs
	block, err := readBlock(r.hashDev, int(hbs), off, fmt.Sprintf("hash block %d of level %d", index, level))
	if err != nil {
		return nil, err
	}
	got := r.t.root(block)
	var want []byte
	if level == r.t.g.Levels-1 {
		want = r.root
	} else {
		parent, err := r.hashBlock(level+1, index/r.t.g.HashesPerBlock)
		if err != nil {
			return nil, err
		}
		e := r.t.entryOffset(index % r.t.g.HashesPerBlock)
		want = parent[e : e+uint64(r.t.g.DigestSize)]
	}
	if !bytes.Equal(got, want) {
		return nil, &CorruptionError{Level: level, Block: index, Offset: off, Detail: "its hash does not match the hash tree"}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.cache[key]; ok { // another reader got there first
		r.lru.MoveToFront(el)
		return el.Value.(*cacheEntry).block, nil
	}
	r.cache[key] = r.lru.PushFront(&cacheEntry{key: key, block: block})
	for r.lru.Len() > r.limit {
		old := r.lru.Remove(r.lru.Back()).(*cacheEntry)
		delete(r.cache, old.key)
	}
	return block, nil
}
