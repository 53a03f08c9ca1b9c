// Package enroll keeps TPM-sealed keys in LUKS2 volumes the way
// systemd-cryptenroll does: a keyslot whose passphrase is a secret the vTPM
// seals, described by a systemd-tpm2 token (package tpm has the sealing and
// the token's fields; this package writes them into a header and opens a
// volume with them). cryptsetup keeps its systemd-tpm2 token plugin outside
// its format library for the same reason: the TPM code need not know LUKS2.
package enroll

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/tpm"
)

// Volume is what enrollment reads and writes: a LUKS2 device or image
// (Sync lets the header write make each copy durable).
type Volume interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// EnrollOptions tune [Enroll].
type EnrollOptions struct {
	tpm.SealOptions
	// SaltPIN salts the PIN with 32 random bytes (tpm2_salt), as systemd ≥
	// 254 does; off, the token also unlocks with systemd 252/253.
	SaltPIN bool
	// Keyslot for the new passphrase (-1: the lowest free one).
	Keyslot int
	// TokenID for the token (-1: the lowest free one).
	TokenID int
}

// minimalKDF is the keyslot KDF systemd uses for high-entropy TPM
// passphrases (cryptsetup-util.c cryptsetup_set_minimal_pbkdf): PBKDF2
// with SHA-512 and 1000 iterations.
var minimalKDF = luks2.KDF{Type: "pbkdf2", Hash: "sha512", Iterations: 1000}

// Enroll does what systemd-cryptenroll --tpm2-device does
// (cryptenroll-tpm2.c enroll_tpm2): it seals 32 random bytes, adds a
// keyslot for vk whose passphrase is their base64 with the minimal KDF,
// adds the systemd-tpm2 token and writes the header. It returns the
// keyslot and token id.
func Enroll(t transport.TPM, vol Volume, h *luks2.Header, vk []byte, o EnrollOptions) (keyslot, tokenID int, err error) {
	if keyslot, tokenID, err = AddEnrollment(t, vol, h, vk, o); err != nil {
		return -1, -1, err
	}
	if err := h.Write(vol); err != nil {
		return -1, -1, fmt.Errorf("enroll: write header: %w", err)
	}
	return keyslot, tokenID, nil
}

// AddEnrollment is [Enroll] without the header write: the keyslot area is
// written to vol and h gains the keyslot and the token; the caller writes
// the header (with whatever else must change in the same write).
func AddEnrollment(t transport.TPM, vol Volume, h *luks2.Header, vk []byte, o EnrollOptions) (keyslot, tokenID int, err error) {
	return addEnrollment(vol, h, vk, o, func(secret []byte, so tpm.SealOptions) (*tpm.Sealed, error) {
		return tpm.Seal(t, secret, so)
	})
}

// AddOfflineEnrollment is [AddEnrollment] without the TPM, as
// systemd-repart --tpm2-device-key= enrolls (repart.c, with tpm2-util.c
// tpm2_calculate_seal): the secret is sealed with [tpm.SealOffline] to the
// vTPM whose storage root key srk is (from [tpm.ParseSRKPublic]), so that
// this vTPM and no other unseals it. Every PCR in o.PCRs needs its value in
// o.PCRValues. The token carries the seed in tpm2-blob and the SRK in
// tpm2_srk, so [UnlockWithToken] (and systemd ≥ 255) open the volume on
// that vTPM; on another one they fail with tpm.ErrSRKMismatch.
func AddOfflineEnrollment(vol Volume, h *luks2.Header, vk []byte, srk *tpm2.TPMTPublic, o EnrollOptions) (keyslot, tokenID int, err error) {
	return addEnrollment(vol, h, vk, o, func(secret []byte, so tpm.SealOptions) (*tpm.Sealed, error) {
		return tpm.SealOffline(srk, secret, so)
	})
}

// addEnrollment seals 32 random bytes with seal and adds the keyslot whose
// passphrase is their base64 and the systemd-tpm2 token describing them.
func addEnrollment(vol Volume, h *luks2.Header, vk []byte, o EnrollOptions, seal func([]byte, tpm.SealOptions) (*tpm.Sealed, error)) (keyslot, tokenID int, err error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return -1, -1, err
	}
	so := o.SealOptions
	if so.PIN != nil && o.SaltPIN {
		if so.PINSalt, err = usableSalt(so.PIN); err != nil {
			return -1, -1, err
		}
	}
	s, err := seal(secret, so)
	if err != nil {
		return -1, -1, fmt.Errorf("enroll: %w", err)
	}
	pass := []byte(base64.StdEncoding.EncodeToString(secret))
	keyslot, err = h.AddKeyslot(vol, vk, pass, o.Keyslot, minimalKDF)
	if err != nil {
		return -1, -1, fmt.Errorf("enroll: add keyslot: %w", err)
	}
	tj, err := tpm.NewToken(s, keyslot).Marshal()
	if err != nil {
		return -1, -1, fmt.Errorf("enroll: %w", err)
	}
	if tokenID, err = h.AddToken(tj, o.TokenID); err != nil {
		return -1, -1, fmt.Errorf("enroll: add token: %w", err)
	}
	return keyslot, tokenID, nil
}

// usableSalt draws PIN salts until the PIN's authValue avoids go-tpm's
// zero-byte bug (see tpm.ErrPINUnusable); any salt is as good to systemd.
func usableSalt(pin []byte) ([]byte, error) {
	for {
		salt := make([]byte, 32)
		if _, err := rand.Read(salt); err != nil {
			return nil, err
		}
		if tpm.PINAuthUsable(pin, salt) {
			return salt, nil
		}
	}
}

// TokenIDs lists the ids of h's systemd-tpm2 tokens in increasing order.
func TokenIDs(h *luks2.Header) []int {
	var ids []int
	for id, raw := range h.Metadata.Tokens {
		var th luks2.TokenHeader
		if json.Unmarshal(raw, &th) == nil && th.Type == tpm.TokenType {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// ErrNoToken is returned by [UnlockWithToken] when the volume has no
// systemd-tpm2 token.
var ErrNoToken = errors.New("no systemd-tpm2 token")

// UnlockWithToken opens a volume with its systemd-tpm2 token (tokenID, or
// each such token in id order when tokenID < 0), as the token plugin
// does: unseal, then use base64(secret) as the keyslot's passphrase. It
// returns the volume key and the keyslot. The error of the last token
// tried is returned, so PCR, PIN and SRK errors stay distinguishable.
func UnlockWithToken(t transport.TPM, vol io.ReaderAt, h *luks2.Header, tokenID int, o tpm.UnsealOptions) ([]byte, int, error) {
	ids := TokenIDs(h)
	if tokenID >= 0 {
		ids = slices.DeleteFunc(ids, func(id int) bool { return id != tokenID })
	}
	if len(ids) == 0 {
		if tokenID >= 0 {
			return nil, -1, fmt.Errorf("token %d: %w", tokenID, ErrNoToken)
		}
		return nil, -1, ErrNoToken
	}
	var last error
	for _, id := range ids {
		tk, err := tpm.ParseToken(h.Metadata.Tokens[id])
		if err != nil {
			last = fmt.Errorf("token %d: %w", id, err)
			continue
		}
		s, err := tk.Sealed()
		if err != nil {
			last = fmt.Errorf("token %d: %w", id, err)
			continue
		}
		secret, err := tpm.Unseal(t, s, o)
		if err != nil {
			last = fmt.Errorf("token %d: %w", id, err)
			continue
		}
		pass := []byte(base64.StdEncoding.EncodeToString(secret))
		vk, slot, err := h.Unlock(vol, pass, tk.Keyslot)
		if err != nil {
			last = fmt.Errorf("token %d: keyslot %d: %w", id, tk.Keyslot, err)
			continue
		}
		return vk, slot, nil
	}
	return nil, -1, last
}
