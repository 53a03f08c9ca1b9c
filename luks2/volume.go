package luks2

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// Header is a LUKS2 header as a whole: the fields both binary copies share
// and the JSON metadata. [Read] loads one from a device; [Header.Write]
// writes both copies.
type Header struct {
	HdrSize     uint64
	SeqID       uint64
	Label       string
	Subsystem   string
	UUID        string
	ChecksumAlg string
	// Salts are the per-copy salts of the binary headers (primary, secondary).
	Salts    [2][64]byte
	Metadata *Metadata
	// secondaryFirst is set by [Read] when the secondary copy is the
	// damaged or stale one, so that [Header.Write] repairs it before it
	// touches the good primary.
	secondaryFirst bool
}

// ReadReport says what [Read] found on the device besides the header it
// returns.
type ReadReport struct {
	// PrimaryErr and SecondaryErr say why a copy was not usable (nil if it was).
	PrimaryErr, SecondaryErr error
	// Stale is set when both copies are valid but differ in seqid; the
	// newer one was used.
	Stale bool
}

// NeedsRepair reports whether a copy is damaged or stale, so that writing
// the header back ([Header.Write]) would repair it.
func (r *ReadReport) NeedsRepair() bool {
	return r.PrimaryErr != nil || r.SecondaryErr != nil || r.Stale
}

// MaxJSONArea bounds what Read allocates for one JSON area: the largest
// header size the format allows.
const MaxJSONArea = 0x400000 - BinHeaderSize

// readCopy reads and checks the header copy at off.
func readCopy(dev io.ReaderAt, off uint64, secondary bool) (*BinHeader, *Metadata, error) {
	bin := make([]byte, BinHeaderSize)
	if n, err := dev.ReadAt(bin, int64(off)); n < len(bin) {
		if (err == nil || errors.Is(err, io.EOF)) && !hasMagic(bin[:n]) {
			return nil, nil, fmt.Errorf("%w: the device ends before a header at %d", ErrNotLUKS2, off)
		}
		return nil, nil, fmt.Errorf("read binary header at %d: %w", off, eofErr(err))
	}
	h, err := ParseBinHeader(bin)
	if err != nil {
		return nil, nil, err
	}
	if h.Secondary != secondary {
		return nil, nil, fmt.Errorf("%w: wrong magic for the %s header", ErrNotLUKS2, map[bool]string{false: "primary", true: "secondary"}[secondary])
	}
	if secondary && h.HdrOffset != off {
		return nil, nil, fmt.Errorf("secondary header at %d claims hdr_offset %d", off, h.HdrOffset)
	}
	area := make([]byte, h.HdrSize-BinHeaderSize) // HdrSize is checked against the allowed sizes
	if n, err := dev.ReadAt(area, int64(off+BinHeaderSize)); n < len(area) {
		return nil, nil, fmt.Errorf("read json area at %d: %w", off+BinHeaderSize, eofErr(err))
	}
	if err := h.VerifyChecksum(area); err != nil {
		return nil, nil, err
	}
	m, err := ParseMetadata(area, h.HdrSize)
	if err != nil {
		return nil, nil, err
	}
	return h, m, nil
}

// hasMagic reports whether b, the start of a copy cut short by the end of
// the device, begins with a LUKS2 magic.
func hasMagic(b []byte) bool {
	return len(b) >= len(magicPrimary) && (bytes.Equal(b[:6], magicPrimary) || bytes.Equal(b[:6], magicSecondary))
}

func eofErr(err error) error {
	if err == nil || err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Read loads the LUKS2 header of dev. It checks both copies (binary header,
// checksum, JSON) and uses the valid one with the higher seqid, as
// cryptsetup's LUKS2_disk_hdr_read does; the report says whether the other
// copy is damaged or stale, so that the caller can repair it (write the
// header back) and tell the user.
func Read(dev io.ReaderAt) (*Header, *ReadReport, error) {
	rep := &ReadReport{}
	p, pm, perr := readCopy(dev, 0, false)
	rep.PrimaryErr = perr
	var s *BinHeader
	var sm *Metadata
	var serr error = ErrNotLUKS2
	offsets := validHdrSizes
	if p != nil {
		offsets = []uint64{p.HdrSize}
	}
	for _, off := range offsets {
		if s, sm, serr = readCopy(dev, off, true); serr == nil || !errors.Is(serr, ErrNotLUKS2) {
			break
		}
	}
	rep.SecondaryErr = serr
	var h *BinHeader
	var m *Metadata
	switch {
	case perr == nil && serr == nil:
		h, m = p, pm
		if s.SeqID > p.SeqID {
			h, m = s, sm
		}
		rep.Stale = s.SeqID != p.SeqID || s.UUID != p.UUID
	case perr == nil:
		h, m = p, pm
	case serr == nil:
		h, m = s, sm
	case errors.Is(perr, ErrNotLUKS2) && errors.Is(serr, ErrNotLUKS2):
		return nil, rep, ErrNotLUKS2
	case errors.Is(serr, ErrNotLUKS2):
		return nil, rep, fmt.Errorf("the primary LUKS2 header is damaged and no secondary header was found: %w", perr)
	case errors.Is(perr, ErrNotLUKS2):
		return nil, rep, fmt.Errorf("no primary LUKS2 header was found and the secondary is damaged: %w", serr)
	default:
		return nil, rep, fmt.Errorf("both LUKS2 header copies are damaged: primary: %v; secondary: %w", perr, serr)
	}
	hdr := &Header{
		HdrSize: h.HdrSize, SeqID: h.SeqID, Label: h.Label, Subsystem: h.Subsystem,
		UUID: h.UUID, ChecksumAlg: h.ChecksumAlg, Metadata: m,
		secondaryFirst: h == p && rep.NeedsRepair(),
	}
	if p != nil {
		hdr.Salts[0] = p.Salt
	}
	if s != nil {
		hdr.Salts[1] = s.Salt
	}
	return hdr, rep, nil
}

// jsonArea renders the metadata into a JSON area of the header's size.
func (h *Header) jsonArea() ([]byte, error) {
	if err := h.Metadata.Validate(h.HdrSize); err != nil {
		return nil, fmt.Errorf("refusing to write an invalid header: %w", err)
	}
	js, err := h.Metadata.MarshalJSON()
	if err != nil {
		return nil, err
	}
	area := make([]byte, h.HdrSize-BinHeaderSize)
	if len(js) >= len(area) {
		return nil, fmt.Errorf("json metadata of %d bytes does not fit the %d-byte json area", len(js), len(area))
	}
	copy(area, js)
	return area, nil
}

// Write increments the seqid and writes both header copies. Each copy is
// written binary header (checksum zeroed) → JSON area → binary header with
// checksum, as cryptsetup's LUKS2_disk_hdr_write does, and synced before the
// next one is touched; a Sync before the first copy makes what the caller
// wrote before (keyslot areas, wipes) durable before a header names it. The
// damaged or stale copy of a header from [Read] is written first, so that
// the good one is kept until the other is whole: an interruption at any
// point leaves a valid copy of the old or the new header. The metadata is
// validated first; nothing is written if it is invalid.
func (h *Header) Write(dev SyncWriterAt) error {
	if h.ChecksumAlg == "" {
		h.ChecksumAlg = defaultChecksumAlg
	}
	area, err := h.jsonArea()
	if err != nil {
		return err
	}
	for i := range h.Salts {
		if h.Salts[i] == ([64]byte{}) {
			if _, err := rand.Read(h.Salts[i][:]); err != nil {
				return fmt.Errorf("header salt: %w", err)
			}
		}
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("sync before the header write: %w", err)
	}
	h.SeqID++
	order := []bool{false, true}
	if h.secondaryFirst {
		order = []bool{true, false}
	}
	for _, secondary := range order {
		if err := h.writeCopy(dev, secondary, area); err != nil {
			return err
		}
		if err := dev.Sync(); err != nil {
			return fmt.Errorf("sync the %s header: %w", copyName(secondary), err)
		}
	}
	h.secondaryFirst = false
	return nil
}

// writeCopy writes one header copy (without syncing it).
func (h *Header) writeCopy(dev io.WriterAt, secondary bool, area []byte) error {
	bh := &BinHeader{
		Secondary: secondary, HdrSize: h.HdrSize, SeqID: h.SeqID, Label: h.Label,
		ChecksumAlg: h.ChecksumAlg, Salt: h.Salts[0], UUID: h.UUID, Subsystem: h.Subsystem,
	}
	off := uint64(0)
	if secondary {
		off = h.HdrSize
		bh.HdrOffset = h.HdrSize
		bh.Salt = h.Salts[1]
	}
	var err error
	if bh.Checksum, err = bh.checksum(area); err != nil {
		return err
	}
	noCsum, err := bh.marshal(true)
	if err != nil {
		return err
	}
	withCsum, _ := bh.marshal(false)
	for _, w := range []struct {
		b   []byte
		off uint64
	}{{noCsum, off}, {area, off + BinHeaderSize}, {withCsum, off}} {
		if _, err := dev.WriteAt(w.b, int64(w.off)); err != nil {
			return fmt.Errorf("write %s header at %d: %w", copyName(secondary), w.off, err)
		}
	}
	return nil
}

func copyName(secondary bool) string {
	if secondary {
		return "secondary"
	}
	return "primary"
}

// ErrWrongPassphrase is returned when no keyslot opens with the passphrase.
var ErrWrongPassphrase = errors.New("no key available with this passphrase")

// ErrNoKeyslot is returned when a keyslot does not exist.
var ErrNoKeyslot = errors.New("keyslot does not exist")

// Unlock derives the volume key from a passphrase: it tries keyslot slot
// (or every "luks2" keyslot, by priority, when slot < 0) and returns the
// volume key and the keyslot that opened. A wrong passphrase gives
// [ErrWrongPassphrase].
func (h *Header) Unlock(dev io.ReaderAt, passphrase []byte, slot int) ([]byte, int, error) {
	m := h.Metadata
	var slots []int
	if slot >= 0 {
		if m.Keyslots[slot] == nil {
			return nil, -1, fmt.Errorf("keyslot %d: %w", slot, ErrNoKeyslot)
		}
		slots = []int{slot}
	} else {
		for id, k := range m.Keyslots {
			if k.Raw == nil && (k.Priority == nil || *k.Priority != 0) {
				slots = append(slots, id)
			}
		}
		slices.SortFunc(slots, func(a, b int) int {
			pa, pb := priority(m.Keyslots[a]), priority(m.Keyslots[b])
			if pa != pb {
				return pb - pa
			}
			return a - b
		})
	}
	if len(slots) == 0 {
		return nil, -1, errors.New("no usable keyslot")
	}
	for _, id := range slots {
		vk, err := h.unlockSlot(dev, id, passphrase)
		if err == nil {
			return vk, id, nil
		}
		if !errors.Is(err, ErrWrongPassphrase) {
			return nil, -1, fmt.Errorf("keyslot %d: %w", id, err)
		}
	}
	return nil, -1, ErrWrongPassphrase
}

func priority(k *Keyslot) int {
	if k.Priority == nil {
		return 1
	}
	return *k.Priority
}

// unlockSlot opens one keyslot (LUKS2 on-disk format section 3.2;
// luks2_keyslot_luks2.c luks2_keyslot_get_key).
func (h *Header) unlockSlot(dev io.ReaderAt, id int, passphrase []byte) ([]byte, error) {
	k := h.Metadata.Keyslots[id]
	if k.Raw != nil {
		return nil, fmt.Errorf("%w: keyslot type %q", ErrUnsupported, k.Type)
	}
	_, d, err := h.Metadata.digestFor(id)
	if err != nil {
		return nil, err
	}
	key, err := deriveKey(&k.KDF, passphrase, k.Area.KeySize)
	if err != nil {
		return nil, err
	}
	c, err := newSectorCipher(k.Area.Encryption, key)
	if err != nil {
		return nil, err
	}
	material := make([]byte, afSize(k.KeySize, k.AF.Stripes))
	if n, err := dev.ReadAt(material, int64(k.Area.Offset)); n < len(material) {
		return nil, fmt.Errorf("read keyslot area at %d: %w", k.Area.Offset, eofErr(err))
	}
	cryptSectors(c, material, false)
	vk, err := afMerge(material, k.KeySize, k.AF.Stripes, k.AF.Hash)
	if err != nil {
		return nil, err
	}
	ok, err := checkDigest(d, vk)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrWrongPassphrase
	}
	return vk, nil
}

// VerifyVolumeKey reports whether vk is the volume key of segment 0.
func (h *Header) VerifyVolumeKey(vk []byte) (bool, error) {
	for _, d := range h.Metadata.Digests {
		if d.Raw == nil && slices.Contains(d.Segments, "0") {
			return checkDigest(d, vk)
		}
	}
	return false, errors.New("no digest covers segment 0")
}

// AddKeyslot encrypts vk under passphrase into keyslot slot (the lowest free
// one when slot < 0), writing the key material to its area on dev and
// adding it to the metadata; the caller writes the header afterwards. vk must
// match the volume's digest.
func (h *Header) AddKeyslot(dev io.WriterAt, vk, passphrase []byte, slot int, kdf KDF) (int, error) {
	m := h.Metadata
	ok, err := h.VerifyVolumeKey(vk)
	if err != nil {
		return -1, err
	}
	if !ok {
		return -1, errors.New("volume key does not match the volume's digest")
	}
	if slot < 0 {
		for slot = 0; slot < MaxObjects && m.Keyslots[slot] != nil; slot++ {
		}
		if slot == MaxObjects {
			return -1, errors.New("all 32 keyslots are in use")
		}
	} else if slot >= MaxObjects {
		return -1, fmt.Errorf("keyslot %d out of range (0..%d)", slot, MaxObjects-1)
	} else if m.Keyslots[slot] != nil {
		return -1, fmt.Errorf("keyslot %d is in use", slot)
	}
	seg, err := m.segment0()
	if err != nil {
		return -1, err
	}
	areaEnc, areaKeySize := keyslotCipher(seg, len(vk))
	size := (afSize(len(vk), AFStripes) + 4095) / 4096 * 4096
	off, err := h.freeArea(size)
	if err != nil {
		return -1, err
	}
	if kdf.Salt == nil {
		kdf.Salt = make([]byte, 32)
		if _, err := rand.Read(kdf.Salt); err != nil {
			return -1, err
		}
	}
	afHash := kdf.Hash
	if afHash == "" {
		afHash = "sha256"
	}
	if kdf.Type != "pbkdf2" {
		kdf.Hash = ""
	}
	k := &Keyslot{
		Type: "luks2", KeySize: len(vk),
		AF:   AF{Type: "luks1", Stripes: AFStripes, Hash: afHash},
		Area: Area{Type: "raw", Offset: U64(off), Size: U64(size), Encryption: areaEnc, KeySize: areaKeySize},
		KDF:  kdf,
	}
	key, err := deriveKey(&k.KDF, passphrase, areaKeySize)
	if err != nil {
		return -1, err
	}
	c, err := newSectorCipher(areaEnc, key)
	if err != nil {
		return -1, err
	}
	material, err := afSplit(vk, AFStripes, afHash)
	if err != nil {
		return -1, err
	}
	buf := make([]byte, afSize(len(vk), AFStripes))
	copy(buf, material)
	cryptSectors(c, buf, true)
	if _, err := dev.WriteAt(buf, int64(off)); err != nil {
		return -1, fmt.Errorf("write keyslot %d area: %w", slot, err)
	}
	m.Keyslots[slot] = k
	did, _, err := m.digest0()
	if err != nil {
		return -1, err
	}
	m.Digests[did].Keyslots = appendID(m.Digests[did].Keyslots, slot)
	return slot, nil
}

// keyslotCipher is the keyslot area encryption cryptsetup picks: the segment
// cipher and key size, unless the segment cipher cannot serve (capi:, null,
// integrity, AEAD) — then aes-xts-plain64 with a 64-byte key
// (setup.c crypt_keyslot_get_encryption).
func keyslotCipher(seg *Segment, vkSize int) (string, int) {
	if seg.Integrity == nil && seg.Encryption == "aes-xts-plain64" && (vkSize == 32 || vkSize == 64) {
		return seg.Encryption, vkSize
	}
	return "aes-xts-plain64", 64
}

// digest0 returns the digest of segment 0.
func (m *Metadata) digest0() (int, *Digest, error) {
	for id, d := range m.Digests {
		if slices.Contains(d.Segments, "0") {
			return id, d, nil
		}
	}
	return 0, nil, errors.New("no digest covers segment 0")
}

func appendID(list []string, id int) []string {
	s := strconv.Itoa(id)
	if slices.Contains(list, s) {
		return list
	}
	list = append(list, s)
	slices.SortFunc(list, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	return list
}

// freeArea finds the lowest offset in the keyslots area where size bytes
// are free (luks2_json_metadata.c LUKS2_find_area_gap).
func (h *Header) freeArea(size uint64) (uint64, error) {
	start := 2 * h.HdrSize
	end := start + uint64(h.Metadata.Config.KeyslotsSize)
	type span struct{ a, b uint64 }
	var used []span
	for _, k := range h.Metadata.Keyslots {
		if k.Raw == nil {
			used = append(used, span{uint64(k.Area.Offset), uint64(k.Area.Offset + k.Area.Size)})
		}
	}
	slices.SortFunc(used, func(x, y span) int {
		if x.a < y.a {
			return -1
		}
		return 1
	})
	pos := start
	for _, u := range used {
		if u.a >= pos+size {
			break
		}
		pos = max(pos, u.b)
	}
	if pos+size > end {
		return 0, fmt.Errorf("no room for a %d-byte keyslot area in the keyslots area", size)
	}
	return pos, nil
}

// KillKeyslot removes keyslot slot: its area on dev is overwritten with
// random bytes and it is dropped from the digests and tokens. The caller
// writes the header afterwards; [Header.Write] makes the wipe durable
// first (cryptsetup's order), so no header drops a keyslot whose key
// material is still on the disk, and an interruption in between leaves the
// old header naming a wiped keyslot. Removing the last keyslot is refused unless
// force is set (the volume could not be opened again).
func (h *Header) KillKeyslot(dev io.WriterAt, slot int, force bool) error {
	m := h.Metadata
	k := m.Keyslots[slot]
	if k == nil {
		return fmt.Errorf("keyslot %d: %w", slot, ErrNoKeyslot)
	}
	if len(m.Keyslots) == 1 && !force {
		return fmt.Errorf("keyslot %d is the last one: removing it makes the volume unopenable (use force)", slot)
	}
	if k.Raw == nil {
		junk := make([]byte, k.Area.Size)
		if _, err := rand.Read(junk); err != nil {
			return err
		}
		if _, err := dev.WriteAt(junk, int64(k.Area.Offset)); err != nil {
			return fmt.Errorf("wipe keyslot %d area: %w", slot, err)
		}
	}
	delete(m.Keyslots, slot)
	s := strconv.Itoa(slot)
	for _, d := range m.Digests {
		d.Keyslots = slices.DeleteFunc(d.Keyslots, func(x string) bool { return x == s })
	}
	for id, t := range m.Tokens {
		var obj map[string]json.RawMessage
		var th TokenHeader
		if json.Unmarshal(t, &obj) != nil || json.Unmarshal(t, &th) != nil {
			continue
		}
		th.Keyslots = slices.DeleteFunc(th.Keyslots, func(x string) bool { return x == s })
		ks, _ := json.Marshal(th.Keyslots)
		m.Tokens[id] = replaceKey(t, "keyslots", ks)
	}
	return nil
}

// replaceKey replaces the value of key in a compact JSON object, keeping
// the order of the other keys.
func replaceKey(obj json.RawMessage, key string, value []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(obj))
	var out bytes.Buffer
	out.WriteByte('{')
	if _, err := dec.Token(); err != nil {
		return obj
	}
	first := true
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return obj
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return obj
		}
		if !first {
			out.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(kt)
		out.Write(kb)
		out.WriteByte(':')
		if kt == key {
			out.Write(value)
		} else {
			out.Write(v)
		}
	}
	out.WriteByte('}')
	return out.Bytes()
}

// AddToken adds a token (a JSON object with at least "type" and
// "keyslots") at id, or at the lowest free id when id < 0, after checking
// it. It returns the id.
func (h *Header) AddToken(token []byte, id int) (int, error) {
	var th TokenHeader
	if err := json.Unmarshal(token, &th); err != nil {
		return -1, fmt.Errorf("token is not a JSON object: %w", err)
	}
	if th.Type == "" {
		return -1, errors.New("token has no \"type\"")
	}
	if th.Keyslots == nil {
		return -1, errors.New("token has no \"keyslots\" array")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, token); err != nil {
		return -1, err
	}
	m := h.Metadata
	if id < 0 {
		for id = 0; id < MaxObjects && m.Tokens[id] != nil; id++ {
		}
	}
	if id >= MaxObjects {
		return -1, errors.New("no free token id")
	}
	if m.Tokens[id] != nil {
		return -1, fmt.Errorf("token %d is in use", id)
	}
	m.Tokens[id] = compact.Bytes()
	if err := m.Validate(h.HdrSize); err != nil {
		delete(m.Tokens, id)
		return -1, err
	}
	return id, nil
}

// RemoveToken removes token id.
func (h *Header) RemoveToken(id int) error {
	if h.Metadata.Tokens[id] == nil {
		return fmt.Errorf("token %d does not exist", id)
	}
	delete(h.Metadata.Tokens, id)
	return nil
}

// ChangeKey replaces the passphrase old by new, with the KDF kdf, in
// cryptsetup's order (setup.c crypt_keyslot_change_by_passphrase): the new
// keyslot's area is written and a header that names it committed (both
// passphrases open), then the old keyslot's area is wiped and a second
// header write drops it. An interruption at any point leaves a volume that
// the old or the new passphrase opens. commit writes the header (nil:
// h.Write(dev)) and is called twice; nothing is written when old opens no
// keyslot or no keyslot is free. It returns the new keyslot.
func (h *Header) ChangeKey(dev Device, old, new []byte, kdf KDF, commit func() error) (int, error) {
	if commit == nil {
		commit = func() error { return h.Write(dev) }
	}
	vk, slot, err := h.Unlock(dev, old, -1)
	if err != nil {
		return -1, err
	}
	ns, err := h.AddKeyslot(dev, vk, new, -1, kdf)
	if err != nil {
		return -1, err
	}
	if err := commit(); err != nil {
		return -1, fmt.Errorf("write the header with the new keyslot %d: %w", ns, err)
	}
	if err := h.KillKeyslot(dev, slot, true); err != nil {
		return -1, err
	}
	if err := commit(); err != nil {
		return -1, fmt.Errorf("write the header without the old keyslot %d (the new passphrase opens keyslot %d): %w", slot, ns, err)
	}
	return ns, nil
}
