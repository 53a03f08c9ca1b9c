package activate

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/dm"
	"github.com/confidisk/confidisk/verity"
)

func TestVerityTable(t *testing.T) {
	root := make([]byte, 32)
	for i := range root {
		root[i] = byte(i)
	}
	const rootHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	salted := verity.DefaultParams(262144)
	salted.Salt = []byte{0xde, 0xad}
	noSB := verity.DefaultParams(100)
	noSB.NoSuperblock = true
	noSB.HashOffset = 8192
	tests := []struct {
		name string
		p    verity.Params
		o    VerityOptions
		want dm.Target
	}{
		{"defaults", salted, VerityOptions{}, dm.Target{Start: 0, Length: 2097152, Type: "verity",
			Params: "1 /dev/vda2 /dev/vda3 4096 4096 262144 1 sha256 " + rootHex + " dead"}},
		{"no superblock, no salt, options", noSB, VerityOptions{Corruption: CorruptionRestart, IgnoreZeroBlocks: true, CheckAtMostOnce: true},
			dm.Target{Start: 0, Length: 800, Type: "verity",
				Params: "1 /dev/vda2 /dev/vda3 4096 4096 100 2 sha256 " + rootHex + " - 3 restart_on_corruption ignore_zero_blocks check_at_most_once"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := VerityTable("/dev/vda2", "/dev/vda3", tc.p, root, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("table (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := VerityTable("a", "b", salted, root[:31], VerityOptions{}); err == nil {
		t.Error("short root hash accepted")
	}
}

func TestVerityUUID(t *testing.T) {
	p := verity.DefaultParams(1)
	p.UUID, _ = verity.ParseUUID("12345678-1234-1234-1234-123456789abc")
	if got, want := VerityUUID(p, "root"), "CRYPT-VERITY-12345678123412341234123456789abc-root"; got != want {
		t.Errorf("uuid %q, want %q", got, want)
	}
}
