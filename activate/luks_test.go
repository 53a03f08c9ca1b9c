package activate

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/luks2"
)

func header(enc string, integ string, sectorSize int) *luks2.Header {
	seg := &luks2.Segment{Type: "crypt", Offset: 16 << 20, Size: luks2.SegmentSize{Dynamic: true}, Encryption: enc, SectorSize: sectorSize}
	if integ != "" {
		seg.Integrity = &luks2.SegmentIntegrity{Type: integ, JournalEncryption: "none", JournalIntegrity: "none"}
	}
	return &luks2.Header{UUID: "0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90", Metadata: &luks2.Metadata{Segments: map[int]*luks2.Segment{0: seg}}}
}

func tweak(h *luks2.Header, t uint64) *luks2.Header {
	h.Metadata.Segments[0].IVTweak = luks2.U64(t)
	return h
}

// TestBuildLUKSTables checks the tables against the lines cryptsetup 2.6
// loads (formats-and-peers.md §1b, "Kernel table lines").
func TestBuildLUKSTables(t *testing.T) {
	const key = ":96:logon:cryptsetup:0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90-d0"
	tests := []struct {
		name      string
		h         *luks2.Header
		vkLen     int
		o         LUKSOptions
		wantInteg string
		wantCrypt string
	}{
		{"xts-4k", header("aes-xts-plain64", "", 4096), 64, LUKSOptions{}, "",
			"0 172032 crypt aes-xts-plain64 :64:logon:cryptsetup:0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90-d0 0 /dev/vda 32768 1 sector_size:4096"},
		{"xts-512-hexkey", header("aes-xts-plain64", "", 512), 64, LUKSOptions{KeyInHex: true}, "",
			"0 172032 crypt aes-xts-plain64 " + strings.Repeat("00", 64) + " 0 /dev/vda 32768"},
		{"hmac-sha256-4k", header("aes-xts-plain64", "hmac(sha256)", 4096), 96, LUKSOptions{},
			"0 150000 integrity /dev/vda 32768 32 J 3 block_size:4096 fix_padding fix_hmac",
			"0 150000 crypt capi:authenc(hmac(sha256),xts(aes))-plain64 " + key + " 0 /dev/mapper/vol_dif 0 2 integrity:32:aead sector_size:4096"},
		{"aead-512-nojournal", header("aes-gcm-random", "aead", 512), 32, LUKSOptions{NoJournal: true},
			"0 150000 integrity /dev/vda 32768 28 D 3 block_size:512 fix_padding fix_hmac",
			"0 150000 crypt capi:gcm(aes)-random :32:logon:cryptsetup:0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90-d0 0 /dev/mapper/vol_dif 0 1 integrity:28:aead"},
		// cryptsetup ignores iv_tweak outside reencryption (iv_offset 0).
		{"xts-4k-iv-tweak", tweak(header("aes-xts-plain64", "", 4096), 8), 64, LUKSOptions{}, "",
			"0 172032 crypt aes-xts-plain64 :64:logon:cryptsetup:0c9b7a65-1f4e-4d2b-9a51-3e1d2c7b8a90-d0 0 /dev/vda 32768 1 sector_size:4096"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BuildLUKSTables(tc.h, "vol", "/dev/vda", 204800, 150000, make([]byte, tc.vkLen), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			var integ string
			if got.Integrity != nil {
				integ = got.Integrity.Line()
			}
			if diff := cmp.Diff(tc.wantInteg, integ); diff != "" {
				t.Errorf("integrity table (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantCrypt, got.Crypt.Line()); diff != "" {
				t.Errorf("crypt table (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := BuildLUKSTables(header("aes-xts-plain64", "hmac(sha256)", 4096), "v", "/dev/vda", 204800, 1, make([]byte, 96), LUKSOptions{AllowDiscards: true}); err == nil {
		t.Error("discards with integrity accepted")
	}
	if _, err := BuildLUKSTables(header("aes-xts-plain64", "", 4096), "v", "/dev/vda", 100, 0, make([]byte, 64), LUKSOptions{}); err == nil {
		t.Error("device smaller than the data offset accepted")
	}
}
