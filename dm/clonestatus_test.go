package dm

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCloneStatus(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     CloneStatus
		done     bool
		hydrate  bool
	}{
		{
			// As observed in the lab (docs/lab.md, dm-clone).
			name: "no-hydration", in: "8 6/1024 8 257/16384 0 1 no_hydration 4 hydration_threshold 1 hydration_batch_size 1 rw",
			want: CloneStatus{MetadataBlockSize: 8, MetadataUsed: 6, MetadataSize: 1024, RegionSize: 8, Hydrated: 257, Regions: 16384,
				Features: []string{"no_hydration"}, CoreArgs: map[string]string{"hydration_threshold": "1", "hydration_batch_size": "1"}, Mode: "rw"},
		},
		{
			name: "done", in: "8 10/1024 128 256/256 0 0 4 hydration_threshold 8 hydration_batch_size 32 rw",
			want: CloneStatus{MetadataBlockSize: 8, MetadataUsed: 10, MetadataSize: 1024, RegionSize: 128, Hydrated: 256, Regions: 256,
				Features: []string{}, CoreArgs: map[string]string{"hydration_threshold": "8", "hydration_batch_size": "32"}, Mode: "rw"},
			done: true, hydrate: true,
		},
		{
			name: "read-only", in: "8 10/1024 128 3/256 2 1 no_discard_passdown 0 ro",
			want: CloneStatus{MetadataBlockSize: 8, MetadataUsed: 10, MetadataSize: 1024, RegionSize: 128, Hydrated: 3, Regions: 256, Hydrating: 2,
				Features: []string{"no_discard_passdown"}, CoreArgs: map[string]string{}, Mode: "ro"},
			hydrate: true,
		},
		{name: "fail", in: "Fail", want: CloneStatus{Mode: "Fail"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCloneStatus(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if got.Done() != tc.done || (got.Mode != "Fail" && got.HydrationEnabled() != tc.hydrate) {
				t.Errorf("Done %v HydrationEnabled %v, want %v %v", got.Done(), got.HydrationEnabled(), tc.done, tc.hydrate)
			}
		})
	}
}

func TestParseCloneStatusInvalid(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"", "too few fields"},
		{"8 6/1024 8 257/16384 0 1", "too few fields"},
		{"x 6/1024 8 257/16384 0 0 0 rw", "metadata block size"},
		{"8 6-1024 8 257/16384 0 0 0 rw", "metadata blocks"},
		{"8 6/1024 8 300/200 0 0 0 rw", "regions: 300 of 200"},
		{"8 6/1024 8 1/2 0 5 a 0 rw", "feature count"},
		{"8 6/1024 8 1/2 0 0 3 a b c rw", "core argument count"},
		{"8 6/1024 8 1/2 0 0 2 a b", "core argument count"},
		{"8 6/1024 8 1/2 0 1 x", "no core arguments or mode"},
		{"8 6/1024 8 1/2 0 0 2 a b c rw", "core argument count"},
		{"8 6/1024 8 1/2 0 0 0 maybe", "mode maybe"},
	} {
		_, err := ParseCloneStatus(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseCloneStatus(%q) = %v, want an error with %q", tc.in, err, tc.err)
		}
	}
}

// FuzzParseCloneStatus: any status text gives a status or an error, never a
// panic, and a parsed status is consistent.
func FuzzParseCloneStatus(f *testing.F) {
	f.Add("8 6/1024 8 257/16384 0 1 no_hydration 4 hydration_threshold 1 hydration_batch_size 1 rw")
	f.Add("8 10/1024 128 256/256 0 0 4 hydration_threshold 8 hydration_batch_size 32 rw")
	f.Add("Fail")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseCloneStatus(s)
		if err != nil {
			return
		}
		if st.Hydrated > st.Regions || st.MetadataUsed > st.MetadataSize {
			t.Fatalf("inconsistent status %+v from %q", st, s)
		}
	})
}
