package provision

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCloneOptions(t *testing.T) {
	c := DefaultConfig()
	if err := c.ApplyCmdline("roothash=" + rh + " confidisk.rw=clone confidisk.clone-region-size=1M confidisk.clone-hydration-threshold=8 confidisk.clone-hydration-batch-size=4 confidisk.clone-hydration=0"); err != nil {
		t.Fatal(err)
	}
	want := CloneOptions{RegionSize: 2048, Threshold: 8, Batch: 4, Hydrate: false}
	if d := cmp.Diff(want, c.Clone); d != "" || c.RW != RWClone {
		t.Errorf("clone options (-want +got):\n%s (rw %s)", d, c.RW)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct{ cmdline, want string }{
		{"confidisk.clone-region-size=3K", "power of two from 4K to 1G"},
		{"confidisk.clone-region-size=2K", "power of two from 4K to 1G"},
		{"confidisk.clone-region-size=2G", "power of two from 4K to 1G"},
		{"confidisk.clone-region-size=64k", "power of two"},
		{"confidisk.clone-hydration-threshold=0", "from 1 to 65536"},
		{"confidisk.clone-hydration-batch-size=x", "from 1 to 65536"},
		{"confidisk.clone-hydration=maybe", "0 or 1"},
	} {
		c := DefaultConfig()
		if err := c.ApplyCmdline(tc.cmdline); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.cmdline, err, tc.want)
		}
	}
	c = DefaultConfig()
	if err := c.ApplyCmdline("roothash=" + rh + " confidisk.rw=clone confidisk.state-key=srk"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "self-encrypted") {
		t.Errorf("clone mode with a pre-encrypted volume: %v", err)
	}
}

func TestCloneRecord(t *testing.T) {
	root := mustDecode(rh)
	rec, err := newCloneRecord(root, 32768, DefaultCloneRegion) // 16 MiB
	if err != nil {
		t.Fatal(err)
	}
	want := &cloneRecord{RootHash: rh, SourceSectors: 32768, MetadataSectors: 5 << 11, RegionSectors: 128}
	if d := cmp.Diff(want, rec); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if err := rec.validate(); err != nil {
		t.Error(err)
	}
	if err := rec.checkSource(root, 32768); err != nil {
		t.Errorf("the same source refused: %v", err)
	}
	other := mustDecode(strings.Repeat("ab", 32))
	for _, tc := range []struct {
		name    string
		root    []byte
		sectors uint64
		want    string
	}{
		{"another-root-hash", other, 32768, "hydration started from root hash " + rh},
		{"another-size", root, 65536, "65536 sectors, hydration started from 32768"},
	} {
		if err := rec.checkSource(tc.root, tc.sectors); !errors.Is(err, ErrCloneSource) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrCloneSource saying %q", tc.name, err, tc.want)
		}
	}
	if err := rec.checkFits(rec.size()); err != nil {
		t.Errorf("an exact fit refused: %v", err)
	}
	if err := rec.checkFits(rec.size() - 8); err == nil || !strings.Contains(err.Error(), "make the state partition larger") {
		t.Errorf("a too small volume: %v", err)
	}
	if _, err := newCloneRecord(root, 32767, DefaultCloneRegion); err == nil {
		t.Error("a source that is not a multiple of 4 KiB accepted")
	}
}

func TestCloneMetadataSectors(t *testing.T) {
	for _, tc := range []struct{ source, region, want uint64 }{
		{32768, 8, 5 << 11},            // 16 MiB in 4 KiB regions: 4096 regions
		{1 << 31, 8, (4 + 1024) << 11}, // 1 TiB in 4 KiB regions: 1 GiB of bitmap room
		{1 << 31, 2048, 8 << 11},       // 1 TiB in 1 MiB regions
	} {
		if got := cloneMetadataSectors(tc.source, tc.region); got != tc.want {
			t.Errorf("cloneMetadataSectors(%d, %d) = %d, want %d", tc.source, tc.region, got, tc.want)
		}
	}
}

func TestCloneRecordInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  cloneRecord
	}{
		{"region-not-power-of-two", cloneRecord{RootHash: rh, SourceSectors: 8, MetadataSectors: 8, RegionSectors: 24}},
		{"region-too-small", cloneRecord{RootHash: rh, SourceSectors: 8, MetadataSectors: 8, RegionSectors: 4}},
		{"no-source", cloneRecord{RootHash: rh, MetadataSectors: 8, RegionSectors: 8}},
		{"no-metadata", cloneRecord{RootHash: rh, SourceSectors: 8, RegionSectors: 8}},
		{"bad-hash", cloneRecord{RootHash: "zz", SourceSectors: 8, MetadataSectors: 8, RegionSectors: 8}},
	} {
		if err := tc.rec.validate(); err == nil {
			t.Errorf("%s accepted", tc.name)
		}
	}
}

// A token without a clone record encodes as before (old MACs still verify).
func TestCloneRecordOmitted(t *testing.T) {
	b, err := json.Marshal(provisionToken{Step: StepComplete})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "clone") {
		t.Errorf("%s", b)
	}
}
