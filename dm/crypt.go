package dm

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeyringKey refers to a key in the kernel keyring instead of passing the
// key bytes in the table; dm-crypt writes it as ":<key_size>:<key_type>:
// <key_description>" (Documentation/admin-guide/device-mapper/dm-crypt.rst,
// "<key>"). LUKS2 volumes opened by cryptsetup use
// ":<size>:logon:cryptsetup:<LUKS-UUID>-d<digest>".
type KeyringKey struct {
	// Size is the key size in bytes.
	Size int
	// Type is the key type: "logon", "user", "encrypted" or "trusted".
	Type string
	// Description is the key description the kernel looks up.
	Description string
}

// CryptIntegrity asks dm-crypt for per-sector integrity metadata provided by
// an underlying dm-integrity target: "integrity:<bytes>:<type>"
// (Documentation/admin-guide/device-mapper/dm-crypt.rst).
type CryptIntegrity struct {
	// TagSize is the number of metadata bytes per sector (the dm-integrity
	// tag size): IV bytes plus authentication tag bytes.
	TagSize uint32
	// Type is "aead" for authenticated encryption (AEAD or authenc()
	// ciphers) or "none" when the metadata only carries a persistent IV.
	Type string
}

// CryptParams are the arguments of a dm-crypt target
// (Documentation/admin-guide/device-mapper/dm-crypt.rst, "Parameters"):
//
//	<cipher> <key> <iv_offset> <device path> <offset> [<#opt_params> <opt_params>]
//
// The optional arguments are written in the order the kernel's crypt_status
// (drivers/md/dm-crypt.c, STATUSTYPE_TABLE) prints them, which is what
// `dmsetup table` shows for a device cryptsetup opened. cryptsetup's
// lib/libdevmapper.c:get_dm_crypt_params loads the same set but puts
// sector_size before integrity and iv_large_sectors/high_priority earlier;
// the kernel accepts any order.
type CryptParams struct {
	// Cipher is the cipher specification: "cipher[:keycount]-chainmode-ivmode[:ivopts]"
	// such as "aes-xts-plain64", or a kernel crypto API form such as
	// "capi:authenc(hmac(sha256),xts(aes))-plain64" or "capi:gcm(aes)-random".
	Cipher string
	// Key is the raw key, written as hex. Exactly one of Key and Keyring
	// must be set, except for a cipher_null cipher, which takes neither
	// (written "-").
	Key []byte
	// Keyring refers to a key in the kernel keyring.
	Keyring *KeyringKey
	// IVOffset is added to the sector number for IV generation (iv_offset).
	IVOffset uint64
	// Device is the backing device path or "major:minor".
	Device string
	// Offset is the first sector of encrypted data on Device.
	Offset uint64

	// AllowDiscards passes discards down (allow_discards).
	AllowDiscards bool
	// SameCPUCrypt encrypts on the CPU that submitted the I/O (same_cpu_crypt).
	SameCPUCrypt bool
	// HighPriority runs the dm-crypt workqueues at high priority
	// (high_priority, kernel 6.7+).
	HighPriority bool
	// SubmitFromCryptCPUs disables offloading writes to a separate thread
	// (submit_from_crypt_cpus).
	SubmitFromCryptCPUs bool
	// NoReadWorkqueue processes reads synchronously (no_read_workqueue).
	NoReadWorkqueue bool
	// NoWriteWorkqueue processes writes synchronously (no_write_workqueue).
	NoWriteWorkqueue bool
	// Integrity requests per-sector integrity metadata (integrity:<bytes>:<type>).
	Integrity *CryptIntegrity
	// SectorSize is the encryption unit in bytes, 512..4096, a power of
	// two; 0 means 512 (sector_size:<bytes>, written only when not 512).
	SectorSize uint32
	// IVLargeSectors counts IV sectors in SectorSize units instead of 512
	// bytes (iv_large_sectors). LUKS2 never sets it.
	IVLargeSectors bool
	// IntegrityKeySize sets the integrity key size when it differs from the
	// digest size (integrity_key_size:<bytes>); requires Integrity.
	IntegrityKeySize uint32
}

// maxCryptTagSize is MAX_TAG_SIZE in drivers/md/dm-crypt.c.
const maxCryptTagSize = 480

func (p CryptParams) sectorSize() uint32 {
	if p.SectorSize == 0 {
		return SectorSize
	}
	return p.SectorSize
}

// keyString returns the <key> argument. It is the only place key bytes are
// turned into text.
func (p CryptParams) keyString() string {
	switch {
	case p.Keyring != nil:
		return fmt.Sprintf(":%d:%s:%s", p.Keyring.Size, p.Keyring.Type, p.Keyring.Description)
	case len(p.Key) > 0:
		return hex.EncodeToString(p.Key)
	default:
		return "-"
	}
}

// Validate checks the parameters for what dm-crypt's crypt_ctr would reject.
// Its errors never contain key material.
func (p CryptParams) Validate() error {
	if err := checkWord("cipher", p.Cipher); err != nil {
		return fmt.Errorf("dm: crypt: %w", err)
	}
	if api, ok := strings.CutPrefix(p.Cipher, "capi:"); ok {
		i := strings.LastIndex(api, "-")
		if i <= 0 || i == len(api)-1 {
			return fmt.Errorf("dm: crypt: cipher %q: want capi:<crypto API spec>-<ivmode>", p.Cipher)
		}
	}
	nullCipher := strings.Contains(p.Cipher, "cipher_null")
	switch {
	case p.Keyring != nil && len(p.Key) > 0:
		return errors.New("dm: crypt: both a key and a keyring reference are set")
	case p.Keyring != nil:
		k := p.Keyring
		if k.Size <= 0 {
			return fmt.Errorf("dm: crypt: keyring key size %d: want > 0", k.Size)
		}
		switch k.Type {
		case "logon", "user", "encrypted", "trusted":
		default:
			return fmt.Errorf("dm: crypt: keyring key type %q: want logon, user, encrypted or trusted", k.Type)
		}
		if err := checkWord("keyring key description", k.Description); err != nil {
			return fmt.Errorf("dm: crypt: %w", err)
		}
	case len(p.Key) == 0 && !nullCipher:
		return fmt.Errorf("dm: crypt: no key for cipher %q", p.Cipher)
	}
	if err := checkWord("device", p.Device); err != nil {
		return fmt.Errorf("dm: crypt: %w", err)
	}
	ss := p.sectorSize()
	if ss < SectorSize || ss > 4096 || !isPowerOfTwo(uint64(ss)) {
		return fmt.Errorf("dm: crypt: sector size %d: want a power of two in 512..4096", ss)
	}
	if p.IVOffset%uint64(ss/SectorSize) != 0 {
		return fmt.Errorf("dm: crypt: iv_offset %d is not a multiple of the %d-byte sector size", p.IVOffset, ss)
	}
	if in := p.Integrity; in != nil {
		if in.TagSize == 0 || in.TagSize > maxCryptTagSize {
			return fmt.Errorf("dm: crypt: integrity tag size %d: want 1..%d", in.TagSize, maxCryptTagSize)
		}
		if in.Type != "aead" && in.Type != "none" {
			return fmt.Errorf("dm: crypt: integrity type %q: want aead or none", in.Type)
		}
	}
	if p.IntegrityKeySize != 0 && p.Integrity == nil {
		return errors.New("dm: crypt: integrity_key_size needs integrity")
	}
	return nil
}

// Params returns the crypt argument string, key included. Optional arguments
// follow the kernel's crypt_status order: allow_discards, same_cpu_crypt,
// high_priority, submit_from_crypt_cpus, no_read_workqueue,
// no_write_workqueue, integrity:<bytes>:<type>, sector_size:<bytes>,
// iv_large_sectors, integrity_key_size:<bytes>.
func (p CryptParams) Params() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	var opts []string
	for _, o := range []struct {
		on   bool
		name string
	}{
		{p.AllowDiscards, "allow_discards"},
		{p.SameCPUCrypt, "same_cpu_crypt"},
		{p.HighPriority, "high_priority"},
		{p.SubmitFromCryptCPUs, "submit_from_crypt_cpus"},
		{p.NoReadWorkqueue, "no_read_workqueue"},
		{p.NoWriteWorkqueue, "no_write_workqueue"},
	} {
		if o.on {
			opts = append(opts, o.name)
		}
	}
	if in := p.Integrity; in != nil {
		opts = append(opts, fmt.Sprintf("integrity:%d:%s", in.TagSize, in.Type))
	}
	if ss := p.sectorSize(); ss != SectorSize {
		opts = append(opts, fmt.Sprintf("sector_size:%d", ss))
	}
	if p.IVLargeSectors {
		opts = append(opts, "iv_large_sectors")
	}
	if p.IntegrityKeySize != 0 {
		opts = append(opts, fmt.Sprintf("integrity_key_size:%d", p.IntegrityKeySize))
	}
	s := fmt.Sprintf("%s %s %d %s %d", p.Cipher, p.keyString(), p.IVOffset, p.Device, p.Offset)
	if len(opts) > 0 {
		s += fmt.Sprintf(" %d %s", len(opts), strings.Join(opts, " "))
	}
	return s, nil
}

// Target returns the crypt table line covering length sectors from start.
// length must be a multiple of the encryption sector size.
func (p CryptParams) Target(start, length uint64) (Target, error) {
	params, err := p.Params()
	if err != nil {
		return Target{}, err
	}
	if length == 0 {
		return Target{}, errors.New("dm: crypt: zero length")
	}
	if spb := uint64(p.sectorSize() / SectorSize); length%spb != 0 {
		return Target{}, fmt.Errorf("dm: crypt: length %d sectors is not a multiple of the %d-byte sector size", length, p.sectorSize())
	}
	return Target{Start: start, Length: length, Type: "crypt", Params: params}, nil
}
