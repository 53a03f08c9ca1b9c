package dm

import (
	"errors"
	"fmt"
	"strings"
)

// CloneParams are the arguments of a dm-clone target
// (Documentation/admin-guide/device-mapper/dm-clone.rst, "Constructor"):
//
//	clone <metadata dev> <destination dev> <source dev> <region size>
//	      [<#feature args> [<feature arg>]* [<#core args> [<core arg>]*]]
//
// The target's length must equal the source device's size.
type CloneParams struct {
	// MetadataDevice stores the region bitmap.
	MetadataDevice string
	// DestinationDevice receives the hydrated copy.
	DestinationDevice string
	// SourceDevice is read from until a region is hydrated.
	SourceDevice string
	// RegionSize is the copy unit in 512-byte sectors: a power of two
	// from 8 (4 KiB) to 2097152 (1 GiB).
	RegionSize uint64
	// NoHydration starts without background hydration (feature
	// "no_hydration"); send the message "enable_hydration" to start it.
	NoHydration bool
	// NoDiscardPassdown does not pass discards to the destination (feature
	// "no_discard_passdown").
	NoDiscardPassdown bool
	// HydrationThreshold is the maximum number of regions hydrated at once
	// (core argument "hydration_threshold <n>"); 0 keeps the default.
	HydrationThreshold uint32
	// HydrationBatchSize is the number of adjacent regions copied in one
	// batch (core argument "hydration_batch_size <n>"); 0 keeps the default.
	HydrationBatchSize uint32
}

// Validate checks the parameters for what dm-clone's clone_ctr
// (drivers/md/dm-clone-target.c) would reject.
func (p CloneParams) Validate() error {
	for _, d := range []struct{ what, dev string }{
		{"metadata device", p.MetadataDevice},
		{"destination device", p.DestinationDevice},
		{"source device", p.SourceDevice},
	} {
		if err := checkWord(d.what, d.dev); err != nil {
			return fmt.Errorf("dm: clone: %w", err)
		}
	}
	if p.RegionSize < 8 || p.RegionSize > 2097152 || !isPowerOfTwo(p.RegionSize) {
		return fmt.Errorf("dm: clone: region size %d sectors: want a power of two from 8 (4 KiB) to 2097152 (1 GiB)", p.RegionSize)
	}
	return nil
}

// Params returns the clone argument string. The feature group is written
// when a feature or a core argument is set (with count 0 if only core
// arguments are), because core arguments can only follow it.
func (p CloneParams) Params() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	s := fmt.Sprintf("%s %s %s %d", p.MetadataDevice, p.DestinationDevice, p.SourceDevice, p.RegionSize)
	var features, core []string
	if p.NoHydration {
		features = append(features, "no_hydration")
	}
	if p.NoDiscardPassdown {
		features = append(features, "no_discard_passdown")
	}
	if p.HydrationThreshold != 0 {
		core = append(core, "hydration_threshold", fmt.Sprint(p.HydrationThreshold))
	}
	if p.HydrationBatchSize != 0 {
		core = append(core, "hydration_batch_size", fmt.Sprint(p.HydrationBatchSize))
	}
	if len(features) > 0 || len(core) > 0 {
		s += fmt.Sprintf(" %d", len(features))
		if len(features) > 0 {
			s += " " + strings.Join(features, " ")
		}
	}
	if len(core) > 0 {
		s += fmt.Sprintf(" %d %s", len(core), strings.Join(core, " "))
	}
	return s, nil
}

// Target returns the clone table line covering length sectors from start
// (length = the source device's size in sectors).
func (p CloneParams) Target(start, length uint64) (Target, error) {
	params, err := p.Params()
	if err != nil {
		return Target{}, err
	}
	if length == 0 {
		return Target{}, errors.New("dm: clone: zero length")
	}
	return Target{Start: start, Length: length, Type: "clone", Params: params}, nil
}
