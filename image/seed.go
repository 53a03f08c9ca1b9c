package image

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/confidisk/confidisk/gpt"
)

// Seed makes a build reproducible: every identifier an image needs besides
// the ones the Discoverable Partitions Specification derives from the root
// hash (the disk GUID, the ESP's and the state partition's UUIDs, the file
// system UUIDs, the verity salt and UUID, the ESP's volume ID) is derived
// from it, as systemd-repart derives them from its Seed= (repart.d(5)).
// Builds from the same inputs and seed are byte-identical; a random seed
// gives a unique image.
type Seed [32]byte

// NewSeed returns the seed named by s: any string (an image name and
// version, a UUID), hashed.
func NewSeed(s string) Seed { return Seed(sha256.Sum256([]byte("confidisk image seed\x00" + s))) }

// RandomSeed returns a seed from the system's random source.
func RandomSeed() (Seed, error) {
	var s Seed
	if _, err := rand.Read(s[:]); err != nil {
		return s, fmt.Errorf("random seed: %w", err)
	}
	return s, nil
}

// String is the seed in hex (what --seed takes back as "hex:…").
func (s Seed) String() string { return hex.EncodeToString(s[:]) }

// Derive returns HMAC-SHA256(seed, purpose), the bytes of one identifier.
func (s Seed) Derive(purpose string) [32]byte {
	m := hmac.New(sha256.New, s[:])
	m.Write([]byte(purpose))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// UUID derives a version 4 (random-looking) UUID for purpose (RFC 9562
// §5.4: version bits 0100, variant 10), in the text byte order of
// [gpt.GUID].
func (s Seed) UUID(purpose string) gpt.GUID {
	d := s.Derive(purpose)
	var g gpt.GUID
	copy(g[:], d[:16])
	g[6] = g[6]&0x0f | 0x40
	g[8] = g[8]&0x3f | 0x80
	return g
}
