package provision

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
)

// Pre-encrypted volumes (docs/boot.md, "Pre-encrypted state volumes").
//
// Trusted infrastructure can write a whole state volume offline (`confidisk
// image encrypt`: LUKS2 with integrity, every sector sealed, package
// preencrypt). Its provisioning token is the one first boot would have
// written by its step "initialised" (no file system: the boot makes it) or
// "filesystem" (the data holds it), with origin "pre-encrypted" and the same
// MAC under the volume key, so the boot's checks apply unchanged. The
// volume's first boot gets the key from the broker or from a keyslot sealed
// offline to the vTPM, checks the record, and goes on from that step: the
// first freshness epoch, a vTPM keyslot, the fixation digest.

// PreEncryptedOptions describe the provisioning record of a pre-encrypted
// state volume.
type PreEncryptedOptions struct {
	// RW is the read-write mode the volume is made for (default overlay).
	RW RWMode
	// HasFilesystem says that the volume's data holds the state file
	// system (ext4); otherwise first boot makes it.
	HasFilesystem bool
	// RecoveryKeyslot is the keyslot the operator keeps to recover the
	// volume (-1 for none).
	RecoveryKeyslot int
}

// PreEncryptedToken returns the provisioning token of a pre-encrypted
// volume: h is its header as it will be written (tokens aside), sb its
// dm-integrity superblock (nil without integrity) and vk its volume key.
// The caller adds the token to h before writing it.
func PreEncryptedToken(h *luks2.Header, sb *integrity.Superblock, vk []byte, o PreEncryptedOptions) ([]byte, error) {
	rw := o.RW
	if rw == "" {
		rw = RWOverlay
	}
	if !slices.Contains([]RWMode{RWOverlay, RWCopy, RWNone}, rw) {
		return nil, fmt.Errorf("read-write mode %q: want overlay, copy or none", rw)
	}
	if rw == RWCopy && !o.HasFilesystem {
		return nil, errors.New("read-write mode copy needs the data to hold the copied root (the boot cannot copy it into a volume it did not format)")
	}
	// No settings are required yet: first boot records its own, which no
	// later boot may weaken.
	s := &Settings{PCRs: []int{}, TEE: "none"}
	pt := &provisionToken{Type: TokenType, Keyslots: []string{}, Step: StepInitialised,
		RecoveryKeyslot: o.RecoveryKeyslot, RW: rw, Origin: OriginPreEncrypted, Settings: s}
	if o.HasFilesystem {
		pt.Step = StepFilesystem
	}
	if err := authenticate(pt, h, sb, vk); err != nil {
		return nil, err
	}
	pt.Type, pt.Version = TokenType, tokenVersion
	return json.Marshal(pt)
}
