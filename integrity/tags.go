package integrity

import (
	"errors"
	"fmt"
)

// ErrUnknownIntegrity is wrapped when an integrity algorithm is not one
// cryptsetup knows.
var ErrUnknownIntegrity = errors.New("unknown integrity algorithm")

// NormalizeIntegrity returns the kernel / LUKS2-metadata spelling of an
// integrity algorithm given either as on the cryptsetup command line
// ("hmac-sha256", "cmac-aes", "aead", "poly1305", "none") or already in
// kernel form ("hmac(sha256)"). It mirrors crypt_parse_integrity_mode in
// cryptsetup lib/utils_crypt.c; the LUKS2 segment's integrity.type holds
// the result.
func NormalizeIntegrity(s string) (string, error) {
	switch s {
	case "aead", "poly1305", "none":
		return s, nil
	case "hmac-sha1", "hmac(sha1)":
		return "hmac(sha1)", nil
	case "hmac-sha256", "hmac(sha256)":
		return "hmac(sha256)", nil
	case "hmac-sha512", "hmac(sha512)":
		return "hmac(sha512)", nil
	case "phmac-sha1", "phmac(sha1)":
		return "phmac(sha1)", nil
	case "phmac-sha256", "phmac(sha256)":
		return "phmac(sha256)", nil
	case "phmac-sha512", "phmac(sha512)":
		return "phmac(sha512)", nil
	case "cmac-aes", "cmac(aes)":
		return "cmac(aes)", nil
	}
	return "", fmt.Errorf("%w %q", ErrUnknownIntegrity, s)
}

// TagSize returns the per-sector tag size dm-crypt asks dm-integrity for,
// for cipher (e.g. "aes"), cipher mode with IV generator (e.g.
// "xts-plain64", "gcm-random") and integrity algorithm (either spelling
// accepted by [NormalizeIntegrity]). It mirrors INTEGRITY_tag_size in
// cryptsetup lib/integrity/integrity.c: the random-IV part (xts-random 16,
// gcm-random 12, ccm-random 8, ctr-random 16, aegis256-random 32, other
// *-random and "random" 16, otherwise 0) plus the authentication tag
// (aead 16, cmac(aes) 16, hmac(sha1) 20, hmac(sha256) 32, hmac(sha512) 64,
// the phmac variants alike, poly1305 16 with a 12-byte random IV, none 0).
// For example aes xts-plain64 hmac-sha256 gives 32 and aes gcm-random aead
// gives 28.
//
// Unlike cryptsetup, which yields 0 (and later refuses the format), TagSize
// returns an error for an unknown algorithm or a total of 0.
func TagSize(cipher, cipherMode, integrity string) (int, error) {
	alg, err := NormalizeIntegrity(integrity)
	if err != nil {
		return 0, fmt.Errorf("tag size: %w", err)
	}
	iv := 0
	switch {
	case cipherMode == "xts-random":
		iv = 16
	case cipherMode == "gcm-random":
		iv = 12
	case cipherMode == "ccm-random":
		iv = 8
	case cipherMode == "ctr-random":
		iv = 16
	case cipher == "aegis256" && cipherMode == "random":
		iv = 32
	case cipherMode == "random":
		iv = 16
	}
	auth := 0
	switch alg {
	case "none":
	case "aead", "cmac(aes)", "poly1305":
		auth = 16
	case "hmac(sha1)", "phmac(sha1)":
		auth = 20
	case "hmac(sha256)", "phmac(sha256)":
		auth = 32
	case "hmac(sha512)", "phmac(sha512)":
		auth = 64
	}
	if alg == "poly1305" && iv != 0 {
		iv = 12
	}
	if iv+auth == 0 {
		return 0, fmt.Errorf("tag size: cipher %s-%s with integrity %s needs no tag", cipher, cipherMode, alg)
	}
	return iv + auth, nil
}

// KeySize returns the default size in bytes of the integrity key, the tail
// of the LUKS2 volume key (cryptsetup lib/setup.c: the integrity key is the
// last integrity_key_size bytes of the volume key): hmac(sha1) 20,
// hmac(sha256) 32, hmac(sha512) 64, and 0 for aead, poly1305 and none. It
// mirrors INTEGRITY_key_size with no required size. cmac(aes) and the phmac
// variants have no default there, so KeySize returns an error for them.
func KeySize(integrity string) (int, error) {
	alg, err := NormalizeIntegrity(integrity)
	if err != nil {
		return 0, fmt.Errorf("integrity key size: %w", err)
	}
	switch alg {
	case "aead", "poly1305", "none":
		return 0, nil
	case "hmac(sha1)":
		return 20, nil
	case "hmac(sha256)":
		return 32, nil
	case "hmac(sha512)":
		return 64, nil
	}
	return 0, fmt.Errorf("integrity key size: %s has no default key size in cryptsetup (INTEGRITY_key_size)", alg)
}
