package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/luks2/metamac"
)

// Authenticated metadata (docs/boot.md, "What the host can rewrite").
//
// LUKS2 metadata is not authenticated, and the host owns the disk. So
// provisioning keeps, in its token, a record of everything that decides how
// the state volume is mapped (package metamac: segments, digests, config,
// UUID, the dm-integrity superblock), the step, and the security settings
// the volume was provisioned with, all under a MAC keyed from the volume
// key. Every boot checks, in this order and before anything is written or
// mapped: the floor (no key needed), then, once unlocked, the MAC, the
// record against the header and the superblock on disk, and the settings
// against the boot's configuration.

// Errors of the metadata checks; each wraps the details.
var (
	// ErrBelowFloor: the header asks for something no confidisk volume
	// uses (a null or ECB cipher, no integrity, another cipher or key size
	// than the boot's configuration).
	ErrBelowFloor = errors.New("the state volume's header is below the security floor")
	// ErrMetadataTampered: the provisioning record's MAC does not verify.
	ErrMetadataTampered = errors.New("the state volume's provisioning record was altered (its MAC does not verify under the volume key)")
	// ErrUnauthenticated: a provisioned volume without a MAC (made by a
	// confidisk before version 2 of the record, or stripped by the host).
	ErrUnauthenticated = errors.New("the state volume carries no authenticated metadata")
	// ErrDowngrade: the boot's configuration asks for less than the volume
	// was provisioned with.
	ErrDowngrade = errors.New("the boot configuration is weaker than the one the state volume was provisioned with")
	// ErrRewound: the provisioning token says provisioning never sealed a
	// key, but this vTPM or the header says it did.
	ErrRewound = errors.New("the state volume's provisioning record was set back")
)

// Settings are the security settings a volume was provisioned with. A later
// boot may add to them (a broker joins, a TEE report appears) but not take
// anything away.
type Settings struct {
	// Anchor is the roll-back anchor mode: "tpm", "broker" or "tpm+broker".
	Anchor string `json:"anchor"`
	// Broker is the broker URL and BrokerCA the SHA-256 (hex) of the DER
	// certificates of the broker CA file, in file order.
	Broker   string `json:"broker,omitempty"`
	BrokerCA string `json:"broker_ca_sha256,omitempty"`
	// PCRs are the sealing PCRs (besides PCR 15).
	PCRs []int `json:"pcrs"`
	// TEE is the hardware report evidence carries: "none", "sev-snp", "tdx".
	TEE string `json:"tee"`
}

func anchorName(useTPM, useBroker bool) string {
	switch {
	case useTPM && useBroker:
		return "tpm+broker"
	case useBroker:
		return "broker"
	}
	return "tpm"
}

// settingsOf returns the settings cfg asks for, with tee the resolved TEE
// mode.
func settingsOf(cfg *Config, tee string) (*Settings, error) {
	s := &Settings{Anchor: anchorName(cfg.Anchors()), PCRs: slices.Clone(cfg.PCRs), TEE: tee}
	if s.PCRs == nil {
		s.PCRs = []int{}
	}
	if cfg.Broker != "" {
		fp, err := caFingerprint(cfg.BrokerCA)
		if err != nil {
			return nil, err
		}
		s.Broker, s.BrokerCA = cfg.Broker, fp
	}
	return s, nil
}

// caFingerprint is the SHA-256 of the DER certificates in a PEM file.
func caFingerprint(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("broker CA: %w", err)
	}
	h := sha256.New()
	n := 0
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if blk.Type == "CERTIFICATE" {
			h.Write(blk.Bytes)
			n++
		}
	}
	if n == 0 {
		return "", fmt.Errorf("broker CA %s holds no PEM certificate", path)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (s *Settings) has(anchor string) bool { return strings.Contains(s.Anchor, anchor) }

// checkSettings refuses a boot whose settings (now) ask for less than the
// provisioned ones (prov), and returns the settings to record: prov with
// what now adds.
func checkSettings(prov, now *Settings) (*Settings, error) {
	down := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s; change it from a booted system with `confidisk state reconfigure`", ErrDowngrade, fmt.Sprintf(format, args...))
	}
	for _, a := range []string{"tpm", "broker"} {
		if prov.has(a) && !now.has(a) {
			return nil, down("the volume was provisioned with roll-back anchor %s, this boot asks for %s", prov.Anchor, now.Anchor)
		}
	}
	if prov.Broker != "" && (now.Broker != prov.Broker || now.BrokerCA != prov.BrokerCA) {
		return nil, down("the volume was provisioned with broker %s (CA %.16s…), this boot names %q (CA %.16s…)", prov.Broker, prov.BrokerCA, now.Broker, now.BrokerCA)
	}
	for _, p := range prov.PCRs {
		if !slices.Contains(now.PCRs, p) {
			return nil, down("the volume was sealed to PCRs %v, this boot asks for %v", prov.PCRs, now.PCRs)
		}
	}
	if prov.TEE != "none" && now.TEE != prov.TEE {
		return nil, down("the volume was provisioned with TEE evidence %s, this boot has %s", prov.TEE, now.TEE)
	}
	out := *prov
	out.PCRs = slices.Clone(prov.PCRs)
	out.Anchor = anchorName(prov.has("tpm") || now.has("tpm"), prov.has("broker") || now.has("broker"))
	if out.Broker == "" {
		out.Broker, out.BrokerCA = now.Broker, now.BrokerCA
	}
	if out.TEE == "none" {
		out.TEE = now.TEE
	}
	return &out, nil
}

// canonical is the MAC input of a token: "confidisk-provision v2\n" and the
// token's JSON as encoding/json writes it (fields in declaration order,
// record keys sorted, no spaces) without the mac field.
func (pt *provisionToken) canonical() ([]byte, error) {
	c := *pt
	c.Type, c.Version, c.MAC = TokenType, tokenVersion, nil
	c.Keyslots = []string{}
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	return append([]byte("confidisk-provision v2\n"), b...), nil
}

// authenticate records h (and sb, the dm-integrity superblock, nil before it
// exists) in pt and sets its MAC under vk. The caller writes the header.
func authenticate(pt *provisionToken, h *luks2.Header, sb *integrity.Superblock, vk []byte) error {
	pt.Version = tokenVersion
	pt.Metadata = metamac.Describe(h, sb)
	msg, err := pt.canonical()
	if err != nil {
		return err
	}
	pt.MAC, err = metamac.Sum(vk, msg)
	return err
}

// verifyMetadata checks pt's MAC under vk, then its record against h, and
// then against the dm-integrity superblock readSB reads (at the segment
// offset just verified; nil readSB for a volume without integrity).
func verifyMetadata(pt *provisionToken, h *luks2.Header, readSB func() (*integrity.Superblock, error), vk []byte) error {
	if pt.Version < tokenVersion {
		return fmt.Errorf("%w: its provisioning record is version %d (from a confidisk before authenticated metadata); "+
			"authenticate it from a rescue system with `confidisk state reconfigure DEVICE --key-file RECOVERY`", ErrUnauthenticated, pt.Version)
	}
	if len(pt.MAC) == 0 || pt.Settings == nil || pt.Metadata == nil {
		return fmt.Errorf("%w: the MAC, settings or metadata record is missing", ErrMetadataTampered)
	}
	msg, err := pt.canonical()
	if err != nil {
		return err
	}
	ok, err := metamac.Verify(vk, msg, pt.MAC)
	if err != nil {
		return err
	}
	if !ok {
		return ErrMetadataTampered
	}
	if err := metamac.Compare(pt.Metadata.WithoutIntegrity(), metamac.Describe(h, nil)); err != nil {
		return err
	}
	if !pt.Metadata.HasIntegrity() {
		return nil
	}
	if readSB == nil {
		return fmt.Errorf("%w: the volume was provisioned with a dm-integrity superblock, none was read", metamac.ErrChanged)
	}
	sb, err := readSB()
	if err != nil {
		return fmt.Errorf("%w: %w", metamac.ErrChanged, err)
	}
	return metamac.Compare(pt.Metadata, metamac.Describe(h, sb))
}

// checkFloor refuses a header that no confidisk boot configuration makes,
// before any key is used: only segment 0, a crypt segment with the cipher,
// integrity and key size the configuration asks for, and no keyslot area
// with a null or ECB cipher. It needs no MAC, so it also holds for volumes
// made before authenticated metadata.
func checkFloor(h *luks2.Header, cfg *Config) error {
	floor := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBelowFloor, fmt.Sprintf(format, args...))
	}
	enc, integ, vkSize, err := (&luks2.FormatOptions{Integrity: cfg.Integrity, Cipher: cipherFor(cfg.Integrity)}).SegmentSpec()
	if err != nil {
		return err
	}
	m := h.Metadata
	seg := m.Segments[0]
	switch {
	case len(m.Segments) != 1 || seg == nil:
		return floor("want exactly one segment (segment 0), found %d", len(m.Segments))
	case seg.Type != "crypt":
		return floor("segment 0 is of type %q, not crypt", seg.Type)
	case weakCipher(seg.Encryption):
		return floor("segment 0 encryption is %q", seg.Encryption)
	case seg.Integrity == nil || seg.Integrity.Type == "none":
		return floor("segment 0 has no integrity protection (provisioned volumes use %s)", integ.Type)
	case seg.Encryption != enc || seg.Integrity.Type != integ.Type:
		return floor("segment 0 is %s with %s, the boot configuration says %s with %s", seg.Encryption, seg.Integrity.Type, enc, integ.Type)
	case seg.IVTweak != 0:
		// Only a reencryption in progress uses it (cryptsetup ignores it
		// when it activates one segment); confidisk volumes never do.
		return floor("segment 0 iv_tweak is %d, not 0", seg.IVTweak)
	}
	for id, k := range m.Keyslots {
		if k.Raw != nil {
			return floor("keyslot %d is of type %q", id, k.Type)
		}
		if weakCipher(k.Area.Encryption) {
			return floor("keyslot %d area encryption is %q", id, k.Area.Encryption)
		}
		if k.KeySize != vkSize {
			return floor("keyslot %d holds a %d-byte key, the configuration's volume key has %d", id, k.KeySize, vkSize)
		}
	}
	return nil
}

// weakCipher reports a null cipher or an ECB mode (cryptsetup's
// crypt_is_cipher_null, and ECB, which has no IV: equal plaintext sectors
// give equal ciphertext).
func weakCipher(spec string) bool {
	s := strings.ToLower(spec)
	return strings.HasPrefix(s, "cipher_null") || strings.Contains(s, "null") || strings.Contains(s, "-ecb") ||
		strings.Contains(s, "ecb(") || s == ""
}
