package activate

import (
	"fmt"
	"strings"

	"github.com/confidisk/confidisk/dm"
	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
)

// LUKSOptions are cryptsetup's activation flags for a LUKS2 volume.
type LUKSOptions struct {
	ReadOnly         bool
	AllowDiscards    bool
	NoReadWorkqueue  bool
	NoWriteWorkqueue bool
	// NoJournal maps dm-integrity in direct mode ("D"), as cryptsetup does
	// for the initial wipe (CRYPT_ACTIVATE_NO_JOURNAL).
	NoJournal bool
	// KeyInHex puts the volume key in the table instead of a kernel keyring
	// reference (cryptsetup's fallback when the kernel has no keyring).
	KeyInHex bool
}

// LUKSTables are the device-mapper tables of an active LUKS2 volume: the
// dm-integrity device NAME_dif (nil without integrity) and the dm-crypt
// device NAME on top of it (or on the raw device).
type LUKSTables struct {
	Integrity *dm.Target
	Crypt     dm.Target
}

// segmentGeometry is what activation needs from segment 0.
type segmentGeometry struct {
	seg          *luks2.Segment
	cipher       string // dm-crypt cipher spec
	tagSize      int
	offsetSector uint64
}

// dmCipher turns a LUKS2 segment's encryption and integrity into the cipher
// spec dm-crypt takes (cryptsetup lib/utils_crypt.c / setup.c cipher_dm2c):
// "aes-xts-plain64" stays as is without integrity; with an HMAC it becomes
// capi:authenc(hmac(H),MODE(aes))-IV, with AEAD capi:MODE(aes)-IV.
func dmCipher(seg *luks2.Segment) (cipher string, tagSize int, err error) {
	if seg.Integrity == nil {
		return seg.Encryption, 0, nil
	}
	parts := strings.SplitN(seg.Encryption, "-", 3)
	if len(parts) != 3 {
		return "", 0, fmt.Errorf("%w: segment cipher %q", luks2.ErrUnsupported, seg.Encryption)
	}
	c, mode, iv := parts[0], parts[1], parts[2]
	tagSize, err = integrity.TagSize(c, mode+"-"+iv, seg.Integrity.Type)
	if err != nil {
		return "", 0, err
	}
	switch seg.Integrity.Type {
	case "aead":
		return fmt.Sprintf("capi:%s(%s)-%s", mode, c, iv), tagSize, nil
	case "none":
		return fmt.Sprintf("capi:%s(%s)-%s", mode, c, iv), tagSize, nil
	}
	return fmt.Sprintf("capi:authenc(%s,%s(%s))-%s", seg.Integrity.Type, mode, c, iv), tagSize, nil
}

func geometry(h *luks2.Header) (*segmentGeometry, error) {
	seg := h.Metadata.Segments[0]
	if seg == nil || seg.Type != "crypt" {
		return nil, fmt.Errorf("%w: segment 0 is not a crypt segment", luks2.ErrUnsupported)
	}
	c, tag, err := dmCipher(seg)
	if err != nil {
		return nil, err
	}
	return &segmentGeometry{seg: seg, cipher: c, tagSize: tag, offsetSector: uint64(seg.Offset) / 512}, nil
}

// dmIntegrityParams is the dm-integrity target of a LUKS2 volume, as
// cryptsetup builds it (libdevmapper.c get_dm_integrity_params): journal
// mode (direct without journal), the segment's sector size as block size,
// fix_padding and fix_hmac.
func dmIntegrityParams(rawDev string, g *segmentGeometry, noJournal bool) dm.IntegrityParams {
	mode := dm.IntegrityJournal
	if noJournal {
		mode = dm.IntegrityDirect
	}
	return dm.IntegrityParams{
		Device: rawDev, Offset: g.offsetSector, TagSize: uint32(g.tagSize), Mode: mode,
		BlockSize: uint32(g.seg.SectorSize), FixPadding: true, FixHMAC: true,
	}
}

// KeyDescription is the kernel keyring description cryptsetup gives a LUKS2
// volume key (luks2_digest.c get_key_description_by_digest):
// "cryptsetup:<UUID>-d<digest id>".
func KeyDescription(h *luks2.Header) string {
	return fmt.Sprintf("cryptsetup:%s-d0", h.UUID)
}

// BuildLUKSTables returns the tables cryptsetup loads for h on rawDev
// (rawSectors long). For integrity volumes providedSectors is the size the
// dm-integrity superblock provides (provided_data_sectors). name is the
// crypt device's name; the integrity device is name_dif.
func BuildLUKSTables(h *luks2.Header, name, rawDev string, rawSectors, providedSectors uint64, vk []byte, o LUKSOptions) (*LUKSTables, error) {
	g, err := geometry(h)
	if err != nil {
		return nil, err
	}
	if rawSectors <= g.offsetSector {
		return nil, fmt.Errorf("device of %d sectors ends before the data offset (sector %d)", rawSectors, g.offsetSector)
	}
	// iv_offset stays 0 whatever the segment's iv_tweak says: cryptsetup
	// activates a single-segment LUKS2 volume with crypt_get_iv_offset,
	// which is 0 for LUKS2 (lib/setup.c), and uses iv_tweak only in the
	// multi-segment tables of an online reencryption. The lab proves it
	// (luks-interop, a cryptsetup volume with iv_tweak 2048). confidisk's
	// boot refuses a non-zero iv_tweak and authenticates it.
	cp := dm.CryptParams{
		Cipher:           g.cipher,
		AllowDiscards:    o.AllowDiscards,
		NoReadWorkqueue:  o.NoReadWorkqueue,
		NoWriteWorkqueue: o.NoWriteWorkqueue,
	}
	if g.seg.SectorSize != 512 {
		cp.SectorSize = uint32(g.seg.SectorSize)
	}
	if o.KeyInHex {
		cp.Key = vk
	} else {
		cp.Keyring = &dm.KeyringKey{Size: len(vk), Type: "logon", Description: KeyDescription(h)}
	}
	t := &LUKSTables{}
	if g.seg.Integrity == nil {
		size := rawSectors - g.offsetSector
		if !g.seg.Size.Dynamic {
			size = min(size, g.seg.Size.Bytes/512)
		}
		cp.Device, cp.Offset = rawDev, g.offsetSector
		t.Crypt, err = cp.Target(0, size)
		return t, err
	}
	if o.AllowDiscards {
		return nil, fmt.Errorf("discards are not supported with integrity protection")
	}
	it, err := dmIntegrityParams(rawDev, g, o.NoJournal).Target(0, providedSectors)
	if err != nil {
		return nil, err
	}
	t.Integrity = &it
	cp.Device, cp.Offset = "/dev/mapper/"+name+"_dif", 0
	cp.Integrity = &dm.CryptIntegrity{TagSize: uint32(g.tagSize), Type: "aead"}
	if g.seg.Integrity.Type == "none" {
		cp.Integrity.Type = "none"
	}
	t.Crypt, err = cp.Target(0, providedSectors)
	return t, err
}

// LUKSUUID is the device-mapper UUID cryptsetup gives an active LUKS2 volume
// ("CRYPT-LUKS2-<uuid without dashes>-<name>"), and the one of its integrity
// sub-device ("CRYPT-SUBDEV-…-<name>_dif").
func LUKSUUID(h *luks2.Header, name string) (crypt, sub string) {
	u := strings.ReplaceAll(h.UUID, "-", "")
	return "CRYPT-LUKS2-" + u + "-" + name, "CRYPT-SUBDEV-" + u + "-" + name + "_dif"
}
