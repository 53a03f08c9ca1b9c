package luks2

import (
	"fmt"
	"slices"
	"strconv"
)

// validateKeyslotTypes mirrors LUKS2_keyslots_validate: the checks of each
// keyslot type cryptsetup knows ("luks2": luks2_keyslot_validate, and each
// such keyslot in exactly one digest; "reencrypt": reenc_keyslot_validate),
// and reencrypt keyslots matching the requirements. Keyslots of other types
// are left alone, as cryptsetup leaves them.
func validateKeyslotTypes(top map[string]any, write bool) error {
	keyslots := top["keyslots"].(map[string]any)
	digests := sortedValues(top["digests"].(map[string]any))
	reencrypt := 0
	err := forEach(keyslots, "keyslot", func(what, id string, o map[string]any) error {
		switch o["type"] {
		case "luks2":
			if err := luks2Keyslot(o, what, write); err != nil {
				return err
			}
			// LUKS2_get_keyslot_digests_count looks the keyslot up by atoi(id).
			name := strconv.Itoa(idNumber(id))
			if n := countFunc(digests, func(d map[string]any) bool { return slices.Contains(d["keyslots"].([]any), any(name)) }); n != 1 {
				return fmt.Errorf("%s: referenced by %d digests, want exactly 1", what, n)
			}
		case "reencrypt":
			reencrypt++
			return reencryptKeyslot(o, what)
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case onlineReencrypt(top) && reencrypt == 0:
		return fmt.Errorf("keyslots: an online-reencrypt requirement needs a reencrypt keyslot")
	case reencrypt > 0 && !hasReencryptCandidate(top):
		return fmt.Errorf("keyslots: a reencrypt keyslot needs an online-reencrypt requirement")
	case reencrypt > 1:
		return fmt.Errorf("keyslots: %d reencrypt keyslots, at most 1", reencrypt)
	}
	return nil
}

// hasReencryptCandidate mirrors LUKS2_reencrypt_requirement_candidate.
func hasReencryptCandidate(top map[string]any) bool {
	req, _ := top["config"].(map[string]any)["requirements"].(map[string]any)
	mandatory, _ := req["mandatory"].([]any)
	return slices.ContainsFunc(mandatory, func(f any) bool { s, _ := f.(string); return reencryptCandidate(s) })
}

func countFunc[T any](s []T, f func(T) bool) int {
	n := 0
	for _, v := range s {
		if f(v) {
			n++
		}
	}
	return n
}

// kdfFields are the members of each KDF type cryptsetup validates
// (luks2_keyslot_validate), besides "type"; integer ones are marked.
var kdfFields = map[string][]struct {
	name    string
	integer bool
}{
	"pbkdf2":   {{"hash", false}, {"iterations", true}, {"salt", false}},
	"argon2i":  {{"time", true}, {"memory", true}, {"cpus", true}, {"salt", false}},
	"argon2id": {{"time", true}, {"memory", true}, {"cpus", true}, {"salt", false}},
}

// luks2Keyslot mirrors luks2_keyslot_validate (format document section 3.2):
// "kdf", "af" and "area" objects; the kdf's fields by its type; af type
// "luks1" with "hash" and integer "stripes"; area type "raw" with
// "encryption", integer "key_size", "offset" and "size". A pbkdf2 or argon2
// kdf with other members is refused before a write; on read cryptsetup
// drops them (luks2_keyslot_repair), and so does ParseMetadata.
func luks2Keyslot(o map[string]any, what string, write bool) error {
	kdf, err := objField(o, what, "kdf")
	if err != nil {
		return err
	}
	af, err := objField(o, what, "af")
	if err != nil {
		return err
	}
	area, err := objField(o, what, "area")
	if err != nil {
		return err
	}
	typ, err := strField(kdf, what+" kdf", "type")
	if err != nil {
		return err
	}
	if fields, ok := kdfFields[typ]; ok {
		if write && len(kdf) != len(fields)+1 {
			return fmt.Errorf("%s kdf: %s takes exactly %d fields, has %d", what, typ, len(fields)+1, len(kdf))
		}
		for _, f := range fields {
			if err := fieldOfKind(kdf, what+" kdf", f.name, f.integer); err != nil {
				return err
			}
		}
	}
	if af["type"] != "luks1" {
		return fieldErr(what+" af", "type", "is %v, want \"luks1\"", af["type"])
	}
	if err := fieldOfKind(af, what+" af", "hash", false); err != nil {
		return err
	}
	if err := fieldOfKind(af, what+" af", "stripes", true); err != nil {
		return err
	}
	if area["type"] != "raw" {
		return fieldErr(what+" area", "type", "is %v, want \"raw\"", area["type"])
	}
	for _, f := range []string{"encryption", "key_size", "offset", "size"} {
		if err := fieldOfKind(area, what+" area", f, f == "key_size"); err != nil {
			return err
		}
	}
	return nil
}

// fieldOfKind checks an integer or non-empty string field.
func fieldOfKind(o map[string]any, what, key string, integer bool) error {
	if integer {
		_, err := intField(o, what, key)
		return err
	}
	_, err := strField(o, what, key)
	return err
}

// reencryptKeyslot mirrors reenc_keyslot_validate: "key_size" 1, "mode"
// reencrypt/encrypt/decrypt, "direction" forward/backward; checksum areas
// have "hash" and a power-of-two "sector_size" ≥ 512, datashift areas a
// non-zero "shift_size" that is a multiple of 512.
func reencryptKeyslot(o map[string]any, what string) error {
	area, err := objField(o, what, "area")
	if err != nil {
		return err
	}
	if ks, err := uint32Field(o, what, "key_size"); err != nil || ks != 1 {
		return fieldErr(what, "key_size", "must be 1 in a reencrypt keyslot")
	}
	mode, err := strField(o, what, "mode")
	if err != nil {
		return err
	}
	dir, err := strField(o, what, "direction")
	if err != nil {
		return err
	}
	if !slices.Contains([]string{"reencrypt", "encrypt", "decrypt"}, mode) {
		return fieldErr(what, "mode", "is %q", mode)
	}
	if dir != "forward" && dir != "backward" {
		return fieldErr(what, "direction", "is %q", dir)
	}
	what += " area"
	switch area["type"] {
	case "checksum", "datashift-checksum":
		if _, err := strField(area, what, "hash"); err != nil {
			return err
		}
		ss, err := uint32Field(area, what, "sector_size")
		if err != nil {
			return err
		}
		if ss < 512 || ss&(ss-1) != 0 {
			return fieldErr(what, "sector_size", "%d is not a power of two ≥ 512", ss)
		}
	}
	switch area["type"] {
	case "datashift", "datashift-checksum", "datashift-journal":
		shift, err := strtoullField(area, what, "shift_size")
		if err != nil || shift == 0 || shift%512 != 0 {
			return fieldErr(what, "shift_size", "is not a non-zero multiple of 512")
		}
	}
	return nil
}
