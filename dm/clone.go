package dm

import (
	"errors"
	"fmt"
	"strconv"
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

// CloneStatus is a dm-clone target's status line
// (Documentation/admin-guide/device-mapper/dm-clone.rst, "Status"):
//
//	<metadata block size> <#used metadata blocks>/<#total metadata blocks>
//	<region size> <#hydrated regions>/<#total regions> <#hydrating regions>
//	<#features> <features>* <#core args> <core args>* <clone metadata mode>
//
// or the single word "Fail" when the metadata failed.
type CloneStatus struct {
	// MetadataBlockSize is in 512-byte sectors (8: 4 KiB blocks).
	MetadataBlockSize          uint64
	MetadataUsed, MetadataSize uint64 // in metadata blocks
	// RegionSize is in 512-byte sectors.
	RegionSize uint64
	// Hydrated of Regions have been copied to (or written on) the
	// destination; Hydrating are being copied now.
	Hydrated, Regions, Hydrating uint64
	// Features are the active feature arguments ("no_hydration",
	// "no_discard_passdown"); CoreArgs the core arguments as name/value
	// pairs ("hydration_threshold" …).
	Features []string
	CoreArgs map[string]string
	// Mode is "rw", "ro" or "Fail".
	Mode string
}

// Done reports whether every region is hydrated: the destination then
// holds the whole device and the source is no longer read.
func (s CloneStatus) Done() bool { return s.Mode != "Fail" && s.Regions > 0 && s.Hydrated == s.Regions }

// HydrationEnabled reports whether background hydration runs.
func (s CloneStatus) HydrationEnabled() bool {
	for _, f := range s.Features {
		if f == "no_hydration" {
			return false
		}
	}
	return true
}

// ParseCloneStatus parses the params of a clone target's status (what
// clone_status in drivers/md/dm-clone-target.c emits).
func ParseCloneStatus(params string) (CloneStatus, error) {
	f := strings.Fields(params)
	if len(f) == 1 && f[0] == "Fail" {
		return CloneStatus{Mode: "Fail"}, nil
	}
	bad := func(what string) (CloneStatus, error) {
		return CloneStatus{}, fmt.Errorf("dm: clone status %q: %s", params, what)
	}
	if len(f) < 7 {
		return bad("too few fields")
	}
	var s CloneStatus
	var err error
	if s.MetadataBlockSize, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return bad("metadata block size")
	}
	if s.MetadataUsed, s.MetadataSize, err = parseRatio(f[1]); err != nil {
		return bad("metadata blocks: " + err.Error())
	}
	if s.RegionSize, err = strconv.ParseUint(f[2], 10, 64); err != nil {
		return bad("region size")
	}
	if s.Hydrated, s.Regions, err = parseRatio(f[3]); err != nil {
		return bad("regions: " + err.Error())
	}
	if s.Hydrating, err = strconv.ParseUint(f[4], 10, 64); err != nil {
		return bad("hydrating regions")
	}
	rest := f[5:]
	n, err := strconv.Atoi(rest[0])
	if err != nil || n < 0 || n > len(rest)-1 {
		return bad("feature count")
	}
	s.Features, rest = rest[1:1+n], rest[1+n:]
	if len(rest) < 2 {
		return bad("no core arguments or mode")
	}
	n, err = strconv.Atoi(rest[0])
	if err != nil || n < 0 || n%2 != 0 || n != len(rest)-2 {
		return bad("core argument count")
	}
	s.CoreArgs = map[string]string{}
	for i := 1; i < 1+n; i += 2 {
		s.CoreArgs[rest[i]] = rest[i+1]
	}
	s.Mode = rest[len(rest)-1]
	if s.Mode != "rw" && s.Mode != "ro" {
		return bad("mode " + s.Mode)
	}
	return s, nil
}

// parseRatio parses "a/b".
func parseRatio(s string) (a, b uint64, err error) {
	x, y, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, errors.New("want a/b")
	}
	if a, err = strconv.ParseUint(x, 10, 64); err != nil {
		return 0, 0, err
	}
	if b, err = strconv.ParseUint(y, 10, 64); err != nil {
		return 0, 0, err
	}
	if a > b {
		return 0, 0, fmt.Errorf("%d of %d", a, b)
	}
	return a, b, nil
}
