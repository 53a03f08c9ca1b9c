package dm

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// VerityFEC configures forward error correction for a verity target
// (Documentation/admin-guide/device-mapper/verity.rst, "use_fec_from_device",
// "fec_roots", "fec_blocks", "fec_start").
type VerityFEC struct {
	// Device holds the Reed-Solomon parity data (may be the hash device).
	Device string
	// Start is the offset of the parity data on Device, in data-block-size
	// units (fec_start).
	Start uint64
	// Blocks is the number of data-block-size blocks covered by FEC: data
	// plus hash blocks (fec_blocks).
	Blocks uint64
	// Roots is the number of parity bytes per 255-byte RS codeword, 2..24
	// (fec_roots; veritysetup's default is 2).
	Roots uint32
}

// VerityParams are all arguments of a dm-verity target, as documented in
// Documentation/admin-guide/device-mapper/verity.rst ("Construction
// Parameters"):
//
//	<version> <dev> <hash_dev> <data_block_size> <hash_block_size>
//	<num_data_blocks> <hash_start_block> <algorithm> <digest> <salt>
//	[<#opt_params> <opt_params>]
//
// [VerityParams.Params] writes them exactly as cryptsetup's
// lib/libdevmapper.c:get_dm_verity_params does, optional arguments included,
// in its order and with its counting.
type VerityParams struct {
	// HashType is the on-disk format version: 0 (Chrome OS) or 1 (current,
	// veritysetup's default).
	HashType uint32
	// DataDevice holds the protected data.
	DataDevice string
	// HashDevice holds the hash tree (may equal DataDevice).
	HashDevice string
	// DataBlockSize is the data block size in bytes (power of two, >= 512).
	DataBlockSize uint32
	// HashBlockSize is the hash block size in bytes (power of two, >= 512).
	HashBlockSize uint32
	// DataBlocks is the number of data blocks (num_data_blocks).
	DataBlocks uint64
	// HashStartBlock is the index, in HashBlockSize units, of the root
	// hash block on HashDevice (1 when a veritysetup superblock comes first).
	HashStartBlock uint64
	// Algorithm is the kernel crypto API hash, e.g. "sha256".
	Algorithm string
	// RootDigest is the root hash in hex.
	RootDigest string
	// Salt is the salt in hex; "" (or "-") means no salt, written as "-".
	Salt string

	// IgnoreCorruption logs corrupted blocks but lets reads succeed
	// (ignore_corruption). At most one of IgnoreCorruption,
	// RestartOnCorruption and PanicOnCorruption may be set; with none the
	// kernel returns EIO.
	IgnoreCorruption bool
	// RestartOnCorruption restarts the system on a corrupted block
	// (restart_on_corruption).
	RestartOnCorruption bool
	// PanicOnCorruption panics on a corrupted block (panic_on_corruption).
	PanicOnCorruption bool
	// RestartOnError restarts the system on an I/O error (restart_on_error).
	// Exclusive with PanicOnError.
	RestartOnError bool
	// PanicOnError panics on an I/O error (panic_on_error).
	PanicOnError bool
	// IgnoreZeroBlocks returns zeroes for blocks whose hash is the zero
	// block's without reading them (ignore_zero_blocks).
	IgnoreZeroBlocks bool
	// CheckAtMostOnce verifies each data block only on its first read
	// (check_at_most_once).
	CheckAtMostOnce bool
	// TryVerifyInTasklet verifies cached hash blocks in softirq context
	// (try_verify_in_tasklet).
	TryVerifyInTasklet bool
	// FEC enables forward error correction when non-nil; it counts as 8
	// optional arguments.
	FEC *VerityFEC
	// RootHashSigKeyDesc names a "user" key in the kernel keyring holding
	// the PKCS#7 signature of the root hash (root_hash_sig_key_desc; counts
	// as 2 optional arguments). cryptsetup uses "cryptsetup:<uuid>-<name>".
	RootHashSigKeyDesc string
}

// digestSize returns the digest size in bytes of well-known hash names, to
// catch a root digest of the wrong length early.
func digestSize(alg string) (int, bool) {
	switch strings.ToLower(alg) {
	case "sha1":
		return 20, true
	case "sha224":
		return 28, true
	case "sha256", "sha3-256", "blake2b-256", "blake2s-256", "sm3":
		return 32, true
	case "sha384":
		return 48, true
	case "sha512", "sha3-512", "blake2b-512":
		return 64, true
	}
	return 0, false
}

// Validate checks the parameters for what the kernel's verity_ctr
// (drivers/md/dm-verity-target.c) would reject, and for conflicting
// options cryptsetup would silently drop.
func (p VerityParams) Validate() error {
	if p.HashType > 1 {
		return fmt.Errorf("dm: verity: hash type %d: want 0 or 1", p.HashType)
	}
	if err := checkWord("data device", p.DataDevice); err != nil {
		return fmt.Errorf("dm: verity: %w", err)
	}
	if err := checkWord("hash device", p.HashDevice); err != nil {
		return fmt.Errorf("dm: verity: %w", err)
	}
	for _, bs := range []struct {
		what string
		n    uint32
	}{{"data block size", p.DataBlockSize}, {"hash block size", p.HashBlockSize}} {
		if bs.n < SectorSize || !isPowerOfTwo(uint64(bs.n)) {
			return fmt.Errorf("dm: verity: %s %d: want a power of two >= 512", bs.what, bs.n)
		}
	}
	if p.DataBlocks == 0 {
		return errors.New("dm: verity: zero data blocks")
	}
	sectorsPerBlock := uint64(p.DataBlockSize / SectorSize)
	if p.DataBlocks > ^uint64(0)/sectorsPerBlock {
		return fmt.Errorf("dm: verity: %d data blocks of %d bytes overflow a sector count", p.DataBlocks, p.DataBlockSize)
	}
	if err := checkWord("algorithm", p.Algorithm); err != nil {
		return fmt.Errorf("dm: verity: %w", err)
	}
	root, err := hex.DecodeString(p.RootDigest)
	if err != nil || len(root) == 0 {
		return fmt.Errorf("dm: verity: root digest %q is not a non-empty hex string", p.RootDigest)
	}
	if want, ok := digestSize(p.Algorithm); ok && len(root) != want {
		return fmt.Errorf("dm: verity: root digest has %d bytes, %s needs %d", len(root), p.Algorithm, want)
	}
	if p.Salt != "" && p.Salt != "-" {
		if _, err := hex.DecodeString(p.Salt); err != nil {
			return fmt.Errorf("dm: verity: salt %q is not a hex string", p.Salt)
		}
	}
	n := 0
	for _, b := range []bool{p.IgnoreCorruption, p.RestartOnCorruption, p.PanicOnCorruption} {
		if b {
			n++
		}
	}
	if n > 1 {
		return errors.New("dm: verity: ignore_corruption, restart_on_corruption and panic_on_corruption are mutually exclusive")
	}
	if p.RestartOnError && p.PanicOnError {
		return errors.New("dm: verity: restart_on_error and panic_on_error are mutually exclusive")
	}
	if f := p.FEC; f != nil {
		if err := checkWord("FEC device", f.Device); err != nil {
			return fmt.Errorf("dm: verity: %w", err)
		}
		if f.Roots < 2 || f.Roots > 24 {
			return fmt.Errorf("dm: verity: fec_roots %d: want 2..24", f.Roots)
		}
		if f.Blocks == 0 {
			return errors.New("dm: verity: fec_blocks is zero")
		}
	}
	if p.RootHashSigKeyDesc != "" {
		if err := checkWord("root hash signature key description", p.RootHashSigKeyDesc); err != nil {
			return fmt.Errorf("dm: verity: %w", err)
		}
	}
	return nil
}

// Sectors returns the size of the mapped device in 512-byte sectors:
// DataBlocks * DataBlockSize / 512.
func (p VerityParams) Sectors() uint64 {
	return p.DataBlocks * uint64(p.DataBlockSize/SectorSize)
}

// Params returns the verity argument string, in the exact layout of
// cryptsetup's get_dm_verity_params: the ten positional arguments, then, if
// any, "<#opt>" and ignore_corruption|restart_on_corruption|
// panic_on_corruption, restart_on_error|panic_on_error, ignore_zero_blocks,
// check_at_most_once, try_verify_in_tasklet, "use_fec_from_device <dev>
// fec_start <n> fec_blocks <n> fec_roots <n>" (8 arguments) and
// "root_hash_sig_key_desc <desc>" (2 arguments).
func (p VerityParams) Params() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := strings.ToLower(p.Salt)
	if salt == "" {
		salt = "-"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s %s %d %d %d %d %s %s %s",
		p.HashType, p.DataDevice, p.HashDevice, p.DataBlockSize, p.HashBlockSize,
		p.DataBlocks, p.HashStartBlock, p.Algorithm, strings.ToLower(p.RootDigest), salt)

	var opts []string
	switch {
	case p.IgnoreCorruption:
		opts = append(opts, "ignore_corruption")
	case p.RestartOnCorruption:
		opts = append(opts, "restart_on_corruption")
	case p.PanicOnCorruption:
		opts = append(opts, "panic_on_corruption")
	}
	switch {
	case p.RestartOnError:
		opts = append(opts, "restart_on_error")
	case p.PanicOnError:
		opts = append(opts, "panic_on_error")
	}
	if p.IgnoreZeroBlocks {
		opts = append(opts, "ignore_zero_blocks")
	}
	if p.CheckAtMostOnce {
		opts = append(opts, "check_at_most_once")
	}
	if p.TryVerifyInTasklet {
		opts = append(opts, "try_verify_in_tasklet")
	}
	if f := p.FEC; f != nil {
		opts = append(opts, "use_fec_from_device", f.Device,
			"fec_start", fmt.Sprint(f.Start), "fec_blocks", fmt.Sprint(f.Blocks),
			"fec_roots", fmt.Sprint(f.Roots))
	}
	if p.RootHashSigKeyDesc != "" {
		opts = append(opts, "root_hash_sig_key_desc", p.RootHashSigKeyDesc)
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, " %d %s", len(opts), strings.Join(opts, " "))
	}
	return b.String(), nil
}

// Target returns the verity table line: it starts at sector 0 and covers
// [VerityParams.Sectors] sectors, as veritysetup's VERITY_activate does.
func (p VerityParams) Target() (Target, error) {
	params, err := p.Params()
	if err != nil {
		return Target{}, err
	}
	return Target{Start: 0, Length: p.Sectors(), Type: "verity", Params: params}, nil
}
