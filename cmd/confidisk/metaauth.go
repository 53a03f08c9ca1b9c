package main

import (
	"errors"
	"fmt"

	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/luks2/metamac"
	"github.com/confidisk/confidisk/provision"
)

// metaAuth keeps the authenticated metadata of a state volume provisioned by
// confidisk boot current across a header change (docs/boot.md): the
// metadata is verified under the volume key before the change, and its MAC
// recomputed in the write that carries it. A change that leaves the
// authenticated fields alone (a token, say) needs no key.
type metaAuth struct {
	path   string
	on     bool
	before metamac.Record
	vk     []byte
}

// ErrNeedsKey means a header change would invalidate a state volume's MAC
// and no passphrase was given to recompute it.
var ErrNeedsKey = errors.New("the volume's metadata is authenticated under its volume key (a confidisk state volume): " +
	"this change needs a passphrase of the volume (--key-file) to keep the MAC valid, or the next boot refuses the volume")

func newMetaAuth(path string, h *luks2.Header) *metaAuth {
	return &metaAuth{path: path, on: provision.Authenticated(h), before: metamac.Describe(h, nil)}
}

func (a *metaAuth) enabled() bool { return a != nil && a.on }

// unlocked verifies the metadata of h with the volume key before anything
// changes, and keeps the key for the write.
func (a *metaAuth) unlocked(h *luks2.Header, vk []byte) error {
	if !a.enabled() {
		return nil
	}
	if err := provision.VerifyMetadata(a.path, h, vk); err != nil {
		return fmt.Errorf("%s: %w; not changing it (the header may have been tampered with)", a.path, err)
	}
	a.vk = vk
	return nil
}

// refresh recomputes the MAC of h before it is written.
func (a *metaAuth) refresh(h *luks2.Header) error {
	switch {
	case !a.enabled():
		return nil
	case a.vk != nil:
		return provision.Reauthenticate(a.path, h, a.vk)
	case metamac.Compare(a.before, metamac.Describe(h, nil)) != nil:
		return ErrNeedsKey
	}
	return nil
}
