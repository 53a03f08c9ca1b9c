package attest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Merge returns the policy a broker runs while several images are in
// service (docs/updates.md): every PCR's allowed values, the root hashes
// and the TEE measurements of all of ps, each list sorted and without
// duplicates. Retiring an image is merging the others again.
//
// The policies must pin the same PCRs in the same bank and agree on
// everything that is not a list of accepted values (volume name, the
// require_* switches, the attestation keys, which TEEs are pinned): a
// merge widens the accepted images and nothing else, and never silently
// drops a check one of the inputs makes. A policy accepts a PCR value of
// one image with another PCR's value of another: pin the PCRs that bind
// an image (11, 12, 4) so that such a mix is no image anyone built.
func Merge(ps ...*Policy) (*Policy, error) {
	if len(ps) == 0 {
		return nil, errors.New("merge policies: no policy (a broker needs at least one accepted image)")
	}
	out := clonePolicy(ps[0])
	for i, p := range ps[1:] {
		if err := mergeInto(out, p); err != nil {
			return nil, fmt.Errorf("merge policies: policy %d and policy 1: %w", i+2, err)
		}
	}
	for i := range out.PCRs {
		out.PCRs[i] = sortedSet(out.PCRs[i])
	}
	out.RootHashes = sortedSet(out.RootHashes)
	if out.SEVSNP != nil {
		out.SEVSNP.Measurements = sortedSet(out.SEVSNP.Measurements)
	}
	if out.TDX != nil {
		out.TDX.MRTDs = sortedSet(out.TDX.MRTDs)
	}
	if err := out.normalize(); err != nil {
		return nil, fmt.Errorf("merge policies: %w", err)
	}
	return out, nil
}

// mergeInto adds p's accepted values to out after checking that the two
// agree on the rest.
func mergeInto(out, p *Policy) error {
	switch {
	case p.Bank != out.Bank:
		return fmt.Errorf("pcr banks %s and %s differ", p.Bank, out.Bank)
	case !slices.Equal(sortedKeys(p.PCRs), sortedKeys(out.PCRs)):
		return fmt.Errorf("they pin different pcrs (%v and %v)", sortedKeys(p.PCRs), sortedKeys(out.PCRs))
	case p.VolumeName != out.VolumeName:
		return fmt.Errorf("volume names %q and %q differ", p.VolumeName, out.VolumeName)
	case p.RequireRootHash != out.RequireRootHash, p.RequireTEE != out.RequireTEE:
		return errors.New("require_root_hash or require_tee differ")
	case (len(p.RootHashes) == 0) != (len(out.RootHashes) == 0):
		return errors.New("one pins root hashes and the other accepts any")
	case !slices.Equal(sortedSet(p.AttestationKeys), sortedSet(out.AttestationKeys)):
		return errors.New("attestation_keys differ (pin the same guests in every policy)")
	case (p.SEVSNP == nil) != (out.SEVSNP == nil), (p.TDX == nil) != (out.TDX == nil):
		return errors.New("one pins tee measurements the other does not")
	}
	for i, vals := range p.PCRs {
		out.PCRs[i] = append(out.PCRs[i], vals...)
	}
	out.RootHashes = append(out.RootHashes, p.RootHashes...)
	if p.SEVSNP != nil {
		if (len(p.SEVSNP.Measurements) == 0) != (len(out.SEVSNP.Measurements) == 0) {
			return errors.New("one pins sev_snp measurements and the other accepts any")
		}
		out.SEVSNP.Measurements = append(out.SEVSNP.Measurements, p.SEVSNP.Measurements...)
	}
	if p.TDX != nil {
		if (len(p.TDX.MRTDs) == 0) != (len(out.TDX.MRTDs) == 0) {
			return errors.New("one pins tdx mrtds and the other accepts any")
		}
		out.TDX.MRTDs = append(out.TDX.MRTDs, p.TDX.MRTDs...)
	}
	return nil
}

// clonePolicy is a deep copy of p.
func clonePolicy(p *Policy) *Policy {
	c := *p
	c.PCRs = make(map[int][]string, len(p.PCRs))
	for i, v := range p.PCRs {
		c.PCRs[i] = slices.Clone(v)
	}
	c.RootHashes = slices.Clone(p.RootHashes)
	c.AttestationKeys = slices.Clone(p.AttestationKeys)
	if p.SEVSNP != nil {
		c.SEVSNP = &SEVSNPPolicy{Measurements: slices.Clone(p.SEVSNP.Measurements)}
	}
	if p.TDX != nil {
		c.TDX = &TDXPolicy{MRTDs: slices.Clone(p.TDX.MRTDs)}
	}
	return &c
}

func sortedKeys(m map[int][]string) []int { return slices.Sorted(maps.Keys(m)) }

// sortedSet sorts v and drops repeats; nil stays nil.
func sortedSet(v []string) []string {
	if v == nil {
		return nil
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return slices.Compact(s)
}
