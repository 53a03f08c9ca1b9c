package tpm

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
)

// TokenType is the LUKS2 token type of systemd's TPM2 enrollment.
const TokenType = "systemd-tpm2"

// Token is a systemd-tpm2 LUKS2 token, field for field as
// tpm2_make_luks2_json (src/shared/tpm2-util.c) writes it. Legacy field
// names use '-', newer ones '_'.
type Token struct {
	// Keyslot is the LUKS2 keyslot whose passphrase is base64(secret).
	Keyslot int
	// Blob is tpm2-blob: TPM2B_PRIVATE ‖ TPM2B_PUBLIC of the sealed object,
	// followed by the TPM2B_ENCRYPTED_SECRET seed of an offline seal
	// ([SealOffline], systemd-repart --tpm2-device-key=).
	Blob []byte
	// PCRs is tpm2-pcrs: the literal-value PCRs (may be empty).
	PCRs []int
	// Bank is tpm2-pcr-bank ("" when absent: systemd < 250, sha256).
	Bank Bank
	// PrimaryAlg is tpm2-primary-alg, "ecc" for tokens sealed under
	// systemd's legacy transient primary; "" when absent.
	PrimaryAlg string
	// PolicyHash is tpm2-policy-hash, the sealed object's policy digest.
	PolicyHash []byte
	// PIN is tpm2-pin.
	PIN bool
	// PubkeyPCRs and Pubkey (PEM) are tpm2_pubkey_pcrs and tpm2_pubkey, the
	// signed PCR policy.
	PubkeyPCRs []int
	Pubkey     []byte
	// Salt is tpm2_salt, the PIN salt.
	Salt []byte
	// SRK is tpm2_srk, the serialized parent ([SRK.Serialize]).
	SRK []byte
}

// tokenJSON is the wire form, in systemd's field order.
type tokenJSON struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Blob       string   `json:"tpm2-blob"`
	PCRs       []int    `json:"tpm2-pcrs"`
	Bank       string   `json:"tpm2-pcr-bank,omitempty"`
	PrimaryAlg string   `json:"tpm2-primary-alg,omitempty"`
	PolicyHash string   `json:"tpm2-policy-hash"`
	PIN        bool     `json:"tpm2-pin"`
	PubkeyPCRs []int    `json:"tpm2_pubkey_pcrs,omitempty"`
	Pubkey     string   `json:"tpm2_pubkey,omitempty"`
	Salt       string   `json:"tpm2_salt,omitempty"`
	SRK        string   `json:"tpm2_srk,omitempty"`
}

// Marshal renders the token JSON.
func (tk *Token) Marshal() ([]byte, error) {
	pcrs := sortedPCRs(tk.PCRs)
	if pcrs == nil {
		pcrs = []int{}
	}
	j := tokenJSON{
		Type: TokenType, Keyslots: []string{strconv.Itoa(tk.Keyslot)},
		Blob: base64.StdEncoding.EncodeToString(tk.Blob), PCRs: pcrs,
		Bank: string(tk.Bank), PrimaryAlg: tk.PrimaryAlg,
		PolicyHash: hex.EncodeToString(tk.PolicyHash), PIN: tk.PIN,
		PubkeyPCRs: sortedPCRs(tk.PubkeyPCRs),
	}
	if tk.Pubkey != nil {
		j.Pubkey = base64.StdEncoding.EncodeToString(tk.Pubkey)
	}
	if tk.Salt != nil {
		j.Salt = base64.StdEncoding.EncodeToString(tk.Salt)
	}
	if tk.SRK != nil {
		j.SRK = base64.StdEncoding.EncodeToString(tk.SRK)
	}
	return json.Marshal(j)
}

// ParseToken reads a systemd-tpm2 token as tpm2_parse_luks2_json does and
// refuses what this package cannot unseal: an RSA legacy primary, blob
// shards or several policy hashes (systemd-repart ≥ 256), pcrlock
// policies, unknown banks.
func ParseToken(b []byte) (*Token, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: token is not a json object: %v", ErrBadBlob, err)
	}
	str := func(key string, dst *string) error {
		v, ok := m[key]
		if !ok {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("%w: token field %q is not a string", ErrBadBlob, key)
		}
		return nil
	}
	pcrList := func(key string) ([]int, error) {
		v, ok := m[key]
		if !ok {
			return nil, nil
		}
		var l []int
		if err := json.Unmarshal(v, &l); err != nil {
			return nil, fmt.Errorf("%w: token field %q is not an array of pcr numbers", ErrBadBlob, key)
		}
		if err := checkPCRs(l); err != nil {
			return nil, fmt.Errorf("%w: token field %q: %v", ErrBadBlob, key, err)
		}
		return sortedPCRs(l), nil
	}
	var typ string
	if err := str("type", &typ); err != nil {
		return nil, err
	}
	if typ != TokenType {
		return nil, fmt.Errorf("%w: token type %q is not %q", ErrBadBlob, typ, TokenType)
	}
	var slots []string
	if err := json.Unmarshal(m["keyslots"], &slots); err != nil || len(slots) != 1 {
		return nil, fmt.Errorf("%w: token must name exactly one keyslot", ErrBadBlob)
	}
	tk := &Token{}
	ks, err := strconv.Atoi(slots[0])
	if err != nil || ks < 0 || ks >= maxKeyslots {
		return nil, fmt.Errorf("%w: token keyslot %q is not a keyslot number", ErrBadBlob, slots[0])
	}
	tk.Keyslot = ks
	if _, ok := m["tpm2-pcrs"]; !ok {
		return nil, fmt.Errorf("%w: token lacks tpm2-pcrs", ErrBadBlob)
	}
	if tk.PCRs, err = pcrList("tpm2-pcrs"); err != nil {
		return nil, err
	}
	var bank string
	if err := str("tpm2-pcr-bank", &bank); err != nil {
		return nil, err
	}
	if bank != "" {
		if tk.Bank, err = ParseBank(bank); err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
	}
	if err := str("tpm2-primary-alg", &tk.PrimaryAlg); err != nil {
		return nil, err
	}
	switch tk.PrimaryAlg {
	case "", "ecc":
	case "rsa":
		return nil, fmt.Errorf("%w: token sealed under systemd's legacy rsa primary (only ecc is implemented)", ErrUnsupported)
	default:
		return nil, fmt.Errorf("%w: tpm2-primary-alg %q", ErrUnsupported, tk.PrimaryAlg)
	}
	if v, ok := m["tpm2-blob"]; !ok {
		return nil, fmt.Errorf("%w: token lacks tpm2-blob", ErrBadBlob)
	} else if bytes.HasPrefix(bytes.TrimSpace(v), []byte("[")) {
		return nil, fmt.Errorf("%w: tpm2-blob with several shards (systemd-repart) is not implemented", ErrUnsupported)
	}
	var s string
	if err := str("tpm2-blob", &s); err != nil {
		return nil, err
	}
	if tk.Blob, err = base64.StdEncoding.DecodeString(s); err != nil {
		return nil, fmt.Errorf("%w: tpm2-blob is not base64: %v", ErrBadBlob, err)
	}
	if _, _, _, err := SplitBlob(tk.Blob); err != nil {
		return nil, fmt.Errorf("token tpm2-blob: %w", err)
	}
	if v, ok := m["tpm2-policy-hash"]; !ok {
		return nil, fmt.Errorf("%w: token lacks tpm2-policy-hash", ErrBadBlob)
	} else if bytes.HasPrefix(bytes.TrimSpace(v), []byte("[")) {
		return nil, fmt.Errorf("%w: several tpm2-policy-hash values (systemd-repart shards) are not implemented", ErrUnsupported)
	}
	s = ""
	if err := str("tpm2-policy-hash", &s); err != nil {
		return nil, err
	}
	if tk.PolicyHash, err = hex.DecodeString(s); err != nil || len(tk.PolicyHash) != 32 {
		return nil, fmt.Errorf("%w: tpm2-policy-hash is not 32 bytes of hex", ErrBadBlob)
	}
	for _, key := range []string{"tpm2-pin", "tpm2_pcrlock"} {
		v, ok := m[key]
		if !ok {
			continue
		}
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return nil, fmt.Errorf("%w: token field %q is not a boolean", ErrBadBlob, key)
		}
		if key == "tpm2-pin" {
			tk.PIN = b
		} else if b {
			return nil, fmt.Errorf("%w: pcrlock policies (tpm2_pcrlock) are not implemented", ErrUnsupported)
		}
	}
	if tk.PubkeyPCRs, err = pcrList("tpm2_pubkey_pcrs"); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		key string
		dst *[]byte
	}{{"tpm2_pubkey", &tk.Pubkey}, {"tpm2_salt", &tk.Salt}, {"tpm2_srk", &tk.SRK}} {
		s = ""
		if err := str(f.key, &s); err != nil {
			return nil, err
		}
		if _, ok := m[f.key]; !ok {
			continue
		}
		if *f.dst, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, fmt.Errorf("%w: token field %q is not base64: %v", ErrBadBlob, f.key, err)
		}
	}
	if len(tk.PubkeyPCRs) > 0 && tk.Pubkey == nil {
		return nil, fmt.Errorf("%w: token has tpm2_pubkey_pcrs but no tpm2_pubkey", ErrBadBlob)
	}
	if tk.SRK != nil {
		if _, _, _, err := ParseSerializedSRK(tk.SRK); err != nil {
			return nil, fmt.Errorf("token tpm2_srk: %w", err)
		}
	}
	return tk, nil
}

// Sealed converts the token into the unseal parameters. A token without
// tpm2_srk was sealed under systemd's legacy transient primary.
func (tk *Token) Sealed() (*Sealed, error) {
	priv, pub, seed, err := SplitBlob(tk.Blob)
	if err != nil {
		return nil, err
	}
	bank := tk.Bank
	if bank == "" {
		bank = SHA256
	}
	s := &Sealed{Private: priv, Public: pub, Seed: seed, Bank: bank, PCRs: tk.PCRs, PolicyDigest: tk.PolicyHash,
		PIN: tk.PIN, PINSalt: tk.Salt, SRK: tk.SRK, Legacy: tk.SRK == nil}
	if len(tk.PubkeyPCRs) > 0 {
		s.PolicyKeyPEM, s.PolicyKeyPCRs = tk.Pubkey, tk.PubkeyPCRs
	}
	return s, nil
}

// NewToken makes the token for a sealed secret enrolled in keyslot. Like
// systemd ≥ 255, tpm2-primary-alg is written only for a legacy parent.
func NewToken(s *Sealed, keyslot int) *Token {
	tk := &Token{Keyslot: keyslot, Blob: s.Blob(), PCRs: s.PCRs, Bank: s.Bank, PolicyHash: s.PolicyDigest,
		PIN: s.PIN, PubkeyPCRs: s.PolicyKeyPCRs, Pubkey: s.PolicyKeyPEM, SRK: s.SRK}
	if s.PIN {
		tk.Salt = s.PINSalt
	}
	if s.Legacy {
		tk.PrimaryAlg = "ecc"
	}
	return tk
}

// maxKeyslots is the number of keyslots a LUKS2 header holds (LUKS2 on-disk
// format, section 3.2; cryptsetup's LUKS2_KEYSLOTS_MAX).
const maxKeyslots = 32

// PINAuthUsable reports whether the authValue of pin with salt avoids the
// interior zero byte go-tpm truncates at (see [ErrPINUnusable]); enrolment
// draws salts until it does.
func PINAuthUsable(pin, salt []byte) bool { return !authHasInteriorZero(PINAuth(pin, salt)) }
