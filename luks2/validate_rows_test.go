package luks2

import (
	"strings"
	"testing"
)

func identity(t *testing.T, area []byte) []byte { return area }

// twoSegments splits segment 0 into a fixed one and a dynamic one after it.
func twoSegments(h map[string]any) {
	s0 := at(h, "segments", "0")
	s1 := deepCopy(s0).(map[string]any)
	s0["size"] = "1048576"
	s1["offset"] = "2097152"
	s1["iv_tweak"] = "256"
	at(h, "segments")["1"] = s1
	at(h, "digests", "0")["segments"] = []any{"0", "1"}
}

// addReencryptKeyslot adds keyslot 1 of type reencrypt (in no digest, as
// cryptsetup writes it) with the given mode.
func addReencryptKeyslot(h map[string]any, mode string) {
	at(h, "keyslots")["1"] = map[string]any{"type": "reencrypt", "key_size": 1, "mode": mode, "direction": "forward",
		"area": map[string]any{"type": "none", "offset": "294912", "size": "4096"}}
}

// mangledRows is the table: a valid header with one rule broken (wantErr
// says how confidisk must refuse it; cryptsetup must refuse it too) or with
// a change both tools accept (wantErr "").
var mangledRows = []mangledRow{
	{name: "valid", mut: identity},
	// JSON area bytes: luks2_disk_metadata.c validate_json_area, json-c parsing.
	{name: "area/byte-after-nul", wantErr: `json area: byte 0x78 at offset 12287 after the JSON text (only NUL bytes may follow it)`, mut: func(t *testing.T, a []byte) []byte { a[len(a)-1] = 'x'; return a }},
	{name: "area/duplicate-config-first", mut: text(func(s string) string { return `{"config":{},` + s[1:] })},
	{name: "area/duplicate-config-last", wantErr: `config: field "json_size"`, mut: text(func(s string) string { return s[:len(s)-1] + `,"config":{}}` })},
	{name: "area/escaped-key", mut: text(func(s string) string { return strings.Replace(s, `"tokens"`, `"tok\u0065ns"`, 1) })},
	{name: "area/fills-all-but-one", mut: func(t *testing.T, a []byte) []byte {
		s, _, _ := strings.Cut(string(a), "\x00")
		return []byte(s[:len(s)-1] + strings.Repeat(" ", len(a)-len(s)-1) + "}")
	}},
	{name: "area/leading-newline", wantErr: `json area: the first byte is not '{'`, mut: text(func(s string) string { return "\n" + s })},
	{name: "area/leading-space", wantErr: `json area: the first byte is not '{'`, mut: text(func(s string) string { return " " + s })},
	{name: "area/no-trailing-nul", wantErr: `json area: no NUL byte after the JSON text`, mut: func(t *testing.T, a []byte) []byte {
		s, _, _ := strings.Cut(string(a), "\x00")
		return []byte(s[:len(s)-1] + strings.Repeat(" ", len(a)-len(s)) + "}")
	}},
	{name: "area/nul-inside-text", wantErr: `json area: unexpected EOF`, mut: text(func(s string) string { return s[:20] + "\x00" + s[20:] })},
	{name: "area/pretty", mut: text(func(s string) string { return strings.ReplaceAll(s, ",", ",\n  ") })},
	{name: "area/trailing-newline", mut: text(func(s string) string { return s + "\n" })},
	{name: "area/trailing-object", wantErr: `json area: byte 0x7b at offset 775 after the JSON text (only NUL bytes may follow it)`, mut: text(func(s string) string { return s + "{}" })},
	{name: "area/trailing-tab-cr", mut: text(func(s string) string { return s + "\t\r" })},
	{name: "area/trailing-vertical-tab", wantErr: "json area: byte 0x0b", mut: text(func(s string) string { return s + "\v" })},
	{name: "area/trailing-form-feed", wantErr: "json area: byte 0x0c", mut: text(func(s string) string { return s + "\f" })},
	{name: "area/trailing-space", mut: text(func(s string) string { return s + " " })},
	// Top-level objects (format document section 3): each hdr_validate_* function.
	{name: "top/config-string", wantErr: `top level: field "config"`, mut: set("config", "x")},
	{name: "top/digests-array", wantErr: `top level: field "digests"`, mut: set("digests", raw(`[]`))},
	{name: "top/keyslots-array", wantErr: `top level: field "keyslots"`, mut: set("keyslots", raw(`[]`))},
	{name: "top/missing-config", wantErr: `top level: field "config"`, mut: set("config", nil)},
	{name: "top/missing-digests", wantErr: `top level: field "digests"`, mut: set("digests", nil)},
	{name: "top/missing-keyslots", wantErr: `top level: field "keyslots"`, mut: set("keyslots", nil)},
	{name: "top/missing-segments", wantErr: `top level: field "segments"`, mut: set("segments", nil)},
	{name: "top/missing-tokens", wantErr: `top level: field "tokens"`, mut: set("tokens", nil)},
	{name: "top/segments-array", wantErr: `top level: field "segments"`, mut: set("segments", raw(`[]`))},
	{name: "top/tokens-array", wantErr: `top level: field "tokens"`, mut: set("tokens", raw(`[]`))},
	{name: "top/unknown-field", mut: set("foo", raw(`{"bar":1}`))},
	// Keyslots: hdr_validate_keyslots, hdr_validate_areas, LUKS2_keyslots_validate.
	{name: "keyslot/af-hash-empty", wantErr: `keyslot 0 af: field "hash"`, mut: set("keyslots.0.af.hash", "")},
	{name: "keyslot/af-hash-unknown", mut: set("keyslots.0.af.hash", "foo")},
	{name: "keyslot/af-missing-hash", wantErr: `keyslot 0 af: field "hash"`, mut: set("keyslots.0.af.hash", nil)},
	{name: "keyslot/af-missing-stripes", wantErr: `keyslot 0 af: field "stripes"`, mut: set("keyslots.0.af.stripes", nil)},
	{name: "keyslot/af-missing-type", wantErr: `keyslot 0 af: field "type"`, mut: set("keyslots.0.af.type", nil)},
	{name: "keyslot/af-string", wantErr: `keyslot 0: field "af"`, mut: set("keyslots.0.af", "x")},
	{name: "keyslot/af-stripes-string", wantErr: `keyslot 0 af: field "stripes"`, mut: set("keyslots.0.af.stripes", "4000")},
	{name: "keyslot/af-type-luks2", wantErr: `keyslot 0 af: field "type"`, mut: set("keyslots.0.af.type", "luks2")},
	{name: "keyslot/af-type-number", wantErr: `keyslot 0 af: field "type"`, mut: set("keyslots.0.af.type", 1)},
	{name: "keyslot/area-encryption-empty", wantErr: `keyslot 0 area: field "encryption"`, mut: set("keyslots.0.area.encryption", "")},
	{name: "keyslot/area-encryption-number", wantErr: `keyslot 0 area: field "encryption"`, mut: set("keyslots.0.area.encryption", 1)},
	{name: "keyslot/area-key_size-string", wantErr: `keyslot 0 area: field "key_size"`, mut: set("keyslots.0.area.key_size", "64")},
	{name: "keyslot/area-missing-encryption", wantErr: `keyslot 0 area: field "encryption"`, mut: set("keyslots.0.area.encryption", nil)},
	{name: "keyslot/area-missing-key_size", wantErr: `keyslot 0 area: field "key_size"`, mut: set("keyslots.0.area.key_size", nil)},
	{name: "keyslot/area-missing-offset", wantErr: `keyslot 0 area: field "offset"`, mut: set("keyslots.0.area.offset", nil)},
	{name: "keyslot/area-missing-size", wantErr: `keyslot 0 area: field "size"`, mut: set("keyslots.0.area.size", nil)},
	{name: "keyslot/area-missing-type", wantErr: `keyslot 0 area: field "type"`, mut: set("keyslots.0.area.type", nil)},
	{name: "keyslot/area-offset-2^64", wantErr: `keyslot 0 area: field "offset"`, mut: set("keyslots.0.area.offset", "18446744073709551616")},
	{name: "keyslot/area-offset-empty", wantErr: `keyslot 0 area: field "offset"`, mut: set("keyslots.0.area.offset", "")},
	{name: "keyslot/area-offset-in-header", wantErr: `keyslot 0 area: field "offset"`, mut: set("keyslots.0.area.offset", "16384")},
	{name: "keyslot/area-offset-number", wantErr: `keyslot 0 area: field "offset"`, mut: set("keyslots.0.area.offset", 32768)},
	{name: "keyslot/area-offset-plus", wantErr: `keyslot 0 area: field "offset"`, mut: set("keyslots.0.area.offset", "+32768")},
	{name: "keyslot/area-offset-space", wantErr: `keyslot 0 area: field "offset"`, mut: set("keyslots.0.area.offset", " 32768")},
	{name: "keyslot/area-past-keyslots", wantErr: `keyslot 0 area: [524288, 782336) overflows the keyslots area (ends at 557056)`, mut: set("keyslots.0.area.offset", "524288")},
	{name: "keyslot/area-size-overflow", wantErr: `keyslot 0 area: field "size"`, mut: set("keyslots.0.area.size", "18446744073709551615")},
	{name: "keyslot/area-size-zero", wantErr: `keyslot 0 area: field "size"`, mut: set("keyslots.0.area.size", "0")},
	{name: "keyslot/area-string", wantErr: `keyslot 0: field "area"`, mut: set("keyslots.0.area", "x")},
	{name: "keyslot/area-type-empty", wantErr: `keyslot 0 area: field "type"`, mut: set("keyslots.0.area.type", "")},
	{name: "keyslot/area-type-foo", wantErr: `keyslot 0 area: field "type"`, mut: set("keyslots.0.area.type", "foo")},
	{name: "keyslot/area-type-number", wantErr: `keyslot 0 area: field "type"`, mut: set("keyslots.0.area.type", 1)},
	{name: "keyslot/argon2i-cpus-string", wantErr: `keyslot 0 kdf: field "cpus"`, mut: set("keyslots.0.kdf", raw(`{"type":"argon2i","time":4,"memory":1024,"cpus":"1","salt":"AAAA"}`))},
	{name: "keyslot/argon2id", mut: set("keyslots.0.kdf", raw(`{"type":"argon2id","time":4,"memory":1024,"cpus":1,"salt":"AAAA"}`))},
	{name: "keyslot/argon2id-leftover-hash", mut: set("keyslots.0.kdf", raw(`{"type":"argon2id","time":4,"memory":1024,"cpus":1,"salt":"AAAA","hash":"sha256"}`))},
	{name: "keyslot/argon2id-missing-memory", wantErr: `keyslot 0 kdf: field "memory"`, mut: set("keyslots.0.kdf", raw(`{"type":"argon2id","time":4,"cpus":1,"salt":"AAAA"}`))},
	{name: "keyslot/id-empty", wantErr: `keyslot "": referenced by 0 digests, want exactly 1`, mut: obj(func(h map[string]any) {
		ks := at(h, "keyslots")
		ks[""] = ks["0"]
		delete(ks, "0")
		at(h, "digests", "0")["keyslots"] = []any{""}
		at(h, "tokens", "0")["keyslots"] = []any{""}
	})},
	{name: "keyslot/id-leading-zero", wantErr: `keyslot "00": referenced by 0 digests, want exactly 1`, mut: obj(func(h map[string]any) {
		ks := at(h, "keyslots")
		ks["00"] = ks["0"]
		delete(ks, "0")
		at(h, "digests", "0")["keyslots"] = []any{"00"}
		at(h, "tokens", "0")["keyslots"] = []any{"00"}
	})},
	{name: "keyslot/id-letter", wantErr: `keyslot "a": the id is not in numbered form`, mut: obj(func(h map[string]any) {
		ks := at(h, "keyslots")
		ks["a"] = ks["0"]
		delete(ks, "0")
		at(h, "digests", "0")["keyslots"] = []any{"a"}
		at(h, "tokens", "0")["keyslots"] = []any{"a"}
	})},
	{name: "keyslot/kdf-missing-type", wantErr: `keyslot 0 kdf: field "type"`, mut: set("keyslots.0.kdf.type", nil)},
	{name: "keyslot/kdf-salt-empty", wantErr: `keyslot 0 kdf: field "salt"`, mut: set("keyslots.0.kdf.salt", "")},
	{name: "keyslot/kdf-string", wantErr: `keyslot 0: field "kdf"`, mut: set("keyslots.0.kdf", "x")},
	{name: "keyslot/kdf-type-empty", wantErr: `keyslot 0 kdf: field "type"`, mut: set("keyslots.0.kdf.type", "")},
	{name: "keyslot/kdf-type-foo", mut: set("keyslots.0.kdf.type", "foo")},
	{name: "keyslot/key_size-2^32", wantErr: `keyslot 0: field "key_size"`, mut: set("keyslots.0.key_size", raw("4294967296"))},
	{name: "keyslot/key_size-2^66", wantErr: `keyslot 0: field "key_size"`, mut: set("keyslots.0.key_size", raw("99999999999999999999"))},
	{name: "keyslot/key_size-exp", wantErr: `keyslot 0: field "key_size"`, mut: set("keyslots.0.key_size", raw("6e1"))},
	{name: "keyslot/key_size-float", wantErr: `keyslot 0: field "key_size"`, mut: set("keyslots.0.key_size", raw("64.0"))},
	{name: "keyslot/key_size-negative", wantErr: `keyslot 0: field "key_size"`, mut: set("keyslots.0.key_size", -1)},
	{name: "keyslot/key_size-string", wantErr: `keyslot 0: field "key_size"`, mut: set("keyslots.0.key_size", "64")},
	{name: "keyslot/missing-af", wantErr: `keyslot 0: field "af"`, mut: set("keyslots.0.af", nil)},
	{name: "keyslot/missing-area", wantErr: `keyslot 0: field "area"`, mut: set("keyslots.0.area", nil)},
	{name: "keyslot/missing-kdf", wantErr: `keyslot 0: field "kdf"`, mut: set("keyslots.0.kdf", nil)},
	{name: "keyslot/missing-key_size", wantErr: `keyslot 0: field "key_size"`, mut: set("keyslots.0.key_size", nil)},
	{name: "keyslot/missing-type", wantErr: `keyslot 0: field "type"`, mut: set("keyslots.0.type", nil)},
	{name: "keyslot/no-digest", wantErr: `keyslot 0: referenced by 0 digests, want exactly 1`, mut: set("digests.0.keyslots", raw(`[]`))},
	{name: "keyslot/not-object", wantErr: `token 0: field "keyslots"`, mut: set("keyslots.0", "x")},
	{name: "keyslot/overlap", mut: obj(func(h map[string]any) { addKeyslot1(h, "294912") })},
	{name: "keyslot/pbkdf2-hash-empty", wantErr: `keyslot 0 kdf: field "hash"`, mut: set("keyslots.0.kdf.hash", "")},
	{name: "keyslot/pbkdf2-iterations-float", wantErr: `keyslot 0 kdf: field "iterations"`, mut: set("keyslots.0.kdf.iterations", raw("1000.5"))},
	{name: "keyslot/pbkdf2-iterations-negative", mut: set("keyslots.0.kdf.iterations", -5)},
	{name: "keyslot/pbkdf2-iterations-string", wantErr: `keyslot 0 kdf: field "iterations"`, mut: set("keyslots.0.kdf.iterations", "1000")},
	{name: "keyslot/pbkdf2-leftover-time", mut: set("keyslots.0.kdf.time", 4)},
	{name: "keyslot/pbkdf2-missing-hash", wantErr: `keyslot 0 kdf: field "hash"`, mut: set("keyslots.0.kdf.hash", nil)},
	{name: "keyslot/pbkdf2-missing-iterations", wantErr: `keyslot 0 kdf: field "iterations"`, mut: set("keyslots.0.kdf.iterations", nil)},
	{name: "keyslot/pbkdf2-missing-salt", wantErr: `keyslot 0 kdf: field "salt"`, mut: set("keyslots.0.kdf.salt", nil)},
	{name: "keyslot/pbkdf2-salt-number", wantErr: `keyslot 0 kdf: field "salt"`, mut: set("keyslots.0.kdf.salt", 1)},
	{name: "keyslot/reencrypt-bad-mode", wantErr: `keyslot 1: field "mode"`, mut: obj(func(h map[string]any) { addReencryptKeyslot(h, "foo") })},
	{name: "keyslot/reencrypt-no-requirement", wantErr: "a reencrypt keyslot needs an online-reencrypt requirement", mut: obj(func(h map[string]any) { addReencryptKeyslot(h, "reencrypt") })},
	{name: "keyslot/reencrypt-no-mode", wantErr: `keyslot 1: field "key_size"`, mut: obj(func(h map[string]any) {
		addKeyslot1(h, "294912")
		k := at(h, "keyslots", "1")
		k["type"] = "reencrypt"
		d := at(h, "digests", "0")
		d["keyslots"] = []any{"0"}
	})},
	{name: "keyslot/two-digests", wantErr: `keyslot 0: referenced by 2 digests, want exactly 1`, mut: obj(func(h map[string]any) { at(h, "digests")["1"] = deepCopy(at(h, "digests", "0")) })},
	{name: "keyslot/type-empty", wantErr: `keyslot 0: field "type"`, mut: set("keyslots.0.type", "")},
	{name: "keyslot/type-number", wantErr: `keyslot 0: field "type"`, mut: set("keyslots.0.type", 2)},
	{name: "keyslot/type-unknown", mut: set("keyslots.0.type", "foo")},
	{name: "keyslot/type-unknown-no-area", wantErr: `keyslot 0: field "area"`, mut: obj(func(h map[string]any) { at(h, "keyslots", "0")["type"] = "foo"; delete(at(h, "keyslots", "0"), "area") })},
	{name: "keyslot/type-unknown-no-digest", mut: obj(func(h map[string]any) {
		at(h, "keyslots", "0")["type"] = "foo"
		at(h, "digests", "0")["keyslots"] = []any{}
	})},
	{name: "keyslot/unknown-field", mut: set("keyslots.0.foo", raw(`[1]`))},
	// Segments: hdr_validate_segments, hdr_validate_crypt_segment.
	{name: "segment/backup-after-regular", mut: obj(func(h map[string]any) { twoSegments(h); at(h, "segments", "1")["flags"] = []any{"backup-final"} })},
	{name: "segment/backup-before-regular", wantErr: `segment 1: a regular segment behind backup segment 0`, mut: obj(func(h map[string]any) { twoSegments(h); at(h, "segments", "0")["flags"] = []any{"backup-final"} })},
	{name: "segment/dynamic-not-last", wantErr: `segment 0: only the last regular segment may have a dynamic size`, mut: obj(func(h map[string]any) {
		twoSegments(h)
		at(h, "segments", "0")["size"] = "dynamic"
		at(h, "segments", "1")["size"] = "1048576"
	})},
	{name: "segment/empty", wantErr: `segments: the section is empty`, mut: obj(func(h map[string]any) { h["segments"] = map[string]any{}; at(h, "digests", "0")["segments"] = []any{} })},
	{name: "segment/encryption-empty", wantErr: `segment 0: field "encryption"`, mut: set("segments.0.encryption", "")},
	{name: "segment/encryption-unknown", mut: set("segments.0.encryption", "foo-bar")},
	{name: "segment/flags-backup", wantErr: `segments: no regular segment`, mut: set("segments.0.flags", raw(`["backup-final"]`))},
	{name: "segment/flags-number-element", wantErr: `segment 0: field "flags"`, mut: set("segments.0.flags", raw(`[1]`))},
	{name: "segment/flags-string", wantErr: `segment 0: field "flags"`, mut: set("segments.0.flags", "x")},
	{name: "segment/flags-unknown", mut: set("segments.0.flags", raw(`["foo"]`))},
	{name: "segment/gap", wantErr: `segments: gap at id 1`, mut: obj(func(h map[string]any) {
		twoSegments(h)
		s := at(h, "segments")
		s["2"] = s["1"]
		delete(s, "1")
		at(h, "digests", "0")["segments"] = []any{"0", "2"}
	})},
	{name: "segment/id-1-only", wantErr: `segments: gap at id 0`, mut: obj(func(h map[string]any) {
		s := at(h, "segments")
		s["1"] = s["0"]
		delete(s, "0")
		at(h, "digests", "0")["segments"] = []any{"1"}
	})},
	{name: "segment/id-letter", wantErr: `segment "a": the id is not in numbered form`, mut: obj(func(h map[string]any) {
		s := at(h, "segments")
		s["a"] = s["0"]
		delete(s, "0")
		at(h, "digests", "0")["segments"] = []any{"a"}
	})},
	{name: "segment/integrity-missing-journal_encryption", wantErr: `segment 0 integrity: field "journal_encryption"`, mut: set("segments.0.integrity", raw(`{"type":"hmac(sha256)","journal_integrity":"none"}`))},
	{name: "segment/integrity-missing-journal_integrity", wantErr: `segment 0 integrity: field "journal_integrity"`, mut: set("segments.0.integrity", raw(`{"type":"hmac(sha256)","journal_encryption":"none"}`))},
	{name: "segment/integrity-missing-type", wantErr: `segment 0 integrity: field "type"`, mut: set("segments.0.integrity", raw(`{"journal_encryption":"none","journal_integrity":"none"}`))},
	{name: "segment/integrity-ok", mut: set("segments.0.integrity", raw(`{"type":"hmac(sha256)","journal_encryption":"none","journal_integrity":"none"}`))},
	{name: "segment/integrity-string", wantErr: `segment 0: field "integrity"`, mut: set("segments.0.integrity", "x")},
	{name: "segment/integrity-type-empty", wantErr: `segment 0 integrity: field "type"`, mut: set("segments.0.integrity", raw(`{"type":"","journal_encryption":"none","journal_integrity":"none"}`))},
	{name: "segment/iv_tweak-2^64", wantErr: `segment 0: field "iv_tweak"`, mut: set("segments.0.iv_tweak", "18446744073709551616")},
	{name: "segment/iv_tweak-empty", wantErr: `segment 0: field "iv_tweak"`, mut: set("segments.0.iv_tweak", "")},
	{name: "segment/iv_tweak-minus", wantErr: `segment 0: field "iv_tweak"`, mut: set("segments.0.iv_tweak", "-1")},
	{name: "segment/iv_tweak-number", wantErr: `segment 0: field "iv_tweak"`, mut: set("segments.0.iv_tweak", 0)},
	{name: "segment/linear-no-digest", mut: obj(func(h map[string]any) {
		twoSegments(h)
		at(h, "segments", "1")["type"] = "linear"
		at(h, "digests", "0")["segments"] = []any{"0"}
	})},
	{name: "segment/missing-encryption", wantErr: `segment 0: field "encryption"`, mut: set("segments.0.encryption", nil)},
	{name: "segment/missing-iv_tweak", wantErr: `segment 0: field "iv_tweak"`, mut: set("segments.0.iv_tweak", nil)},
	{name: "segment/missing-offset", wantErr: `segment 0: field "offset"`, mut: set("segments.0.offset", nil)},
	{name: "segment/missing-sector_size", wantErr: `segment 0: field "sector_size"`, mut: set("segments.0.sector_size", nil)},
	{name: "segment/missing-size", wantErr: `segment 0: field "size"`, mut: set("segments.0.size", nil)},
	{name: "segment/missing-type", wantErr: `segment 0: field "type"`, mut: set("segments.0.type", nil)},
	{name: "segment/no-digest", wantErr: `segment 0: no digest covers the crypt segment`, mut: set("digests.0.segments", raw(`[]`))},
	{name: "segment/not-object", wantErr: `digest 0: field "segments"`, mut: set("segments.0", 1)},
	{name: "segment/offset-2^64", wantErr: `segment 0: field "offset"`, mut: set("segments.0.offset", "18446744073709551616")},
	{name: "segment/offset-empty", wantErr: `segment 0: field "offset"`, mut: set("segments.0.offset", "")},
	{name: "segment/offset-in-keyslots", wantErr: `config: field "keyslots_size"`, mut: set("segments.0.offset", "524288")},
	{name: "segment/offset-letters", wantErr: `segment 0: field "offset"`, mut: set("segments.0.offset", "1M")},
	{name: "segment/offset-number", wantErr: `segment 0: field "offset"`, mut: set("segments.0.offset", 1048576)},
	{name: "segment/offset-unaligned", wantErr: `segment 0: field "offset"`, mut: set("segments.0.offset", "1048577")},
	{name: "segment/overlap", wantErr: `segment 1 overlaps segment 0`, mut: obj(func(h map[string]any) { twoSegments(h); at(h, "segments", "1")["offset"] = "1572864" })},
	{name: "segment/second-no-digest", wantErr: `segment 1: no digest covers the crypt segment`, mut: obj(func(h map[string]any) { twoSegments(h); at(h, "digests", "0")["segments"] = []any{"0"} })},
	{name: "segment/sector_size-1000", wantErr: `segment 0: field "sector_size"`, mut: set("segments.0.sector_size", 1000)},
	{name: "segment/sector_size-2^32", wantErr: `segment 0: field "sector_size"`, mut: set("segments.0.sector_size", raw("4294967296"))},
	{name: "segment/sector_size-negative", wantErr: `segment 0: field "sector_size"`, mut: set("segments.0.sector_size", -4096)},
	{name: "segment/sector_size-string", wantErr: `segment 0: field "sector_size"`, mut: set("segments.0.sector_size", "4096")},
	{name: "segment/sector_size-zero", wantErr: `segment 0: field "sector_size"`, mut: set("segments.0.sector_size", 0)},
	{name: "segment/size-2^64", wantErr: `segment 0: field "size"`, mut: set("segments.0.size", "18446744073709551616")},
	{name: "segment/size-fixed", mut: set("segments.0.size", "1048576")},
	{name: "segment/size-huge-aligned", mut: set("segments.0.size", "18446744073709547520")},
	{name: "segment/size-letters", wantErr: `segment 0: field "size"`, mut: set("segments.0.size", "Dynamic")},
	{name: "segment/size-number", wantErr: `segment 0: field "size"`, mut: set("segments.0.size", 4096)},
	{name: "segment/size-uint64-max", wantErr: `segment 0: field "size"`, mut: set("segments.0.size", "18446744073709551615")},
	{name: "segment/size-unaligned-512", wantErr: `segment 0: field "size"`, mut: set("segments.0.size", "1000")},
	{name: "segment/size-unaligned-sector", wantErr: `segment 0: field "size"`, mut: set("segments.0.size", "1536")},
	{name: "segment/size-zero", wantErr: `segment 0: field "size"`, mut: set("segments.0.size", "0")},
	{name: "segment/two", mut: obj(twoSegments)},
	{name: "segment/type-empty", wantErr: `segment 0: field "type"`, mut: set("segments.0.type", "")},
	{name: "segment/type-foo", mut: set("segments.0.type", "foo")},
	{name: "segment/type-linear", mut: set("segments.0.type", "linear")},
	{name: "segment/type-number", wantErr: `segment 0: field "type"`, mut: set("segments.0.type", 1)},
	{name: "segment/unknown-field", mut: set("segments.0.foo", "bar")},
	// Digests: hdr_validate_digests.
	{name: "digest/id-letter", wantErr: `digest "a": the id is not in numbered form`, mut: obj(func(h map[string]any) { d := at(h, "digests"); d["a"] = d["0"]; delete(d, "0") })},
	{name: "digest/keyslots-duplicate", mut: set("digests.0.keyslots", raw(`["0","0"]`))},
	{name: "digest/keyslots-missing-keyslot", wantErr: `digest 0: field "keyslots"`, mut: set("digests.0.keyslots", raw(`["0","5"]`))},
	{name: "digest/keyslots-number-element", wantErr: `digest 0: field "keyslots"`, mut: set("digests.0.keyslots", raw(`[0]`))},
	{name: "digest/keyslots-string", wantErr: `digest 0: field "keyslots"`, mut: set("digests.0.keyslots", "0")},
	{name: "digest/missing-keyslots", wantErr: `digest 0: field "keyslots"`, mut: set("digests.0.keyslots", nil)},
	{name: "digest/missing-segments", wantErr: `digest 0: field "segments"`, mut: set("digests.0.segments", nil)},
	{name: "digest/missing-type", wantErr: `digest 0: field "type"`, mut: set("digests.0.type", nil)},
	{name: "digest/not-object", wantErr: `digest 0: not an object`, mut: set("digests.0", raw(`[]`))},
	{name: "digest/segments-missing-segment", wantErr: `digest 0: field "segments"`, mut: set("digests.0.segments", raw(`["0","3"]`))},
	{name: "digest/segments-number-element", wantErr: `digest 0: field "segments"`, mut: set("digests.0.segments", raw(`[0]`))},
	{name: "digest/segments-object", wantErr: `digest 0: field "segments"`, mut: set("digests.0.segments", raw(`{}`))},
	{name: "digest/type-empty", wantErr: `digest 0: field "type"`, mut: set("digests.0.type", "")},
	{name: "digest/type-foo", mut: set("digests.0.type", "foo")},
	{name: "digest/unknown-field", mut: set("digests.0.foo", 1)},
	// Tokens: hdr_validate_tokens, LUKS2_token_validate.
	{name: "token/id-letter", wantErr: `token "a": the id is not in numbered form`, mut: obj(func(h map[string]any) { d := at(h, "tokens"); d["a"] = d["0"]; delete(d, "0") })},
	{name: "token/invalid-utf8", mut: set("tokens.0.foo", "\xff\xfe")},
	{name: "token/keyring-no-description", mut: set("tokens.0.type", "luks2-keyring")},
	{name: "token/keyslots-empty", mut: set("tokens.0.keyslots", raw(`[]`))},
	{name: "token/keyslots-missing-keyslot", wantErr: `token 0: field "keyslots"`, mut: set("tokens.0.keyslots", raw(`["7"]`))},
	{name: "token/keyslots-number-element", wantErr: `token 0: field "keyslots"`, mut: set("tokens.0.keyslots", raw(`[0]`))},
	{name: "token/keyslots-string", wantErr: `token 0: field "keyslots"`, mut: set("tokens.0.keyslots", "0")},
	{name: "token/missing-keyslots", wantErr: `token 0: field "keyslots"`, mut: set("tokens.0.keyslots", nil)},
	{name: "token/missing-type", wantErr: `token 0: field "type"`, mut: set("tokens.0.type", nil)},
	{name: "token/not-object", wantErr: `token 0: not an object`, mut: set("tokens.0", "x")},
	{name: "token/systemd-tpm2-empty", mut: set("tokens.0.type", "systemd-tpm2")},
	{name: "token/type-empty", wantErr: `token 0: field "type"`, mut: set("tokens.0.type", "")},
	{name: "token/type-number", wantErr: `token 0: field "type"`, mut: set("tokens.0.type", 1)},
	{name: "token/unknown-field", mut: set("tokens.0.foo", raw(`{"a":[1,2]}`))},
	// Config: hdr_validate_config, hdr_validate_requirements, hdr_validate_json_size.
	{name: "config/flags-number-element", wantErr: `config: field "flags"`, mut: set("config.flags", raw(`[1]`))},
	{name: "config/flags-ok", mut: set("config.flags", raw(`["allow-discards","foo"]`))},
	{name: "config/flags-string", wantErr: `config: field "flags"`, mut: set("config.flags", "allow-discards")},
	{name: "config/json_size-letters", wantErr: `config: field "json_size"`, mut: set("config.json_size", "12k")},
	{name: "config/json_size-mismatch", wantErr: `keyslot 0 area: field "offset"`, mut: set("config.json_size", "28672")},
	{name: "config/json_size-number", wantErr: `config: field "json_size"`, mut: set("config.json_size", 12288)},
	{name: "config/keyslots_size-empty", wantErr: `config: field "keyslots_size"`, mut: set("config.keyslots_size", "")},
	{name: "config/keyslots_size-into-data", wantErr: `config: field "keyslots_size"`, mut: set("config.keyslots_size", "2097152")},
	{name: "config/keyslots_size-number", wantErr: `config: field "keyslots_size"`, mut: set("config.keyslots_size", 524288)},
	{name: "config/keyslots_size-smaller", mut: set("config.keyslots_size", "290816")},
	{name: "config/keyslots_size-too-big", wantErr: `config: field "keyslots_size"`, mut: obj(func(h map[string]any) {
		at(h, "config")["keyslots_size"] = "268435456"
		at(h, "segments", "0")["offset"] = "0"
	})},
	{name: "config/keyslots_size-unaligned", wantErr: `config: field "keyslots_size"`, mut: set("config.keyslots_size", "524289")},
	{name: "config/keyslots_size-zero", wantErr: `keyslot 0 area: [32768, 290816) overflows the keyslots area (ends at 32768)`, mut: set("config.keyslots_size", "0")},
	{name: "config/mandatory-number-element", wantErr: `config requirements: field "mandatory"`, mut: set("config.requirements", raw(`{"mandatory":[1]}`))},
	{name: "config/mandatory-reencrypt-no-keyslot", wantErr: `segments: an online-reencrypt requirement needs a backup-final and a backup-previous segment`, mut: set("config.requirements", raw(`{"mandatory":["online-reencrypt-v2"]}`))},
	{name: "config/mandatory-string", wantErr: `config requirements: field "mandatory"`, mut: set("config.requirements", raw(`{"mandatory":"x"}`))},
	{name: "config/mandatory-two-reencrypt", wantErr: `config requirements: field "mandatory"`, mut: set("config.requirements", raw(`{"mandatory":["online-reencrypt-v2","online-reencrypt-v3"]}`))},
	{name: "config/missing-json_size", wantErr: `config: field "json_size"`, mut: set("config.json_size", nil)},
	{name: "config/missing-keyslots_size", wantErr: `config: field "keyslots_size"`, mut: set("config.keyslots_size", nil)},
	{name: "config/requirements-array", wantErr: `config: field "requirements"`, mut: set("config.requirements", raw(`[]`))},
	{name: "config/requirements-empty", mut: set("config.requirements", raw(`{}`))},
	{name: "config/requirements-optional", mut: set("config.requirements", raw(`{"mandatory":[],"optional":["x"]}`))},
	{name: "config/unknown-field", mut: set("config.foo", "bar")},
	// One copy mangled, the other valid: both tools use the valid one.
	{name: "copies/primary-bad", primaryOnly: true, mut: set("keyslots", nil)},
	{name: "copies/primary-no-digest", primaryOnly: true, mut: set("digests.0.keyslots", raw(`[]`))},
	// Every metadata size, in both copies (LUKS2_check_metadata_area_size).
	{name: "size/128k", hdrSize: 0x20000, mut: identity},
	{name: "size/1m", hdrSize: 0x100000, mut: identity},
	{name: "size/256k", hdrSize: 0x40000, mut: identity},
	{name: "size/2m", hdrSize: 0x200000, mut: identity},
	{name: "size/32k", hdrSize: 0x8000, mut: identity},
	{name: "size/4m", hdrSize: 0x400000, mut: identity},
	{name: "size/4m-json_size-mismatch", wantErr: `keyslot 0 area: [8388608, 8646656) overflows the keyslots area (ends at 557056)`, hdrSize: 0x400000, mut: set("config.json_size", "12288")},
	{name: "size/512k", hdrSize: 0x80000, mut: identity},
	{name: "size/64k", hdrSize: 0x10000, mut: identity},
	{name: "size/64k-no-trailing-nul", wantErr: `json area: no NUL byte after the JSON text`, hdrSize: 0x10000, mut: func(t *testing.T, a []byte) []byte {
		s, _, _ := strings.Cut(string(a), "\x00")
		return []byte(s[:len(s)-1] + strings.Repeat(" ", len(a)-len(s)) + "}")
	}},
}

// stricterRows are headers cryptsetup 2.6 accepts and confidisk refuses, on
// purpose: json-c's extensions to JSON, integer strings that are not in
// canonical form, ids past LUKS2_KEYSLOTS_MAX, and parameters confidisk
// cannot use (unknown requirements, digests it cannot verify, keyslot areas
// too small for their key material, sector sizes dm-crypt refuses).
var stricterRows = []mangledRow{
	{name: "area/comment", wantErr: `json area: invalid character '/' looking for beginning of object key string`, mut: text(func(s string) string { return "{/*c*/" + s[1:] })},
	{name: "area/line-comment", wantErr: `json area: invalid character '/' looking for beginning of object key string`, mut: text(func(s string) string { return "{//c\n" + s[1:] })},
	{name: "area/single-quote", wantErr: `json area: invalid character '\'' looking for beginning of object key string`, mut: text(func(s string) string { return strings.Replace(s, `"tokens"`, `'tokens'`, 1) })},
	{name: "area/trailing-comma", wantErr: `json area: invalid character '}' looking for beginning of object key string`, mut: text(func(s string) string { return s[:len(s)-1] + ",}" })},
	{name: "config/json_size-leading-zero", wantErr: `config: invalid string-uint64 "012288"`, mut: set("config.json_size", "012288")},
	{name: "config/json_size-plus", wantErr: `config: invalid string-uint64 "+12288"`, mut: set("config.json_size", "+12288")},
	{name: "config/json_size-space", wantErr: `config: invalid string-uint64 " 12288"`, mut: set("config.json_size", " 12288")},
	{name: "config/mandatory-unknown", wantErr: `unsupported LUKS2 feature: unknown mandatory requirement "foo"`, mut: set("config.requirements", raw(`{"mandatory":["foo"]}`))},
	{name: "digest/digest-not-base64", wantErr: `digest 0: illegal base64 data at input byte 0`, mut: set("digests.0.digest", "!!!")},
	{name: "digest/id-leading-zero", wantErr: `invalid digest id "00" (want 0..31)`, mut: obj(func(h map[string]any) { d := at(h, "digests"); d["00"] = d["0"]; delete(d, "0") })},
	{name: "digest/iterations-string", wantErr: `digest 0: json: cannot unmarshal string into Go struct field Digest.iterations of type int`, mut: set("digests.0.iterations", "1000")},
	{name: "digest/missing-digest", wantErr: `digest 0: invalid parameters`, mut: set("digests.0.digest", nil)},
	{name: "digest/missing-hash", wantErr: `digest 0: unsupported LUKS2 feature: hash ""`, mut: set("digests.0.hash", nil)},
	{name: "digest/missing-iterations", wantErr: `digest 0: invalid parameters`, mut: set("digests.0.iterations", nil)},
	{name: "digest/missing-salt", wantErr: `digest 0: invalid parameters`, mut: set("digests.0.salt", nil)},
	{name: "digest/unused", wantErr: `digest 1: invalid parameters`, mut: set("digests.1", raw(`{"type":"pbkdf2","keyslots":[],"segments":[],"hash":"sha256","iterations":1000,"salt":"AAAA","digest":"AAAA"}`))},
	{name: "keyslot/af-stripes-1", wantErr: `keyslot 0: unsupported af "luks1" with 1 stripes`, mut: set("keyslots.0.af.stripes", 1)},
	{name: "keyslot/area-key_size-negative", wantErr: `keyslot 0: invalid area key_size -64`, mut: set("keyslots.0.area.key_size", -64)},
	{name: "keyslot/area-offset-leading-zero", wantErr: `keyslot 0: invalid string-uint64 "032768"`, mut: set("keyslots.0.area.offset", "032768")},
	{name: "keyslot/area-offset-unaligned", wantErr: `keyslot 0: invalid area offset 33280 size 258048`, mut: set("keyslots.0.area.offset", "33280")},
	{name: "keyslot/area-size-small", wantErr: `keyslot 0: area of 4096 bytes cannot hold 256000 bytes of key material`, mut: set("keyslots.0.area.size", "4096")},
	{name: "keyslot/id-32", wantErr: `invalid keyslot id "32" (want 0..31)`, mut: obj(func(h map[string]any) {
		ks := at(h, "keyslots")
		ks["32"] = ks["0"]
		delete(ks, "0")
		at(h, "digests", "0")["keyslots"] = []any{"32"}
		at(h, "tokens", "0")["keyslots"] = []any{"32"}
	})},
	{name: "keyslot/key_size-128", wantErr: `keyslot 0: area of 258048 bytes cannot hold 512000 bytes of key material`, mut: set("keyslots.0.key_size", 128)},
	{name: "keyslot/key_size-zero", wantErr: `keyslot 0: invalid key_size 0`, mut: set("keyslots.0.key_size", 0)},
	{name: "keyslot/pbkdf2-iterations-2^66", wantErr: `keyslot 0: json: cannot unmarshal number 99999999999999999999 into Go struct field KDF.kdf.iterations of type int`, mut: set("keyslots.0.kdf.iterations", raw("99999999999999999999"))},
	{name: "keyslot/priority-7", wantErr: `keyslot 0: invalid priority 7`, mut: set("keyslots.0.priority", 7)},
	{name: "keyslot/priority-string", wantErr: `keyslot 0: json: cannot unmarshal string into Go struct field Keyslot.priority of type int`, mut: set("keyslots.0.priority", "1")},
	{name: "keyslot/two-ok", wantErr: `keyslot 1: area of 229376 bytes cannot hold 256000 bytes of key material`, mut: obj(func(h map[string]any) { addKeyslot1(h, "294912"); at(h, "keyslots", "1", "area")["size"] = "229376" })},
	{name: "segment/linear-sector_size-string", wantErr: `segment 0: json: cannot unmarshal string into Go struct field Segment.sector_size of type int`, mut: obj(func(h map[string]any) {
		at(h, "segments", "0")["type"] = "linear"
		at(h, "segments", "0")["sector_size"] = "x"
	})},
	{name: "segment/offset-512-aligned", wantErr: `segment 0: offset 1049088 is not aligned to its sector size 4096`, mut: set("segments.0.offset", "1049088")},
	{name: "segment/offset-leading-zero", wantErr: `segment 0: invalid string-uint64 "01048576"`, mut: set("segments.0.offset", "01048576")},
	{name: "segment/offset-zero", wantErr: `segment 0: offset 0 is inside the header or keyslots area (ends at 557056)`, mut: set("segments.0.offset", "0")},
	{name: "segment/sector_size-8192", wantErr: `segment 0: invalid sector_size 8192`, mut: set("segments.0.sector_size", 8192)},
	{name: "token/id-40", wantErr: `invalid token id "40" (want 0..31)`, mut: obj(func(h map[string]any) { d := at(h, "tokens"); d["40"] = d["0"]; delete(d, "0") })},
	{name: "token/id-empty", wantErr: `invalid token id "" (want 0..31)`, mut: obj(func(h map[string]any) { d := at(h, "tokens"); d[""] = d["0"]; delete(d, "0") })},
	{name: "token/id-leading-zero", wantErr: `invalid token id "00" (want 0..31)`, mut: obj(func(h map[string]any) { d := at(h, "tokens"); d["00"] = d["0"]; delete(d, "0") })},
}
