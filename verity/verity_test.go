package verity

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// memDev is an in-memory device that grows on write. Safe for concurrent use.
type memDev struct {
	mu sync.Mutex
	b  []byte
}

func (m *memDev) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

// TestCompatVectors checks the root hashes of cryptsetup's
// tests/verity-compat-test (check_root_hash): 8 MiB of zeros.
func TestCompatVectors(t *testing.T) {
	const salt = "e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d"
	tests := []struct {
		bs       uint32
		alg      string
		hashType uint32
		salt     string
		root     string
	}{
		{512, "sha256", 1, salt, "9de18652fe74edfb9b805aaed72ae2aa48f94333f1ba5c452ac33b1c39325174"},
		{1024, "sha256", 1, salt, "54d92778750495d1f80832b486ebd007617d746271511bbf0e295e143da2b3df"},
		{4096, "sha256", 1, salt, "e522df0f97da4febb882ac40f30b37dc0b444bf6df418929463fa25280f09d5c"},
		{4096, "sha256", 0, salt, "cbbf4ebd004ef65e29b935bb635a39cf754d677f3fa10b0126da725bbdf10f7d"},
		{4096, "sha256", 1, "-", "ef29c902d87350f1da4bfa536e16cebc162a909bf89abe448b81ec500d4fb9bf"},
		{1024, "sha1", 1, salt, "d0e9163ca8844aaa2e88fe5265a8c5d9ee494a99"},
		{1024, "sha1", 1, "dadada", "73509e8e868be6b8ac939817a98a3d35121413b2"},
	}
	const dataSize = 8 << 20
	data := &memDev{b: make([]byte, dataSize)}
	for _, tc := range tests {
		for _, layout := range []string{"superblock", "no-superblock", "hash-offset-same-device"} {
			name := fmt.Sprintf("%s/%d/type%d/salt=%.6s/%s", tc.alg, tc.bs, tc.hashType, tc.salt, layout)
			t.Run(name, func(t *testing.T) {
				s, err := ParseSalt(tc.salt)
				if err != nil {
					t.Fatal(err)
				}
				p := Params{HashName: tc.alg, HashType: tc.hashType, DataBlockSize: tc.bs, HashBlockSize: tc.bs,
					DataBlocks: dataSize / uint64(tc.bs), Salt: s}
				var dataDev io.ReaderAt = data
				hashDev := &memDev{}
				switch layout {
				case "no-superblock":
					p.NoSuperblock = true
				case "hash-offset-same-device":
					same := &memDev{b: bytes.Clone(data.b)}
					dataDev, hashDev = same, same
					p.HashOffset = dataSize
				}
				root, err := Format(context.Background(), dataDev, hashDev, p, nil)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.root, hex.EncodeToString(root)); diff != "" {
					t.Errorf("root hash (-want +got):\n%s", diff)
				}
				if err := Verify(context.Background(), dataDev, hashDev, p, root, nil); err != nil {
					t.Errorf("Verify of our own tree: %v", err)
				}
			})
		}
	}
}

func TestGeometryOneGiB(t *testing.T) {
	p := DefaultParams(262144)
	g, err := p.Geometry()
	if err != nil {
		t.Fatal(err)
	}
	want := &Geometry{DigestSize: 32, EntrySize: 32, HashesPerBlock: 128, Levels: 3,
		LevelStart: []uint64{18, 2, 1}, LevelBlocks: []uint64{2048, 16, 1},
		HashStartBlock: 1, HashBlocks: 2065, HashDeviceSize: 8462336}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("geometry (-want +got):\n%s", diff)
	}
}

func TestGeometrySHA1Padding(t *testing.T) {
	p := DefaultParams(1000)
	p.HashName = "sha1"
	g, err := p.Geometry()
	if err != nil {
		t.Fatal(err)
	}
	if g.DigestSize != 20 || g.EntrySize != 32 || g.HashesPerBlock != 128 {
		t.Errorf("sha1 geometry: digest %d entry %d per block %d, want 20 32 128", g.DigestSize, g.EntrySize, g.HashesPerBlock)
	}
	p.HashType = 0
	if g, _ = p.Geometry(); g.EntrySize != 20 {
		t.Errorf("hash type 0 entry size %d, want 20 (packed)", g.EntrySize)
	}
}

// randomTree formats n random data blocks and returns the pieces.
func randomTree(t testing.TB, p Params, seed uint64) (data, hashDev *memDev, root []byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	data = &memDev{b: make([]byte, p.DataSize())}
	for i := range data.b {
		data.b[i] = byte(r.Uint32())
	}
	hashDev = &memDev{}
	root, err := Format(context.Background(), data, hashDev, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return data, hashDev, root
}

// TestCorruptionLocated flips one byte in a data block and in a block of
// every hash level, and checks that Verify and the Reader blame that block.
func TestCorruptionLocated(t *testing.T) {
	for _, bs := range []uint32{512, 4096} {
		p := DefaultParams(20000)
		p.DataBlockSize, p.HashBlockSize = bs, bs
		p.Salt = []byte("salty")
		g, err := p.Geometry()
		if err != nil {
			t.Fatal(err)
		}
		type target struct {
			level int
			block uint64
		}
		targets := []target{{DataLevel, 0}, {DataLevel, 12345}, {DataLevel, p.DataBlocks - 1}}
		for l := 0; l < g.Levels; l++ {
			targets = append(targets, target{l, g.LevelBlocks[l] - 1}, target{l, 0})
		}
		for _, tg := range targets {
			t.Run(fmt.Sprintf("bs%d/level%d/block%d", bs, tg.level, tg.block), func(t *testing.T) {
				data, hashDev, root := randomTree(t, p, uint64(bs))
				var off int64
				if tg.level == DataLevel {
					off = int64(tg.block)*int64(bs) + 7
					data.b[off] ^= 0x40
					off -= 7
				} else {
					off = int64(g.LevelStart[tg.level]+tg.block) * int64(bs)
					hashDev.b[off+3] ^= 1
				}
				err := Verify(context.Background(), data, hashDev, p, root, &Options{Workers: 3})
				want := &CorruptionError{Level: tg.level, Block: tg.block, Offset: off}
				var ce *CorruptionError
				if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupted) {
					t.Fatalf("Verify: got %v, want a CorruptionError", err)
				}
				ce.Detail = ""
				if diff := cmp.Diff(want, ce); diff != "" {
					t.Errorf("Verify blamed (-want +got):\n%s", diff)
				}

				// The reader fails on the corrupted data block, or on every
				// data block under a corrupted hash block.
				rd, err := NewReader(data, hashDev, p, root, 4)
				if err != nil {
					t.Fatal(err)
				}
				dataBlock := tg.block
				if tg.level != DataLevel {
					dataBlock = tg.block
					for range tg.level + 1 {
						dataBlock *= g.HashesPerBlock
					}
				}
				buf := make([]byte, 10)
				_, err = rd.ReadAt(buf, int64(dataBlock)*int64(bs))
				if !errors.As(err, &ce) {
					t.Fatalf("Reader: got %v, want a CorruptionError", err)
				}
				ce.Detail = ""
				if diff := cmp.Diff(want, ce); diff != "" {
					t.Errorf("Reader blamed (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestReaderReadsVerifiedData(t *testing.T) {
	p := DefaultParams(300)
	p.DataBlockSize = 1024
	p.Salt = []byte{1, 2, 3}
	data, hashDev, root := randomTree(t, p, 7)
	rd, err := NewReader(data, hashDev, p, root, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(rd, 0, rd.Size()+100))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data.b) {
		t.Fatal("verified read differs from the data")
	}
	// Unaligned read across blocks.
	buf := make([]byte, 3000)
	if n, err := rd.ReadAt(buf, 1000); err != nil || n != 3000 || !bytes.Equal(buf, data.b[1000:4000]) {
		t.Fatalf("unaligned ReadAt: n=%d err=%v", n, err)
	}
	if n, err := rd.ReadAt(buf, rd.Size()-10); n != 10 || err != io.EOF {
		t.Fatalf("ReadAt at the end: n=%d err=%v, want 10 io.EOF", n, err)
	}
	// Wrong root: nothing is returned.
	bad := bytes.Clone(root)
	bad[0] ^= 1
	rd, _ = NewReader(data, hashDev, p, bad, 0)
	if n, err := rd.ReadAt(buf, 0); n != 0 || !errors.Is(err, ErrCorrupted) {
		t.Fatalf("wrong root: n=%d err=%v", n, err)
	}
}

func TestVerifyShortDevices(t *testing.T) {
	p := DefaultParams(1000)
	data, hashDev, root := randomTree(t, p, 3)
	shortHash := &memDev{b: hashDev.b[:len(hashDev.b)-4096]}
	if err := Verify(context.Background(), data, shortHash, p, root, nil); err == nil || errors.Is(err, ErrCorrupted) {
		t.Errorf("short hash device: got %v, want a read error", err)
	}
	shortData := &memDev{b: data.b[:len(data.b)-1]}
	if err := Verify(context.Background(), shortData, hashDev, p, root, nil); err == nil || errors.Is(err, ErrCorrupted) {
		t.Errorf("short data device: got %v, want a read error", err)
	}
	if _, err := Format(context.Background(), shortData, &memDev{}, p, nil); err == nil {
		t.Error("Format of a short data device succeeded")
	}
}

func TestVerifyCancelled(t *testing.T) {
	p := DefaultParams(5000)
	data, hashDev, root := randomTree(t, p, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Verify(ctx, data, hashDev, p, root, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestProgressReachesTotal(t *testing.T) {
	p := DefaultParams(40000)
	data := &memDev{b: make([]byte, p.DataSize())}
	var last, total uint64
	_, err := Format(context.Background(), data, &memDev{}, p, &Options{Progress: func(d, tot uint64) { last, total = d, tot }})
	if err != nil {
		t.Fatal(err)
	}
	if last != total || total < p.DataSize() {
		t.Errorf("progress ended at %d of %d (data %d)", last, total, p.DataSize())
	}
}

func TestParamsValidate(t *testing.T) {
	base := DefaultParams(10)
	tests := []struct {
		name string
		mod  func(*Params)
	}{
		{"unknown hash", func(p *Params) { p.HashName = "md5" }},
		{"hash type 2", func(p *Params) { p.HashType = 2 }},
		{"data block not power of two", func(p *Params) { p.DataBlockSize = 3000 }},
		{"hash block too small", func(p *Params) { p.HashBlockSize = 256 }},
		{"hash block too big", func(p *Params) { p.HashBlockSize = 1 << 20 }},
		{"no data blocks", func(p *Params) { p.DataBlocks = 0 }},
		{"size overflow", func(p *Params) { p.DataBlocks = 1 << 62 }},
		{"long salt", func(p *Params) { p.Salt = make([]byte, 257) }},
		{"unaligned hash offset", func(p *Params) { p.HashOffset = 100 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			tc.mod(&p)
			if err := p.Validate(); err == nil {
				t.Error("Validate accepted bad params")
			}
			if _, err := Format(context.Background(), &memDev{}, &memDev{}, p, nil); err == nil {
				t.Error("Format accepted bad params")
			}
		})
	}
	if err := base.Validate(); err != nil {
		t.Errorf("defaults rejected: %v", err)
	}
}

func TestParseRootHash(t *testing.T) {
	if _, err := ParseRootHash("zz", "sha256"); err == nil {
		t.Error("non-hex accepted")
	}
	if _, err := ParseRootHash("abcd", "sha256"); err == nil {
		t.Error("short root hash accepted")
	}
	h := "e522df0f97da4febb882ac40f30b37dc0b444bf6df418929463fa25280f09d5c"
	if b, err := ParseRootHash(h+"\n", "sha256"); err != nil || hex.EncodeToString(b) != h {
		t.Errorf("ParseRootHash: %x %v", b, err)
	}
}
