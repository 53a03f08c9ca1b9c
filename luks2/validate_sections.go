package luks2

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// validateRequirements mirrors hdr_validate_requirements: config.requirements
// is an optional object whose optional "mandatory" member is an array of
// strings holding at most one online-reencrypt flag.
func validateRequirements(top map[string]any) error {
	cfg, err := section(top, "config")
	if err != nil {
		return err
	}
	if _, ok := cfg["requirements"]; !ok {
		return nil
	}
	req, err := objField(cfg, "config", "requirements")
	if err != nil {
		return err
	}
	mandatory, err := stringArray(req, "config requirements", "mandatory")
	if err != nil {
		return err
	}
	if n := len(slices.DeleteFunc(mandatory, func(f string) bool { return !reencryptCandidate(f) })); n > 1 {
		return fieldErr("config requirements", "mandatory", "holds %d online-reencrypt flags, at most 1", n)
	}
	return nil
}

// reencryptCandidate mirrors reencrypt_candidate_flag: "online-reencrypt"
// or "online-reencrypt-v" and a version number.
func reencryptCandidate(flag string) bool {
	v, ok := strings.CutPrefix(flag, "online-reencrypt-v")
	return flag == "online-reencrypt" || ok && v != "" && numbered(v)
}

// onlineReencrypt reports whether config.requirements.mandatory holds an
// online-reencrypt flag cryptsetup 2.6 knows (CRYPT_REQUIREMENT_ONLINE_REENCRYPT
// in LUKS2_config_get_requirements). Requirements must be validated first.
func onlineReencrypt(top map[string]any) bool {
	req, _ := top["config"].(map[string]any)["requirements"].(map[string]any)
	mandatory, _ := req["mandatory"].([]any)
	return slices.ContainsFunc(mandatory, func(f any) bool {
		return f == "online-reencrypt" || f == "online-reencrypt-v2" || f == "online-reencrypt-v3"
	})
}

// validateTokens mirrors hdr_validate_tokens and LUKS2_token_validate: each
// token has a non-empty string "type" and a "keyslots" array naming existing
// keyslots (format document section 3.5).
func validateTokens(top map[string]any) error {
	tokens, err := section(top, "tokens")
	if err != nil {
		return err
	}
	keyslots, err := section(top, "keyslots")
	if err != nil {
		return err
	}
	return forEach(tokens, "token", func(what, _ string, o map[string]any) error {
		if _, err := strField(o, what, "type"); err != nil {
			return err
		}
		ks, err := arrField(o, what, "keyslots")
		if err != nil {
			return err
		}
		return refArray(ks, keyslots, what, "keyslots", "keyslot")
	})
}

// validateDigests mirrors hdr_validate_digests: each digest has a non-empty
// string "type" and "keyslots" and "segments" arrays naming existing
// keyslots and segments (format document section 3.4).
func validateDigests(top map[string]any) error {
	digests, err := section(top, "digests")
	if err != nil {
		return err
	}
	keyslots, err := section(top, "keyslots")
	if err != nil {
		return err
	}
	segments, err := section(top, "segments")
	if err != nil {
		return err
	}
	return forEach(digests, "digest", func(what, _ string, o map[string]any) error {
		if _, err := strField(o, what, "type"); err != nil {
			return err
		}
		ks, err := arrField(o, what, "keyslots")
		if err != nil {
			return err
		}
		sg, err := arrField(o, what, "segments")
		if err != nil {
			return err
		}
		if err := refArray(ks, keyslots, what, "keyslots", "keyslot"); err != nil {
			return err
		}
		return refArray(sg, segments, what, "segments", "segment")
	})
}

// segInfo is what the segment rules need of one segment.
type segInfo struct {
	offset, size uint64 // size 0: dynamic
	backup       bool
	flags        []string
}

// validateSegments mirrors hdr_validate_segments (format document section
// 3.3): every segment, the order of regular and backup segments, no gaps in
// the ids, no overlaps, then validate_reencrypt_segments.
func validateSegments(top map[string]any) error {
	segs, err := section(top, "segments")
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		return fmt.Errorf("segments: the section is empty")
	}
	digests, err := section(top, "digests")
	if err != nil {
		return err
	}
	infos := map[string]segInfo{}
	err = forEach(segs, "segment", func(what, id string, o map[string]any) error {
		si, err := segmentCommon(o, what)
		if err == nil && o["type"] == "crypt" {
			err = cryptSegment(o, what, id, si.size, digests)
		}
		infos[id] = si
		return err
	})
	if err != nil {
		return err
	}
	firstBackup, err := backupOrder(infos)
	if err != nil {
		return err
	}
	if err := segmentIntervals(infos, firstBackup); err != nil {
		return err
	}
	return reencryptSegments(top, infos, firstBackup)
}

// segmentCommon checks the fields every segment type has: non-empty strings
// "type", "offset" and "size" ("dynamic" or a string-uint64 other than 0),
// offset and size multiples of 512, optional "flags" array of strings.
func segmentCommon(o map[string]any, what string) (segInfo, error) {
	var si segInfo
	if _, err := strField(o, what, "type"); err != nil {
		return si, err
	}
	off, err := u64Field(o, what, "offset")
	if err != nil {
		return si, err
	}
	si.offset = off
	if o["size"] != "dynamic" {
		if si.size, err = u64Field(o, what, "size"); err != nil {
			return si, err
		}
		if si.size == 0 {
			return si, fieldErr(what, "size", "is 0")
		}
	}
	if off%512 != 0 {
		return si, fieldErr(what, "offset", "%d is not a multiple of 512", off)
	}
	if si.size%512 != 0 {
		return si, fieldErr(what, "size", "%d is not a multiple of 512", si.size)
	}
	if si.flags, err = stringArray(o, what, "flags"); err != nil {
		return si, err
	}
	// json_segment_is_backup: a flag starting with "backup-".
	si.backup = slices.ContainsFunc(si.flags, func(f string) bool { return strings.HasPrefix(f, "backup-") })
	return si, nil
}

// cryptSegment mirrors hdr_validate_crypt_segment: "iv_tweak" (string-uint64),
// "encryption", "sector_size" (a non-zero uint32 multiple of 512 that divides
// the size), optional "integrity" object with "type", "journal_encryption"
// and "journal_integrity", and a digest that covers the segment.
func cryptSegment(o map[string]any, what, id string, size uint64, digests map[string]any) error {
	if _, err := u64Field(o, what, "iv_tweak"); err != nil {
		return err
	}
	if _, err := strField(o, what, "encryption"); err != nil {
		return err
	}
	if _, ok := o["integrity"]; ok {
		integ, err := objField(o, what, "integrity")
		if err != nil {
			return err
		}
		for _, k := range []string{"type", "journal_encryption", "journal_integrity"} {
			if _, err := strField(integ, what+" integrity", k); err != nil {
				return err
			}
		}
	}
	ss, err := uint32Field(o, what, "sector_size")
	if err != nil {
		return err
	}
	if ss == 0 || ss%512 != 0 {
		return fieldErr(what, "sector_size", "%d is not a non-zero multiple of 512", ss)
	}
	if size%uint64(ss) != 0 {
		return fieldErr(what, "size", "%d is not a multiple of the sector size %d", size, ss)
	}
	if !slices.ContainsFunc(sortedValues(digests), func(d map[string]any) bool {
		sg, _ := d["segments"].([]any)
		return slices.Contains(sg, any(id))
	}) {
		return fmt.Errorf("%s: no digest covers the crypt segment", what)
	}
	return nil
}

// sortedValues returns the objects of a validated section.
func sortedValues(sec map[string]any) []map[string]any {
	out := make([]map[string]any, 0, len(sec))
	for _, v := range sec {
		if o, ok := v.(map[string]any); ok {
			out = append(out, o)
		}
	}
	return out
}

// idNumber is atoi() of a numbered id, saturated.
func idNumber(id string) int {
	n, err := strconv.Atoi(id)
	if err != nil && id != "" {
		return math.MaxInt
	}
	return n
}

// backupOrder mirrors the segment ordering rules of hdr_validate_segments:
// backup segments come after every regular segment, there is a regular one,
// and the first backup id is below the number of segments. It returns the
// first backup id (the number of segments if there is none). cryptsetup
// checks "regular after backup" in JSON order; this checks it in id order,
// which refuses the same headers and also those cryptsetup lets through
// only because of where their members are written.
func backupOrder(infos map[string]segInfo) (int, error) {
	first := -1
	for id, si := range infos {
		if n := idNumber(id); si.backup && (first < 0 || n < first) {
			first = n
		}
	}
	for id, si := range infos {
		if n := idNumber(id); !si.backup && first >= 0 && n >= first {
			return 0, fmt.Errorf("segment %s: a regular segment behind backup segment %d", id, first)
		}
	}
	switch {
	case first == 0:
		return 0, fmt.Errorf("segments: no regular segment")
	case first >= len(infos):
		return 0, fmt.Errorf("segments: gap between the last regular segment and backup segment %d", first)
	case first < 0:
		first = len(infos)
	}
	for i := range len(infos) {
		if _, ok := infos[strconv.Itoa(i)]; !ok {
			return 0, fmt.Errorf("segments: gap at id %d", i)
		}
	}
	return first, nil
}

// segmentIntervals mirrors validate_segment_intervals over the regular
// segments 0..first-1: only the last may be dynamic, none overlap.
func segmentIntervals(infos map[string]segInfo, first int) error {
	for i := range first {
		a := infos[strconv.Itoa(i)]
		if a.size == 0 && i != first-1 {
			return fmt.Errorf("segment %d: only the last regular segment may have a dynamic size", i)
		}
		for j := range first {
			b := infos[strconv.Itoa(j)]
			if i == j {
				continue
			}
			if b.size != 0 && b.offset > math.MaxUint64-b.size {
				return fmt.Errorf("segment %d: offset + size overflows", j)
			}
			if a.offset >= b.offset && (b.size == 0 || a.offset < b.offset+b.size) {
				return fmt.Errorf("segment %d overlaps segment %d", i, j)
			}
		}
	}
	return nil
}

// reencryptSegments mirrors the part of validate_reencrypt_segments this
// package checks: with an online-reencrypt requirement, there is a
// "backup-final" and a "backup-previous" segment among the backup segments.
// (cryptsetup also compares the regular segments with them; not done here.)
func reencryptSegments(top map[string]any, infos map[string]segInfo, first int) error {
	if !onlineReencrypt(top) {
		return nil
	}
	var final, previous bool
	for i := first; i < len(infos); i++ {
		flags := infos[strconv.Itoa(i)].flags
		final = final || slices.Contains(flags, "backup-final")
		previous = previous || slices.Contains(flags, "backup-previous")
	}
	if !final || !previous {
		return fmt.Errorf("segments: an online-reencrypt requirement needs a backup-final and a backup-previous segment")
	}
	return nil
}

// validateKeyslots mirrors hdr_validate_keyslots and LUKS2_keyslot_validate
// (format document section 3.2): each keyslot has a non-empty string "type"
// and a uint32 "key_size".
func validateKeyslots(top map[string]any) error {
	keyslots, err := section(top, "keyslots")
	if err != nil {
		return err
	}
	return forEach(keyslots, "keyslot", func(what, _ string, o map[string]any) error {
		if _, err := strField(o, what, "type"); err != nil {
			return err
		}
		_, err := uint32Field(o, what, "key_size")
		return err
	})
}

// configSizes reads config.json_size and config.keyslots_size as
// hdr_validate_config does (json_str_to_uint64 of non-empty strings).
func configSizes(top map[string]any) (metadataSize, keyslotsSize uint64, err error) {
	cfg, err := section(top, "config")
	if err != nil {
		return 0, 0, err
	}
	js, err := strtoullField(cfg, "config", "json_size")
	if err != nil {
		return 0, 0, err
	}
	ks, err := strtoullField(cfg, "config", "keyslots_size")
	if err != nil {
		return 0, 0, err
	}
	if js > math.MaxUint64-BinHeaderSize || !validHdrSize(js+BinHeaderSize) {
		return 0, 0, fieldErr("config", "json_size", "%d is not one of the allowed sizes", js)
	}
	return js + BinHeaderSize, ks, nil
}

// validateConfig mirrors hdr_validate_config (format document section 3.6):
// json_size gives an allowed metadata size (LUKS2_check_metadata_area_size),
// keyslots_size is a multiple of 4096 up to 128 MiB
// (LUKS2_check_keyslots_area_size) and ends before the first data segment
// (unless that is at 0: a detached header), "flags" is an array of strings.
func validateConfig(top map[string]any) error {
	meta, ks, err := configSizes(top)
	if err != nil {
		return err
	}
	if ks%4096 != 0 || ks > maxKeyslotsSize {
		return fieldErr("config", "keyslots_size", "%d is not a multiple of 4096 up to %d", ks, maxKeyslotsSize)
	}
	// json_segments_get_minimal_offset: the lowest offset of a regular segment.
	minOff := uint64(math.MaxUint64)
	for _, s := range sortedValues(top["segments"].(map[string]any)) {
		si, _ := segmentCommon(s, "")
		if !si.backup {
			minOff = min(minOff, si.offset)
		}
	}
	if minOff != 0 && (minOff < ks || minOff-ks < 2*meta) {
		return fieldErr("config", "keyslots_size", "%d does not fit between the headers (%d bytes) and the data offset %d", ks, 2*meta, minOff)
	}
	_, err = stringArray(top["config"].(map[string]any), "config", "flags")
	return err
}

// validateAreas mirrors hdr_validate_areas and validate_intervals: every
// keyslot has an "area" object with a non-empty "type" and string-uint64
// "offset" and "size"; each area is non-empty, inside the keyslots area
// [2 × metadata size, 2 × metadata size + keyslots_size) and overlaps no
// other (format document section 3.2).
func validateAreas(top map[string]any) error {
	meta, ks, err := configSizes(top)
	if err != nil {
		return err
	}
	type span struct {
		what        string
		offset, len uint64
	}
	var spans []span
	err = forEach(top["keyslots"].(map[string]any), "keyslot", func(what, _ string, o map[string]any) error {
		area, err := objField(o, what, "area")
		if err != nil {
			return err
		}
		what += " area"
		if _, err := strField(area, what, "type"); err != nil {
			return err
		}
		off, err := u64Field(area, what, "offset")
		if err != nil {
			return err
		}
		size, err := u64Field(area, what, "size")
		spans = append(spans, span{what, off, size})
		return err
	})
	if err != nil {
		return err
	}
	end := 2*meta + ks
	for _, a := range spans {
		switch {
		case a.offset < 2*meta:
			return fieldErr(a.what, "offset", "%d is inside the binary headers and JSON areas (%d bytes)", a.offset, 2*meta)
		case a.len == 0:
			return fieldErr(a.what, "size", "is 0")
		case a.offset > math.MaxUint64-a.len:
			return fieldErr(a.what, "size", "%d + offset %d overflows", a.len, a.offset)
		case a.offset+a.len > end:
			return fmt.Errorf("%s: [%d, %d) overflows the keyslots area (ends at %d)", a.what, a.offset, a.offset+a.len, end)
		}
		for _, b := range spans {
			if a != b && a.offset >= b.offset && a.offset < b.offset+b.len {
				return fmt.Errorf("%s overlaps %s", a.what, b.what)
			}
		}
	}
	return nil
}

// validateJSONSize mirrors hdr_validate_json_size: config.json_size is the
// size of the JSON area the binary header gives (hdr_size - 4096).
func validateJSONSize(top map[string]any, jsonSize uint64) error {
	meta, _, err := configSizes(top)
	if err != nil {
		return err
	}
	if meta-BinHeaderSize != jsonSize {
		return fieldErr("config", "json_size", "%d does not match the JSON area of %d bytes the binary header gives", meta-BinHeaderSize, jsonSize)
	}
	return nil
}
