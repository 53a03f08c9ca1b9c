package provision

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// cloneRecord is what the provisioning token records of a volume in
// dm-clone mode ([RWClone]). The state volume's mapped data holds, in order:
//
//	[0, MetadataSectors)                            dm-clone's metadata (region bitmap)
//	[MetadataSectors, MetadataSectors+SourceSectors) the destination: the root file system
//
// and nothing after that. Being in the token, it is covered by the token's
// MAC under the volume key: the host can change none of it.
type cloneRecord struct {
	// RootHash is the verity root hash (hex) of the source hydration
	// started from: until it completes, only that source may finish it.
	RootHash string `json:"root_hash"`
	// SourceSectors is the source's size in 512-byte sectors: the clone's
	// length.
	SourceSectors uint64 `json:"source_sectors"`
	// MetadataSectors is the size of the metadata area.
	MetadataSectors uint64 `json:"metadata_sectors"`
	// RegionSectors is the dm-clone region size the metadata was made with.
	RegionSectors uint64 `json:"region_sectors"`
	// Hydrated is set by the boot that found every region hydrated: from
	// then on the destination is mapped directly and the source is never
	// read again.
	Hydrated bool `json:"hydrated,omitempty"`
}

// ErrCloneSource means the verity root this boot offers is not the source
// the volume's hydration started from.
var ErrCloneSource = errors.New("the verity root is not the source this volume's hydration started from")

// cloneMetadataSectors is the size of the metadata area for a source of
// source sectors in regions of region sectors: 4 MiB, plus 4 bytes per
// region (dm-clone keeps one bit per region in a dm-bitset, in copy-on-write
// metadata blocks, so this leaves room for the bitmap several times over),
// rounded up to 1 MiB. dm-clone needs far less (10 of 1024 blocks for 131072
// regions, docs/lab.md).
func cloneMetadataSectors(source, region uint64) uint64 {
	regions := (source + region - 1) / region
	bytes := uint64(4<<20) + 4*regions
	const mib = 1 << 20
	return (bytes + mib - 1) / mib * mib / 512
}

// newCloneRecord returns the record of a new clone of a source of sectors
// sectors with root hash root.
func newCloneRecord(root []byte, sectors, region uint64) (*cloneRecord, error) {
	if sectors == 0 || sectors%8 != 0 {
		return nil, fmt.Errorf("dm-clone mode: the verity root has %d sectors, want a non-zero multiple of 4 KiB", sectors)
	}
	return &cloneRecord{
		RootHash: hex.EncodeToString(root), SourceSectors: sectors,
		MetadataSectors: cloneMetadataSectors(sectors, region), RegionSectors: region,
	}, nil
}

// size is the part of the state volume the clone uses, in sectors.
func (r *cloneRecord) size() uint64 { return r.MetadataSectors + r.SourceSectors }

// checkFits checks that a state volume of sectors sectors holds the clone.
func (r *cloneRecord) checkFits(sectors uint64) error {
	if sectors < r.size() {
		return fmt.Errorf("dm-clone mode: the state volume holds %d MiB, the clone needs %d MiB (%d MiB metadata + %d MiB root): make the state partition larger",
			sectors>>11, (r.size()+2047)>>11, r.MetadataSectors>>11, (r.SourceSectors+2047)>>11)
	}
	return nil
}

// checkSource checks that a not yet hydrated clone may go on from a verity
// root with root hash root and sectors sectors: mixing the regions of two
// images would make a file system that is neither.
func (r *cloneRecord) checkSource(root []byte, sectors uint64) error {
	if err := r.checkRoot(root); err != nil {
		return err
	}
	if sectors != r.SourceSectors {
		return fmt.Errorf("%w: the verity root has %d sectors, hydration started from %d", ErrCloneSource, sectors, r.SourceSectors)
	}
	return nil
}

// checkRoot refuses a roothash= other than the one hydration started
// from. The boot checks it as soon as the record is authenticated, before
// anything is written, and again when it maps the source.
func (r *cloneRecord) checkRoot(root []byte) error {
	if got := hex.EncodeToString(root); got != r.RootHash {
		return fmt.Errorf("%w: hydration started from root hash %s, this boot's roothash= is %s; boot the image with %s until hydration completes",
			ErrCloneSource, r.RootHash, got, r.RootHash)
	}
	return nil
}

// validate checks a record read from an authenticated token for values the
// boot could not map.
func (r *cloneRecord) validate() error {
	switch {
	case r.RegionSectors < 8 || r.RegionSectors > 2097152 || r.RegionSectors&(r.RegionSectors-1) != 0:
		return fmt.Errorf("dm-clone record: region size %d sectors", r.RegionSectors)
	case r.SourceSectors == 0 || r.SourceSectors%8 != 0 || r.MetadataSectors%8 != 0 || r.MetadataSectors < 8:
		return fmt.Errorf("dm-clone record: source %d and metadata %d sectors", r.SourceSectors, r.MetadataSectors)
	}
	if _, err := hex.DecodeString(r.RootHash); err != nil || r.RootHash == "" {
		return fmt.Errorf("dm-clone record: root hash %q", r.RootHash)
	}
	return nil
}
