package provision

import (
	"fmt"
	"slices"

	"github.com/confidisk/confidisk/activate"
	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
)

// Authenticated reports whether h carries authenticated metadata (a
// version 2 provisioning token). Commands that change such a header must
// verify it first ([VerifyMetadata]) and recompute its MAC in the same
// write ([Reauthenticate]), or the next boot refuses the volume.
func Authenticated(h *luks2.Header) bool {
	pt, _, err := findProvisionToken(h)
	return err == nil && pt.Version >= tokenVersion && len(pt.MAC) > 0
}

// superblockOf reads the dm-integrity superblock of a volume with integrity
// (nil without).
func superblockOf(devPath string, h *luks2.Header) (*integrity.Superblock, error) {
	if seg := h.Metadata.Segments[0]; seg == nil || seg.Integrity == nil {
		return nil, nil
	}
	return activate.IntegritySuperblock(devPath, h)
}

// superblockReader reads it when verifyMetadata asks.
func superblockReader(devPath string, h *luks2.Header) func() (*integrity.Superblock, error) {
	return func() (*integrity.Superblock, error) { return activate.IntegritySuperblock(devPath, h) }
}

// VerifyMetadata checks the authenticated metadata of the unlocked volume
// on devPath (header h, volume key vk) as the boot does.
func VerifyMetadata(devPath string, h *luks2.Header, vk []byte) error {
	pt, _, err := findProvisionToken(h)
	if err != nil {
		return err
	}
	return verifyMetadata(pt, h, superblockReader(devPath, h), vk)
}

// Reauthenticate recomputes the provisioning token's record and MAC after
// the caller changed h (keyslots added or removed): the caller verified the
// metadata before the change and writes the header afterwards.
func Reauthenticate(devPath string, h *luks2.Header, vk []byte) error {
	pt, _, err := findProvisionToken(h)
	if err != nil {
		return err
	}
	sb, err := superblockOf(devPath, h)
	if err != nil {
		return err
	}
	if err := authenticate(pt, h, sb, vk); err != nil {
		return err
	}
	return setProvisionToken(h, pt)
}

// Reconfiguration is what `confidisk state reconfigure` changes; nil
// fields are kept.
type Reconfiguration struct {
	Anchor           *string
	Broker, BrokerCA *string // URL, and the CA PEM file (fingerprinted)
	PCRs             *[]int
	TEE              *string
	RW               *RWMode
}

// Reconfigure changes the provisioned settings of the unlocked volume on
// devPath and recomputes the MAC (the caller writes the header). The
// metadata is verified first; a volume provisioned before authenticated
// metadata (version 1) has its current header authenticated as it is, so
// run it only on a volume known to be untampered. It returns the settings
// now recorded.
func Reconfigure(devPath string, h *luks2.Header, vk []byte, r Reconfiguration) (*Settings, error) {
	pt, _, err := findProvisionToken(h)
	if err != nil {
		return nil, err
	}
	if pt.Version >= tokenVersion {
		if err := verifyMetadata(pt, h, superblockReader(devPath, h), vk); err != nil {
			return nil, err
		}
	}
	sb, err := superblockOf(devPath, h)
	if err != nil {
		return nil, err
	}
	s := Settings{Anchor: "tpm", PCRs: []int{7}, TEE: "none"}
	if pt.Settings != nil {
		s = *pt.Settings
	}
	if err := r.apply(&s, pt); err != nil {
		return nil, err
	}
	pt.Settings = &s
	if err := authenticate(pt, h, sb, vk); err != nil {
		return nil, err
	}
	return &s, setProvisionToken(h, pt)
}

func (r Reconfiguration) apply(s *Settings, pt *provisionToken) error {
	if r.Anchor != nil {
		c := Config{Anchor: *r.Anchor}
		if err := c.set("confidisk.rollback-anchor", *r.Anchor, false); err != nil {
			return err
		}
		s.Anchor = anchorName(c.Anchors())
	}
	if r.Broker != nil {
		s.Broker, s.BrokerCA = *r.Broker, ""
		if *r.Broker != "" {
			if r.BrokerCA == nil {
				return fmt.Errorf("%w: a broker needs its CA file", ErrBadConfig)
			}
			fp, err := caFingerprint(*r.BrokerCA)
			if err != nil {
				return err
			}
			s.BrokerCA = fp
		}
	}
	if s.has("broker") && s.Broker == "" {
		return fmt.Errorf("%w: roll-back anchor %s needs a broker", ErrBadConfig, s.Anchor)
	}
	if r.PCRs != nil {
		s.PCRs = slices.Clone(*r.PCRs)
	}
	if r.TEE != nil {
		s.TEE = *r.TEE
	}
	if r.RW != nil {
		if (*r.RW == RWClone) != (pt.RW == RWClone) || r.RW.usrMode() != pt.RW.usrMode() {
			return fmt.Errorf("%w: read-write mode %s cannot become %s: the state volume's layout differs (a dm-clone volume holds the root itself, a usrhash= volume the root file system without /usr)", ErrBadConfig, pt.RW, *r.RW)
		}
		pt.RW = *r.RW
	}
	return nil
}
