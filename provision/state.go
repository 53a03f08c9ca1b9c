package provision

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/luks2/metamac"
)

// Step is a durable point of first-boot provisioning, recorded in the
// volume's provisioning token after the step's effects are on disk.
type Step string

// The steps, in order. A boot that finds a volume at a step before
// StepSealed starts provisioning over (nothing of value was written yet); at
// StepSealed or later it finishes the remaining steps with the sealed key;
// at StepComplete it only unlocks.
const (
	StepFormatted   Step = "formatted"   // LUKS2 header written (key in memory only)
	StepInitialised Step = "initialised" // dm-integrity superblock and tags initialised
	StepFilesystem  Step = "filesystem"  // file system made (and the root copied, in copy mode)
	StepSealed      Step = "sealed"      // key sealed to the vTPM (systemd-tpm2 token)
	StepFixated     Step = "fixated"     // fixation digest stored in the vTPM
	StepComplete    Step = "complete"    // provisioning done: never reformat
)

var stepOrder = []Step{StepFormatted, StepInitialised, StepFilesystem, StepSealed, StepFixated, StepComplete}

// index is the position of s in the order (-1 if unknown).
func (s Step) index() int {
	for i, x := range stepOrder {
		if x == s {
			return i
		}
	}
	return -1
}

// AtLeast reports whether s is step o or later.
func (s Step) AtLeast(o Step) bool { return s.index() >= o.index() && s.index() >= 0 }

// TokenType is the LUKS2 token type of the provisioning record.
const TokenType = "confidisk-provision"

// provisionToken is the provisioning record kept in the LUKS2 header. It
// holds no secret. From version 2 on it is authenticated: MAC is
// metamac.Sum under the volume key over the token's canonical encoding
// (see [provisionToken.canonical]), which covers the step, the settings the
// volume was provisioned with and the record of its mapping metadata.
type provisionToken struct {
	Type     string   `json:"type"`
	Keyslots []string `json:"keyslots"`
	Version  int      `json:"version"`
	Step     Step     `json:"step"`
	// RecoveryKeyslot is the keyslot of the recovery passphrase, -1 when
	// the volume has none.
	RecoveryKeyslot int `json:"recovery_keyslot"`
	// RW is the read-write mode the volume was provisioned for.
	RW RWMode `json:"rw"`
	// Origin is [OriginPreEncrypted] for a volume written offline
	// (`confidisk image encrypt`), "" for one this boot flow formatted.
	// Such a volume's first boot continues from its step, with the key the
	// broker releases or the vTPM unseals: it is never formatted again.
	Origin string `json:"origin,omitempty"`
	// Clone is the dm-clone layout and progress of a volume in clone mode.
	Clone *cloneRecord `json:"clone,omitempty"`
	// Settings are the security settings the volume was provisioned with
	// (version 2): a later boot may not ask for less.
	Settings *Settings `json:"settings,omitempty"`
	// Metadata is the record of the header's mapping metadata and of the
	// dm-integrity superblock (version 2, package metamac).
	Metadata metamac.Record `json:"metadata,omitempty"`
	// MAC authenticates everything above (version 2).
	MAC []byte `json:"mac,omitempty"`
}

// OriginPreEncrypted is the provisioning token origin of a pre-encrypted
// volume.
const OriginPreEncrypted = "pre-encrypted"

// tokenVersion is the version of the provisioning tokens this code writes.
const tokenVersion = 2

// ErrNotOurs means the state partition holds something confidisk did not
// make: it is never touched then.
var ErrNotOurs = errors.New("the state partition holds data that confidisk did not provision")

// findProvisionToken returns the provisioning token of h and its id.
func findProvisionToken(h *luks2.Header) (*provisionToken, int, error) {
	for id, raw := range h.Metadata.Tokens {
		var th luks2.TokenHeader
		if json.Unmarshal(raw, &th) != nil || th.Type != TokenType {
			continue
		}
		var t provisionToken
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, 0, fmt.Errorf("provisioning token %d: %w", id, err)
		}
		if (t.Version != 1 && t.Version != tokenVersion) || t.Step.index() < 0 {
			return nil, 0, fmt.Errorf("provisioning token %d: unsupported version %d or step %q", id, t.Version, t.Step)
		}
		return &t, id, nil
	}
	return nil, 0, fmt.Errorf("%w: a LUKS2 volume without a %s token", ErrNotOurs, TokenType)
}

// setProvisionToken records step in h (the caller writes the header).
func setProvisionToken(h *luks2.Header, t *provisionToken) error {
	if old, id, err := findProvisionToken(h); err == nil && old != nil {
		if err := h.RemoveToken(id); err != nil {
			return err
		}
	}
	t.Type, t.Version = TokenType, tokenVersion
	if t.Keyslots == nil {
		t.Keyslots = []string{}
	}
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	_, err = h.AddToken(b, -1)
	return err
}
