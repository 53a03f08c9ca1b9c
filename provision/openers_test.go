package provision

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var testVolume = VolumeNames{Device: "/dev/vda3", PartUUID: "6a7f4e1c-2b3d-4c5e-8f90-a1b2c3d4e5f6", PartLabel: "state",
	LUKSUUID: "dd91049f-e6e6-4fa7-8e63-906f46858b3c"}

func TestOtherOpeners(t *testing.T) {
	for _, tc := range []struct {
		name     string
		crypttab string
		options  []string
		want     []string
	}{
		{name: "none"},
		{name: "other volumes", crypttab: "# comment\ndata UUID=0b0b0b0b-e6e6-4fa7-8e63-906f46858b3c none tpm2-device=auto\nswap /dev/vda4 /dev/urandom swap\n",
			options: []string{"rd.luks.uuid=0b0b0b0b-e6e6-4fa7-8e63-906f46858b3c"}},
		{name: "crypttab by LUKS UUID", crypttab: "st UUID=DD91049F-E6E6-4FA7-8E63-906F46858B3C none\n",
			want: []string{"/etc/crypttab line 1 (st UUID=DD91049F-E6E6-4FA7-8E63-906F46858B3C)"}},
		{name: "crypttab by partition label link", crypttab: "\n  st /dev/disk/by-partlabel/state - tpm2-device=auto\n",
			want: []string{"/etc/crypttab line 2 (st /dev/disk/by-partlabel/state)"}},
		{name: "crypttab by PARTUUID and device", crypttab: "a PARTUUID=6a7f4e1c-2b3d-4c5e-8f90-a1b2c3d4e5f6\nb /dev/vda3\nc /dev/disk/by-partuuid/6a7f4e1c-2b3d-4c5e-8f90-a1b2c3d4e5f6\nd /dev/disk/by-uuid/dd91049f-e6e6-4fa7-8e63-906f46858b3c\n",
			want: []string{"/etc/crypttab line 1 (a PARTUUID=6a7f4e1c-2b3d-4c5e-8f90-a1b2c3d4e5f6)", "/etc/crypttab line 2 (b /dev/vda3)",
				"/etc/crypttab line 3 (c /dev/disk/by-partuuid/6a7f4e1c-2b3d-4c5e-8f90-a1b2c3d4e5f6)", "/etc/crypttab line 4 (d /dev/disk/by-uuid/dd91049f-e6e6-4fa7-8e63-906f46858b3c)"}},
		{name: "command line", options: []string{"rd.luks.uuid=luks-dd91049f-e6e6-4fa7-8e63-906f46858b3c", "luks.name=dd91049f-e6e6-4fa7-8e63-906f46858b3c=root"},
			want: []string{"the command line's rd.luks.uuid=luks-dd91049f-e6e6-4fa7-8e63-906f46858b3c", "the command line's luks.name=dd91049f-e6e6-4fa7-8e63-906f46858b3c=root"}},
		{name: "label elsewhere", crypttab: "a PARTLABEL=State\nb LABEL=state\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, OtherOpeners(testVolume, []byte(tc.crypttab), tc.options)); d != "" {
				t.Errorf("OtherOpeners (-want +got):\n%s", d)
			}
		})
	}
}

// A blank partition has no LUKS UUID: UUID= names match nothing, the
// partition's own names still do.
func TestOtherOpenersBlank(t *testing.T) {
	v := testVolume
	v.LUKSUUID = ""
	got := OtherOpeners(v, []byte("a UUID=\nb PARTLABEL=state\n"), []string{"rd.luks.uuid=", "luks.uuid=luks-"})
	if d := cmp.Diff([]string{"/etc/crypttab line 2 (b PARTLABEL=state)"}, got); d != "" {
		t.Errorf("OtherOpeners (-want +got):\n%s", d)
	}
}

func TestConfigCollectsLUKSOptions(t *testing.T) {
	c := DefaultConfig()
	if err := c.ApplyCmdline("roothash=" + strings.Repeat("ab", 32) + " rd.luks.uuid=x rd.luks.options=discard luks.name=y=z rd.luks=0"); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"rd.luks.uuid=x", "luks.name=y=z"}, c.LUKSOptions); d != "" {
		t.Errorf("LUKSOptions (-want +got):\n%s", d)
	}
	if err := c.ApplyFile([]byte("rd.luks.uuid=x\n")); err == nil {
		t.Error("the config file took rd.luks.uuid=: want an unknown key")
	}
}

func FuzzOtherOpeners(f *testing.F) {
	f.Add("st UUID=dd91049f-e6e6-4fa7-8e63-906f46858b3c none\n# x\nb /dev/vda3\n", "rd.luks.uuid=luks-dd91049f-e6e6-4fa7-8e63-906f46858b3c")
	f.Add("c /dev/disk/by-partuuid/6a7f4e1c-2b3d-4c5e-8f90-a1b2c3d4e5f6\n", "luks.name=a=b=c")
	f.Add("\x00 =\n\t\t\n", "=")
	f.Fuzz(func(t *testing.T, crypttab, option string) {
		got := OtherOpeners(testVolume, []byte(crypttab), []string{option})
		if lines := strings.Count(crypttab, "\n") + 2; len(got) > lines {
			t.Fatalf("%d openers from %d lines", len(got), lines)
		}
	})
}
