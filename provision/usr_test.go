package provision

import (
	"strings"
	"testing"
)

func TestUsrhashConfig(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    RWMode
		err     string
	}{
		{"usrhash=" + rh, RWUsrOverlay, ""},
		{"usrhash=" + rh + " confidisk.rw=none", RWUsr, ""},
		{"confidisk.rw=none usrhash=" + rh, RWUsr, ""},
		{"usrhash=" + rh + " confidisk.rw=usr", RWUsr, ""},
		{"usrhash=" + rh + " systemd.volatile=overlay", RWUsrOverlay, ""},
		{"usrhash=" + rh + " confidisk.rw=copy", "", "does not go with usrhash="},
		{"usrhash=" + rh + " confidisk.rw=clone", "", "does not go with usrhash="},
		{"roothash=" + rh + " confidisk.rw=usr-overlay", "", "needs usrhash="},
		{"roothash=" + rh + " usrhash=" + rh, "", "exclude each other"},
		{"usrhash=abcd", "", "root hash"},
	} {
		c := DefaultConfig()
		err := c.ApplyCmdline(tc.cmdline)
		if err == nil {
			err = c.Validate()
		}
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error with %q", tc.cmdline, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.cmdline, err)
		case c.RW != tc.want || !c.Usr:
			t.Errorf("%s: rw %s usr %v, want %s", tc.cmdline, c.RW, c.Usr, tc.want)
		}
	}
	c := DefaultConfig()
	if err := c.ApplyCmdline("roothash=" + rh); err != nil || c.Validate() != nil || c.Usr || c.RW != RWOverlay {
		t.Errorf("roothash= alone: %v, usr %v, rw %s", err, c.Usr, c.RW)
	}
}
