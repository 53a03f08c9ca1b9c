package luks2

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"github.com/confidisk/confidisk/integrity"
	"io"
	"runtime"
	"strings"
	"time"
)

// Defaults of `cryptsetup luksFormat --type luks2` (cryptsetup 2.6,
// lib/luks2/luks2.h and configure defaults).
const (
	DefaultCipher        = "aes-xts-plain64"
	DefaultKeySize       = 64 // bytes of cipher key: 512-bit AES-XTS
	DefaultKeyslotsSize  = 16*1024*1024 - 2*DefaultHdrSize
	DefaultDataOffset    = 16 * 1024 * 1024
	DefaultIterTime      = 2 * time.Second
	DefaultMaxMemoryKiB  = 1024 * 1024
	DefaultMaxParallel   = 4
	minPBKDF2Iterations  = 1000
	minArgon2Time        = 4
	minArgon2MemoryKiB   = 32
	digestIterTime       = 125 * time.Millisecond // LUKS_MKD_ITERATIONS_MS
	defaultPBKDF2Hash    = "sha256"
	defaultIntegrityHMAC = "hmac(sha256)"
)

// PBKDF chooses the KDF of a new keyslot, as cryptsetup's --pbkdf options:
// the type (argon2id by default, argon2i, pbkdf2), and either forced costs
// (Iterations for pbkdf2, or Time with MemoryKiB and Parallel for Argon2) or a
// target unlock time, which a short benchmark turns into costs.
type PBKDF struct {
	Type       string        // "argon2id" (default), "argon2i" or "pbkdf2"
	Hash       string        // pbkdf2 hash and AF hash (default sha256)
	Iterations int           // forced pbkdf2 iterations or Argon2 time cost
	MemoryKiB  int           // Argon2 memory (default: benchmarked, at most 1 GiB or half the RAM)
	Parallel   int           // Argon2 lanes (default: min(4, CPUs))
	IterTime   time.Duration // target time when costs are not forced (default 2 s)
}

// KDF resolves p into the KDF of a keyslot, benchmarking when no cost is forced.
func (p PBKDF) KDF() (KDF, error) {
	typ := p.Type
	if typ == "" {
		typ = "argon2id"
	}
	hash := p.Hash
	if hash == "" {
		hash = defaultPBKDF2Hash
	}
	if _, err := hashByName(hash); err != nil {
		return KDF{}, err
	}
	target := p.IterTime
	if target <= 0 {
		target = DefaultIterTime
	}
	switch typ {
	case "pbkdf2":
		k := KDF{Type: typ, Hash: hash, Iterations: p.Iterations}
		if k.Iterations == 0 {
			k.Iterations = benchmarkPBKDF2(hash, target)
		}
		if k.Iterations < minPBKDF2Iterations {
			return KDF{}, fmt.Errorf("pbkdf2 needs at least %d iterations, got %d", minPBKDF2Iterations, k.Iterations)
		}
		return k, nil
	case "argon2i", "argon2id":
		par := p.Parallel
		if par == 0 {
			par = min(DefaultMaxParallel, runtime.NumCPU())
		}
		if par < 1 || par > 255 {
			return KDF{}, fmt.Errorf("argon2 parallel cost %d out of range 1..255", par)
		}
		k := KDF{Type: typ, Time: p.Iterations, Memory: p.MemoryKiB, CPUs: par, Hash: hash}
		if k.Memory == 0 {
			k.Memory = defaultArgonMemory()
		}
		if k.Memory < minArgon2MemoryKiB || k.Memory > maxArgonMemoryKiB {
			return KDF{}, fmt.Errorf("argon2 memory %d KiB out of range %d..%d", k.Memory, minArgon2MemoryKiB, maxArgonMemoryKiB)
		}
		if k.Time == 0 {
			k.Time, k.Memory = benchmarkArgon2(typ, k.Memory, par, target)
		}
		if k.Time < 1 {
			return KDF{}, fmt.Errorf("argon2 time cost %d must be at least 1", k.Time)
		}
		return k, nil
	}
	return KDF{}, fmt.Errorf("%w: pbkdf %q (want argon2id, argon2i or pbkdf2)", ErrUnsupported, typ)
}

// defaultArgonMemory is cryptsetup's memory limit: 1 GiB, at most half of
// the physical memory (utils_pbkdf.c pbkdf_adjusted_phys_memory_kb).
func defaultArgonMemory() int {
	mem := DefaultMaxMemoryKiB
	if phys := physMemoryKiB(); phys > 0 && phys/2 < uint64(mem) {
		mem = int(phys / 2)
	}
	return max(mem, minArgon2MemoryKiB)
}

// benchmarkPBKDF2 measures iterations per second and scales them to target
// (cryptsetup crypt_pbkdf_perf for pbkdf2).
func benchmarkPBKDF2(hash string, target time.Duration) int {
	iter := 10000
	for {
		start := time.Now()
		_, _ = deriveKey(&KDF{Type: "pbkdf2", Hash: hash, Iterations: iter, Salt: make([]byte, 32)}, []byte("benchmark"), 32)
		el := time.Since(start)
		if el > 50*time.Millisecond || iter > 1<<28 {
			return max(minPBKDF2Iterations, int(float64(iter)*float64(target)/float64(el)))
		}
		iter *= 4
	}
}

// benchmarkArgon2 picks Argon2 costs that take about target to compute on
// this machine, within the memory limit mem (KiB), as cryptsetup's
// benchmark does: Argon2 time grows linearly with time cost × memory, so it
// measures a small run and extrapolates, twice more from runs of an eighth
// and half of the target (the growth is not quite linear: caches). Memory is preferred over time cost
// (minimum time cost 4), as in cryptsetup.
func benchmarkArgon2(typ string, mem, par int, target time.Duration) (timeCost, memKiB int) {
	run := func(t, m int) time.Duration {
		start := time.Now()
		k := KDF{Type: typ, Time: t, Memory: m, CPUs: par, Salt: make([]byte, 32)}
		_, _ = deriveKey(&k, []byte("benchmark"), 32)
		return max(time.Since(start), time.Millisecond)
	}
	// cost → (time cost, memory): fill memory first, then raise the time cost.
	split := func(cost float64) (int, int) {
		if cost <= float64(minArgon2Time*mem) {
			return minArgon2Time, max(minArgon2MemoryKiB, int(cost/minArgon2Time))
		}
		return max(minArgon2Time, int(cost/float64(mem))), mem
	}
	t, m := minArgon2Time, min(mem, 32*1024)
	for _, goal := range []time.Duration{target / 8, target / 2, target} {
		el := run(t, m)
		t, m = split(float64(t*m) * float64(goal) / float64(el))
	}
	return t, m
}

// FormatOptions mirror `cryptsetup luksFormat --type luks2`.
type FormatOptions struct {
	// Cipher is the segment cipher (default aes-xts-plain64; with AEAD
	// integrity, aes-gcm-random).
	Cipher string
	// KeySize is the cipher key size in bytes (default 64 for XTS, 32
	// otherwise); an integrity HMAC key is added to it.
	KeySize int
	// Integrity is "" (none), "hmac-sha256", "hmac-sha512" or "aead".
	Integrity string
	// SectorSize is the encryption sector size: 512 or 4096 (default 4096).
	SectorSize int
	PBKDF      PBKDF
	Label      string
	Subsystem  string
	// UUID defaults to a random one.
	UUID string
	// HdrSize (metadata size), KeyslotsSize and DataOffset default to
	// cryptsetup's 16 KiB, 16 MiB − 32 KiB and 16 MiB.
	HdrSize      uint64
	KeyslotsSize uint64
	DataOffset   uint64
	// VolumeKey is used instead of a random key when set.
	VolumeKey []byte
	// Keyslot is where the passphrase goes (default 0).
	Keyslot int
	// Tokens are stored in the header from its first write on (each a JSON
	// object with "type" and "keyslots").
	Tokens []json.RawMessage
}

// SegmentSpec turns cipher + integrity options into the segment's
// encryption and integrity fields, and the volume key size, as Format
// writes them.
func (o *FormatOptions) SegmentSpec() (enc string, integ *SegmentIntegrity, vkSize int, err error) {
	enc = o.Cipher
	var integType string
	switch o.Integrity {
	case "", "none":
	case "hmac-sha256", "hmac-sha512", "hmac-sha1":
		integType = "hmac(" + strings.TrimPrefix(o.Integrity, "hmac-") + ")"
	case "aead":
		integType = "aead"
		if enc == "" {
			enc = "aes-gcm-random"
		}
	default:
		return "", nil, 0, fmt.Errorf("%w: integrity %q (want hmac-sha256, hmac-sha512 or aead)", ErrUnsupported, o.Integrity)
	}
	if enc == "" {
		enc = DefaultCipher
	}
	parts := strings.Split(enc, "-")
	if len(parts) < 3 || parts[0] != "aes" || strings.HasPrefix(enc, "capi:") {
		return "", nil, 0, fmt.Errorf("%w: cipher %q (want aes-<mode>-<iv>, for example aes-xts-plain64)", ErrUnsupported, enc)
	}
	mode := parts[1]
	switch {
	case integType == "aead" && mode != "gcm":
		return "", nil, 0, fmt.Errorf("aead integrity needs an AEAD cipher such as aes-gcm-random, not %q", enc)
	case integType != "aead" && mode != "xts" && mode != "cbc":
		return "", nil, 0, fmt.Errorf("%w: cipher mode %q", ErrUnsupported, mode)
	case integType == "" && parts[2] == "random":
		return "", nil, 0, fmt.Errorf("cipher %q with a random IV needs integrity", enc)
	}
	ks := o.KeySize
	if ks == 0 {
		ks = 32
		if mode == "xts" {
			ks = DefaultKeySize
		}
	}
	if mode == "xts" && ks != 32 && ks != 64 || mode != "xts" && ks != 16 && ks != 24 && ks != 32 {
		return "", nil, 0, fmt.Errorf("invalid key size of %d bits for %s", ks*8, enc)
	}
	ik := 0
	if integType != "" {
		if ik, err = integrity.KeySize(integType); err != nil {
			return "", nil, 0, fmt.Errorf("%w: %v", ErrUnsupported, err)
		}
	}
	if integType != "" {
		integ = &SegmentIntegrity{Type: integType, JournalEncryption: "none", JournalIntegrity: "none"}
	}
	return enc, integ, ks + ik, nil
}

// Format writes a new LUKS2 header to dev, with the passphrase in one
// keyslot, and returns the header and the volume key. It writes the keyslot
// area, then both header copies (synced copy by copy when dev has a Sync,
// as an *os.File does); the data area is not touched (integrity
// volumes need their dm-integrity superblock and tags initialised through
// the kernel afterwards). It validates everything before writing anything.
func Format(dev io.WriterAt, devSize uint64, passphrase []byte, o FormatOptions) (*Header, []byte, error) {
	enc, integ, vkSize, err := o.SegmentSpec()
	if err != nil {
		return nil, nil, err
	}
	if o.SectorSize == 0 {
		o.SectorSize = 4096
	}
	if o.SectorSize != 512 && o.SectorSize != 4096 && o.SectorSize != 1024 && o.SectorSize != 2048 {
		return nil, nil, fmt.Errorf("invalid sector size %d (want 512, 1024, 2048 or 4096)", o.SectorSize)
	}
	if o.HdrSize == 0 {
		o.HdrSize = DefaultHdrSize
	}
	if !validHdrSize(o.HdrSize) {
		return nil, nil, fmt.Errorf("invalid metadata size %d", o.HdrSize)
	}
	if o.KeyslotsSize == 0 {
		o.KeyslotsSize = DefaultKeyslotsSize
		if o.HdrSize != DefaultHdrSize {
			o.KeyslotsSize = DefaultDataOffset - 2*o.HdrSize
		}
	}
	if o.DataOffset == 0 {
		o.DataOffset = (2*o.HdrSize + o.KeyslotsSize + (1<<20 - 1)) / (1 << 20) * (1 << 20)
	}
	if o.DataOffset < 2*o.HdrSize+o.KeyslotsSize {
		return nil, nil, fmt.Errorf("data offset %d is inside the header and keyslots area (%d bytes)", o.DataOffset, 2*o.HdrSize+o.KeyslotsSize)
	}
	if devSize <= o.DataOffset {
		return nil, nil, fmt.Errorf("device of %d bytes is too small: the LUKS2 header and keyslots take %d", devSize, o.DataOffset)
	}
	if o.UUID == "" {
		if o.UUID, err = NewUUID(); err != nil {
			return nil, nil, err
		}
	} else if !validUUID(o.UUID) {
		return nil, nil, fmt.Errorf("invalid UUID %q", o.UUID)
	}
	vk := o.VolumeKey
	if vk == nil {
		vk = make([]byte, vkSize)
		if _, err := rand.Read(vk); err != nil {
			return nil, nil, fmt.Errorf("volume key: %w", err)
		}
	} else if len(vk) != vkSize {
		return nil, nil, fmt.Errorf("volume key has %d bytes, %s needs %d", len(vk), enc, vkSize)
	}
	kdf, err := o.PBKDF.KDF()
	if err != nil {
		return nil, nil, err
	}
	h := &Header{
		HdrSize: o.HdrSize, Label: o.Label, Subsystem: o.Subsystem, UUID: o.UUID, ChecksumAlg: defaultChecksumAlg,
		Metadata: &Metadata{
			Keyslots: map[int]*Keyslot{},
			Tokens:   map[int]json.RawMessage{},
			Segments: map[int]*Segment{0: {
				Type: "crypt", Offset: U64(o.DataOffset), Size: SegmentSize{Dynamic: true},
				Encryption: enc, SectorSize: o.SectorSize, Integrity: integ,
			}},
			Config: Config{JSONSize: U64(o.HdrSize - BinHeaderSize), KeyslotsSize: U64(o.KeyslotsSize)},
		},
	}
	d := &Digest{Type: "pbkdf2", Keyslots: []string{}, Segments: []string{"0"}, Hash: "sha256", Salt: make([]byte, 32)}
	if _, err := rand.Read(d.Salt); err != nil {
		return nil, nil, err
	}
	// With forced KDF costs cryptsetup also uses the minimum digest cost.
	d.Iterations = minPBKDF2Iterations
	if o.PBKDF.Iterations == 0 {
		d.Iterations = max(minPBKDF2Iterations, benchmarkPBKDF2("sha256", digestIterTime))
	}
	if d.Digest, err = computeDigest(d, vk, 32); err != nil {
		return nil, nil, err
	}
	h.Metadata.Digests = map[int]*Digest{0: d}
	if _, err := h.jsonArea(); err != nil {
		return nil, nil, err
	}
	if _, err := h.AddKeyslot(dev, vk, passphrase, o.Keyslot, kdf); err != nil {
		return nil, nil, err
	}
	for _, t := range o.Tokens {
		if _, err := h.AddToken(t, -1); err != nil {
			return nil, nil, fmt.Errorf("token: %w", err)
		}
	}
	if err := h.Write(syncer(dev)); err != nil {
		return nil, nil, err
	}
	return h, vk, nil
}

// validUUID checks the 8-4-4-4-12 hex form.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdefABCDEF", c):
			return false
		}
	}
	return true
}

// NewUUID returns a random (version 4) UUID, as Format picks one.
func NewUUID() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}
