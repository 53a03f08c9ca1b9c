package luks2

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxObjects is the number of keyslots, tokens, segments and digests an
// object may hold: cryptsetup's LUKS2_KEYSLOTS_MAX / LUKS2_TOKENS_MAX (32).
const MaxObjects = 32

// U64 is a 64-bit integer that LUKS2 JSON stores as a decimal string
// ("string-uint64" in the LUKS2 on-disk format document, section 3.1).
type U64 uint64

// MarshalJSON writes the value as a JSON string.
func (u U64) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatUint(uint64(u), 10) + `"`), nil
}

// UnmarshalJSON reads a decimal string.
func (u *U64) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a decimal string, got %s", b)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return fmt.Errorf("invalid string-uint64 %q", s)
	}
	*u = U64(v)
	return nil
}

// Metadata is the JSON area of a LUKS2 header (on-disk format document,
// section 3). Objects are keyed by decimal ids "0".."31". Tokens are kept as
// raw JSON, since their content is free-form past "type" and "keyslots";
// objects of types this package does not know are kept too (Raw fields) and
// written back unchanged.
type Metadata struct {
	Keyslots map[int]*Keyslot
	Tokens   map[int]json.RawMessage
	Segments map[int]*Segment
	Digests  map[int]*Digest
	Config   Config
}

// Keyslot is a keyslot object (section 3.2). Only type "luks2" can be opened;
// other types (for example "reencrypt") are preserved in Raw.
type Keyslot struct {
	Type     string   `json:"type"`
	KeySize  int      `json:"key_size"`
	AF       AF       `json:"af"`
	Area     Area     `json:"area"`
	KDF      KDF      `json:"kdf"`
	Priority *int     `json:"priority,omitempty"`
	Raw      rawValue `json:"-"`
}

// AF is the anti-forensic splitter of a keyslot: type "luks1", 4000 stripes.
type AF struct {
	Type    string `json:"type"`
	Stripes int    `json:"stripes"`
	Hash    string `json:"hash"`
}

// Area is where a keyslot's split key material lives, and how it is encrypted.
type Area struct {
	Type       string `json:"type"`
	Offset     U64    `json:"offset"`
	Size       U64    `json:"size"`
	Encryption string `json:"encryption"`
	KeySize    int    `json:"key_size"`
}

// KDF derives the keyslot key from a passphrase: pbkdf2 (Hash, Iterations)
// or argon2i / argon2id (Time, Memory in KiB, CPUs).
type KDF struct {
	Type       string `json:"type"`
	Hash       string `json:"hash,omitempty"`
	Iterations int    `json:"iterations,omitempty"`
	Time       int    `json:"time,omitempty"`
	Memory     int    `json:"memory,omitempty"`
	CPUs       int    `json:"cpus,omitempty"`
	Salt       []byte `json:"salt"`
}

// MarshalJSON writes a pbkdf2 or argon2 KDF with exactly the members of its
// type, zero values included (luks2_keyslot_validate refuses any other set
// before a write), in cryptsetup's order; other types as they are.
func (k KDF) MarshalJSON() ([]byte, error) {
	switch k.Type {
	case "pbkdf2":
		return json.Marshal(struct {
			Type       string `json:"type"`
			Hash       string `json:"hash"`
			Iterations int    `json:"iterations"`
			Salt       []byte `json:"salt"`
		}{k.Type, k.Hash, k.Iterations, k.Salt})
	case "argon2i", "argon2id":
		return json.Marshal(struct {
			Type   string `json:"type"`
			Time   int    `json:"time"`
			Memory int    `json:"memory"`
			CPUs   int    `json:"cpus"`
			Salt   []byte `json:"salt"`
		}{k.Type, k.Time, k.Memory, k.CPUs, k.Salt})
	}
	type plain KDF
	return json.Marshal(plain(k))
}

// Segment is a data segment (section 3.3); confidisk writes type "crypt".
type Segment struct {
	Type       string            `json:"type"`
	Offset     U64               `json:"offset"`
	Size       SegmentSize       `json:"size"`
	IVTweak    U64               `json:"iv_tweak"`
	Encryption string            `json:"encryption"`
	SectorSize int               `json:"sector_size"`
	Integrity  *SegmentIntegrity `json:"integrity,omitempty"`
	Flags      []string          `json:"flags,omitempty"`
	Raw        rawValue          `json:"-"`
}

// SegmentIntegrity is the integrity protection of a crypt segment.
type SegmentIntegrity struct {
	Type              string `json:"type"`
	JournalEncryption string `json:"journal_encryption"`
	JournalIntegrity  string `json:"journal_integrity"`
	KeySize           int    `json:"key_size,omitempty"`
}

// SegmentSize is a segment length in bytes, or Dynamic (the rest of the device).
type SegmentSize struct {
	Dynamic bool
	Bytes   uint64
}

// MarshalJSON writes "dynamic" or the size as a decimal string.
func (s SegmentSize) MarshalJSON() ([]byte, error) {
	if s.Dynamic {
		return []byte(`"dynamic"`), nil
	}
	return U64(s.Bytes).MarshalJSON()
}

// UnmarshalJSON reads "dynamic" or a decimal string.
func (s *SegmentSize) UnmarshalJSON(b []byte) error {
	if string(b) == `"dynamic"` {
		*s = SegmentSize{Dynamic: true}
		return nil
	}
	var u U64
	if err := u.UnmarshalJSON(b); err != nil {
		return err
	}
	*s = SegmentSize{Bytes: uint64(u)}
	return nil
}

// Digest is a volume-key digest (section 3.4): type "pbkdf2".
type Digest struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash"`
	Iterations int      `json:"iterations"`
	Salt       []byte   `json:"salt"`
	Digest     []byte   `json:"digest"`
	Raw        rawValue `json:"-"`
}

// Config is the config object (section 3.6).
type Config struct {
	JSONSize     U64             `json:"json_size"`
	KeyslotsSize U64             `json:"keyslots_size"`
	Flags        []string        `json:"flags,omitempty"`
	Requirements json.RawMessage `json:"requirements,omitempty"`
}

// rawValue keeps the original JSON of an object this package does not model.
type rawValue json.RawMessage

// TokenHeader is the part of every token that LUKS2 defines (section 3.5).
type TokenHeader struct {
	Type     string   `json:"type"`
	Keyslots []string `json:"keyslots"`
}

// requirement names cryptsetup 2.6 knows in config.requirements.mandatory.
var knownRequirements = []string{"offline-reencrypt", "online-reencrypt", "online-reencrypt-v2", "online-reencrypt-v3"}

// ParseMetadata decodes and validates a JSON area (all of it, NUL padding
// included) of a header of hdrSize bytes. It applies the rules of
// cryptsetup's JSON validation (validate.go: the bytes of the area, the
// types of every field, references between objects, layout), then decodes
// the metadata, drops kdf members cryptsetup's read repair drops, and checks
// what this package needs on top (validateModel).
func ParseMetadata(area []byte, hdrSize uint64) (*Metadata, error) {
	text, err := jsonText(area)
	if err != nil {
		return nil, err
	}
	tree, err := jsonTree(text)
	if err != nil {
		return nil, err
	}
	if err := validateTree(tree, hdrSize-BinHeaderSize, false); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(text, &top); err != nil {
		return nil, fmt.Errorf("json metadata: %w", err)
	}
	m := &Metadata{}
	if m.Keyslots, err = parseObjects[Keyslot](top["keyslots"], "keyslot", func(t string) bool { return t == "luks2" }); err != nil {
		return nil, err
	}
	if m.Segments, err = parseObjects[Segment](top["segments"], "segment", func(t string) bool { return t == "crypt" || t == "linear" }); err != nil {
		return nil, err
	}
	if m.Digests, err = parseObjects[Digest](top["digests"], "digest", func(t string) bool { return t == "pbkdf2" }); err != nil {
		return nil, err
	}
	var tokens map[string]json.RawMessage
	if err := json.Unmarshal(top["tokens"], &tokens); err != nil {
		return nil, fmt.Errorf("json metadata: tokens: %w", err)
	}
	m.Tokens = make(map[int]json.RawMessage, len(tokens))
	for k, v := range tokens {
		id, err := parseID(k, "token")
		if err != nil {
			return nil, err
		}
		var th TokenHeader
		if err := json.Unmarshal(v, &th); err != nil || th.Type == "" {
			return nil, fmt.Errorf("json metadata: token %d: want an object with \"type\" and \"keyslots\"", id)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return nil, fmt.Errorf("json metadata: token %d: %w", id, err)
		}
		m.Tokens[id] = buf.Bytes()
	}
	if err := json.Unmarshal(top["config"], &m.Config); err != nil {
		return nil, fmt.Errorf("json metadata: config: %w", err)
	}
	repairKDFs(m)
	if err := m.validateModel(hdrSize); err != nil {
		return nil, err
	}
	return m, nil
}

// repairKDFs drops the members of a keyslot's kdf its type does not have,
// as cryptsetup's luks2_keyslot_repair does on read.
func repairKDFs(m *Metadata) {
	for _, k := range m.Keyslots {
		switch k.KDF.Type {
		case "pbkdf2":
			k.KDF.Time, k.KDF.Memory, k.KDF.CPUs = 0, 0, 0
		case "argon2i", "argon2id":
			k.KDF.Hash, k.KDF.Iterations = "", 0
		}
	}
}

// parseObjects decodes an object of id → T. Objects whose type known
// accepts are decoded in full; others keep only their type and raw JSON.
func parseObjects[T any](b json.RawMessage, what string, known func(typ string) bool) (map[int]*T, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("json metadata: %ss: %w", what, err)
	}
	if len(raw) > MaxObjects {
		return nil, fmt.Errorf("json metadata: %d %ss, at most %d", len(raw), what, MaxObjects)
	}
	out := make(map[int]*T, len(raw))
	for k, v := range raw {
		id, err := parseID(k, what)
		if err != nil {
			return nil, err
		}
		var typ struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(v, &typ); err != nil || typ.Type == "" {
			return nil, fmt.Errorf("json metadata: %s %d: want an object with a \"type\"", what, id)
		}
		t := new(T)
		if known(typ.Type) {
			if err := json.Unmarshal(v, t); err != nil {
				return nil, fmt.Errorf("json metadata: %s %d: %w", what, id, err)
			}
		} else {
			var buf bytes.Buffer
			if err := json.Compact(&buf, v); err != nil {
				return nil, fmt.Errorf("json metadata: %s %d: %w", what, id, err)
			}
			setTypeRaw(t, typ.Type, buf.Bytes())
		}
		out[id] = t
	}
	return out, nil
}

// setTypeRaw stores the type and raw JSON of an object of an unknown type.
func setTypeRaw(v any, typ string, raw []byte) {
	switch o := v.(type) {
	case *Keyslot:
		o.Type, o.Raw = typ, raw
	case *Segment:
		o.Type, o.Raw = typ, raw
	case *Digest:
		o.Type, o.Raw = typ, raw
	}
}

// parseID checks an object id: a decimal "0".."31" without leading zeros.
func parseID(s, what string) (int, error) {
	id, err := strconv.Atoi(s)
	if err != nil || id < 0 || id >= MaxObjects || strconv.Itoa(id) != s {
		return 0, fmt.Errorf("json metadata: invalid %s id %q (want 0..%d)", what, s, MaxObjects-1)
	}
	return id, nil
}

// MarshalJSON writes the metadata compactly, in cryptsetup's object order
// (keyslots, tokens, segments, digests, config) and ids in ascending order.
func (m *Metadata) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"keyslots":`)
	if err := writeObjects(&b, m.Keyslots, func(k *Keyslot) rawValue { return k.Raw }); err != nil {
		return nil, err
	}
	b.WriteString(`,"tokens":`)
	if err := writeObjects(&b, m.Tokens, func(json.RawMessage) rawValue { return nil }); err != nil {
		return nil, err
	}
	b.WriteString(`,"segments":`)
	if err := writeObjects(&b, m.Segments, func(s *Segment) rawValue { return s.Raw }); err != nil {
		return nil, err
	}
	b.WriteString(`,"digests":`)
	if err := writeObjects(&b, m.Digests, func(d *Digest) rawValue { return d.Raw }); err != nil {
		return nil, err
	}
	b.WriteString(`,"config":`)
	if err := encodeCompact(&b, m.Config); err != nil {
		return nil, err
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeObjects[T any](b *bytes.Buffer, objs map[int]T, raw func(T) rawValue) error {
	b.WriteByte('{')
	ids := make([]int, 0, len(objs))
	for id := range objs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, `"%d":`, id)
		if r := raw(objs[id]); r != nil {
			b.Write(r)
			continue
		}
		if err := encodeCompact(b, objs[id]); err != nil {
			return err
		}
	}
	b.WriteByte('}')
	return nil
}

// encodeCompact writes v as compact JSON without HTML escaping (base64 keeps
// its "/" and "+", as json-c with JSON_C_TO_STRING_NOSLASHESCAPE writes them).
func encodeCompact(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

// ids returns the ids of a digest's or token's string id list.
func ids(list []string, what string) ([]int, error) {
	out := make([]int, 0, len(list))
	for _, s := range list {
		id, err := parseID(s, what)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// Validate checks the metadata before it is written into a header of
// hdrSize bytes: its JSON passes every rule cryptsetup's validation has
// before a write (validate.go), and the model checks of validateModel.
// Every write path goes through it, so confidisk never writes a header
// cryptsetup would refuse.
func (m *Metadata) Validate(hdrSize uint64) error {
	if !validHdrSize(hdrSize) {
		return fmt.Errorf("invalid header size %d", hdrSize)
	}
	js, err := m.MarshalJSON()
	if err != nil {
		return err
	}
	tree, err := jsonTree(js)
	if err != nil {
		return err
	}
	if err := validateTree(tree, hdrSize-BinHeaderSize, true); err != nil {
		return err
	}
	return m.validateModel(hdrSize)
}

// validateModel checks what this package needs of the decoded metadata:
// references between objects, keyslot areas inside the keyslots area and
// not overlapping, segments after it, sizes consistent with a header of
// hdrSize bytes, parameters it can use.
func (m *Metadata) validateModel(hdrSize uint64) error {
	if !validHdrSize(hdrSize) {
		return fmt.Errorf("invalid header size %d", hdrSize)
	}
	if uint64(m.Config.JSONSize) != hdrSize-BinHeaderSize {
		return fmt.Errorf("config json_size %d does not match header size %d (want %d)", m.Config.JSONSize, hdrSize, hdrSize-BinHeaderSize)
	}
	ksEnd := 2*hdrSize + uint64(m.Config.KeyslotsSize)
	if uint64(m.Config.KeyslotsSize)%4096 != 0 || ksEnd < 2*hdrSize {
		return fmt.Errorf("config keyslots_size %d is not a multiple of 4096", m.Config.KeyslotsSize)
	}
	if len(m.Config.Requirements) > 0 {
		var req struct {
			Mandatory []string `json:"mandatory"`
		}
		if err := json.Unmarshal(m.Config.Requirements, &req); err != nil {
			return fmt.Errorf("config requirements: %w", err)
		}
		for _, r := range req.Mandatory {
			if !slices.Contains(knownRequirements, r) {
				return fmt.Errorf("%w: unknown mandatory requirement %q", ErrUnsupported, r)
			}
		}
	}
	type span struct {
		start, end uint64
		what       string
	}
	var areas []span
	for id, k := range m.Keyslots {
		if k.Raw != nil {
			continue
		}
		if k.KeySize <= 0 || k.KeySize > 512 {
			return fmt.Errorf("keyslot %d: invalid key_size %d", id, k.KeySize)
		}
		if k.AF.Type != "luks1" || k.AF.Stripes != AFStripes {
			return fmt.Errorf("keyslot %d: unsupported af %q with %d stripes", id, k.AF.Type, k.AF.Stripes)
		}
		if k.Area.Type != "raw" {
			return fmt.Errorf("keyslot %d: unsupported area type %q", id, k.Area.Type)
		}
		if k.Area.KeySize <= 0 || k.Area.KeySize > 512 {
			return fmt.Errorf("keyslot %d: invalid area key_size %d", id, k.Area.KeySize)
		}
		start, size := uint64(k.Area.Offset), uint64(k.Area.Size)
		if start%4096 != 0 || size == 0 || start+size < start {
			return fmt.Errorf("keyslot %d: invalid area offset %d size %d", id, start, size)
		}
		if start < 2*hdrSize || start+size > ksEnd {
			return fmt.Errorf("keyslot %d: area [%d, %d) is outside the keyslots area [%d, %d)", id, start, start+size, 2*hdrSize, ksEnd)
		}
		if need := afSize(k.KeySize, k.AF.Stripes); size < need {
			return fmt.Errorf("keyslot %d: area of %d bytes cannot hold %d bytes of key material", id, size, need)
		}
		if k.Priority != nil && (*k.Priority < 0 || *k.Priority > 2) {
			return fmt.Errorf("keyslot %d: invalid priority %d", id, *k.Priority)
		}
		areas = append(areas, span{start, start + size, fmt.Sprintf("keyslot %d", id)})
	}
	slices.SortFunc(areas, func(a, b span) int { return int(a.start>>12) - int(b.start>>12) })
	for i := 1; i < len(areas); i++ {
		if areas[i].start < areas[i-1].end {
			return fmt.Errorf("%s and %s areas overlap", areas[i-1].what, areas[i].what)
		}
	}
	if len(m.Segments) == 0 {
		return errors.New("json metadata: no segment")
	}
	for id, s := range m.Segments {
		if s.Raw != nil {
			continue
		}
		if uint64(s.Offset) < ksEnd {
			return fmt.Errorf("segment %d: offset %d is inside the header or keyslots area (ends at %d)", id, s.Offset, ksEnd)
		}
		if s.Type == "crypt" {
			if s.SectorSize != 512 && s.SectorSize != 1024 && s.SectorSize != 2048 && s.SectorSize != 4096 {
				return fmt.Errorf("segment %d: invalid sector_size %d", id, s.SectorSize)
			}
			if uint64(s.Offset)%uint64(s.SectorSize) != 0 {
				return fmt.Errorf("segment %d: offset %d is not aligned to its sector size %d", id, s.Offset, s.SectorSize)
			}
			if s.Encryption == "" {
				return fmt.Errorf("segment %d: no encryption", id)
			}
		}
		if !s.Size.Dynamic && s.Size.Bytes%512 != 0 {
			return fmt.Errorf("segment %d: size %d is not a multiple of 512", id, s.Size.Bytes)
		}
	}
	for id, d := range m.Digests {
		if d.Raw != nil {
			continue
		}
		if _, err := hashByName(d.Hash); err != nil {
			return fmt.Errorf("digest %d: %w", id, err)
		}
		if d.Iterations <= 0 || len(d.Digest) < 20 || len(d.Salt) == 0 {
			return fmt.Errorf("digest %d: invalid parameters", id)
		}
		ks, err := ids(d.Keyslots, "keyslot")
		if err != nil {
			return fmt.Errorf("digest %d: %w", id, err)
		}
		for _, k := range ks {
			if m.Keyslots[k] == nil {
				return fmt.Errorf("digest %d refers to keyslot %d, which does not exist", id, k)
			}
		}
		sg, err := ids(d.Segments, "segment")
		if err != nil {
			return fmt.Errorf("digest %d: %w", id, err)
		}
		for _, s := range sg {
			if m.Segments[s] == nil {
				return fmt.Errorf("digest %d refers to segment %d, which does not exist", id, s)
			}
		}
	}
	for id, t := range m.Tokens {
		var th TokenHeader
		if err := json.Unmarshal(t, &th); err != nil {
			return fmt.Errorf("token %d: %w", id, err)
		}
		ks, err := ids(th.Keyslots, "keyslot")
		if err != nil {
			return fmt.Errorf("token %d: %w", id, err)
		}
		for _, k := range ks {
			if m.Keyslots[k] == nil {
				return fmt.Errorf("token %d refers to keyslot %d, which does not exist", id, k)
			}
		}
	}
	return nil
}

// digestFor returns the id of the digest that covers keyslot k.
func (m *Metadata) digestFor(k int) (int, *Digest, error) {
	ks := strconv.Itoa(k)
	for id, d := range m.Digests {
		if slices.Contains(d.Keyslots, ks) {
			return id, d, nil
		}
	}
	return 0, nil, fmt.Errorf("keyslot %d has no digest", k)
}

// segment0 returns the first crypt segment (id 0 in every header this
// package writes).
func (m *Metadata) segment0() (*Segment, error) {
	s := m.Segments[0]
	if s == nil || s.Type != "crypt" || s.Raw != nil {
		return nil, fmt.Errorf("%w: segment 0 is not a crypt segment", ErrUnsupported)
	}
	return s, nil
}

// tokenType returns the type of token t.
func tokenType(t json.RawMessage) string {
	var th TokenHeader
	_ = json.Unmarshal(t, &th)
	return th.Type
}

// indentLikeJSONC re-indents compact JSON the way json-c's
// JSON_C_TO_STRING_PRETTY does, which is what `cryptsetup luksDump
// --dump-json-metadata` prints: two spaces per level, no space after the
// colon, and an empty object or array still broken over two lines.
func indentLikeJSONC(compact []byte) ([]byte, error) {
	// Walk the tokens: decoding into a map would lose the key order.
	var out strings.Builder
	tokDec := json.NewDecoder(bytes.NewReader(compact))
	tokDec.UseNumber()
	if err := writeJSONC(&out, tokDec, 0); err != nil {
		return nil, err
	}
	return []byte(out.String()), nil
}

func writeJSONC(out *strings.Builder, dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	indent := func(d int) string { return strings.Repeat("  ", d) }
	switch t := tok.(type) {
	case json.Delim:
		closing := map[json.Delim]string{'{': "}", '[': "]"}[t]
		out.WriteString(string(t))
		out.WriteString("\n")
		first := true
		for dec.More() {
			if !first {
				out.WriteString(",\n")
			}
			first = false
			out.WriteString(indent(depth + 1))
			if t == '{' {
				key, err := dec.Token()
				if err != nil {
					return err
				}
				kb, _ := json.Marshal(key)
				out.Write(kb)
				out.WriteString(":")
			}
			if err := writeJSONC(out, dec, depth+1); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return err
		}
		if !first {
			out.WriteString("\n")
		}
		out.WriteString(indent(depth) + closing)
	case string:
		var b bytes.Buffer
		if err := encodeCompact(&b, t); err != nil {
			return err
		}
		out.Write(b.Bytes())
	case json.Number:
		out.WriteString(t.String())
	case bool:
		out.WriteString(strconv.FormatBool(t))
	case nil:
		out.WriteString("null")
	}
	return nil
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
