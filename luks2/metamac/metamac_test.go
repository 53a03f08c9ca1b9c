package metamac

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
)

type memDev struct{ b []byte }

func (d *memDev) WriteAt(p []byte, off int64) (int, error) {
	if need := int(off) + len(p); need > len(d.b) {
		d.b = append(d.b, make([]byte, need-len(d.b))...)
	}
	return copy(d.b[off:], p), nil
}

func format(t *testing.T) *luks2.Header {
	t.Helper()
	h, _, err := luks2.Format(&memDev{}, 32<<20, []byte("pass"), luks2.FormatOptions{
		Integrity: "hmac-sha256", PBKDF: luks2.PBKDF{Type: "pbkdf2", Hash: "sha256", Iterations: 1000},
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestDescribe(t *testing.T) {
	h := format(t)
	sb := &integrity.Superblock{Version: 5, IntegrityTagSize: 32, JournalSections: 7, ProvidedDataSectors: 1000,
		Log2SectorsPerBlock: 3, Flags: integrity.Flags(0x18)}
	r := Describe(h, sb)
	want := map[string]string{
		"uuid":                             h.UUID,
		"segments.0.type":                  "crypt",
		"segments.0.offset":                "16777216",
		"segments.0.size":                  "dynamic",
		"segments.0.iv_tweak":              "0",
		"segments.0.encryption":            "aes-xts-plain64",
		"segments.0.sector_size":           "4096",
		"segments.0.integrity":             "hmac(sha256)",
		"digests.0.keyslots":               "0",
		"digests.0.segments":               "0",
		"config.flags":                     "",
		"integrity.tag_size":               "32",
		"integrity.provided_data_sectors":  "1000",
		"integrity.log2_sectors_per_block": "3",
	}
	got := map[string]string{}
	for k := range want {
		got[k] = r[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if !r.HasIntegrity() || Describe(h, nil).HasIntegrity() {
		t.Error("HasIntegrity does not follow the superblock")
	}
}

// TestCompare: each rewrite of the host is named by the field it changed.
func TestCompare(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(h *luks2.Header, sb *integrity.Superblock)
		want   string // "" for equal
	}{
		{"unchanged", func(*luks2.Header, *integrity.Superblock) {}, ""},
		{"cipher-null", func(h *luks2.Header, _ *integrity.Superblock) {
			h.Metadata.Segments[0].Encryption = "cipher_null-ecb"
			h.Metadata.Segments[0].Integrity = nil
		}, `segment 0 encryption is "cipher_null-ecb", provisioned "aes-xts-plain64"`},
		{"integrity-stripped", func(h *luks2.Header, _ *integrity.Superblock) { h.Metadata.Segments[0].Integrity = nil },
			`segment 0 integrity is "none", provisioned "hmac(sha256)"`},
		{"offset-shift", func(h *luks2.Header, _ *integrity.Superblock) { h.Metadata.Segments[0].Offset += 4096 },
			`segment 0 offset is "16781312", provisioned "16777216"`},
		{"sector-size", func(h *luks2.Header, _ *integrity.Superblock) { h.Metadata.Segments[0].SectorSize = 512 },
			`segment 0 sector_size is "512", provisioned "4096"`},
		{"iv-tweak", func(h *luks2.Header, _ *integrity.Superblock) { h.Metadata.Segments[0].IVTweak = 8 },
			`segment 0 iv_tweak is "8", provisioned "0"`},
		{"size", func(h *luks2.Header, _ *integrity.Superblock) {
			h.Metadata.Segments[0].Size = luks2.SegmentSize{Bytes: 1 << 20}
		},
			`segment 0 size is "1048576", provisioned "dynamic"`},
		{"second-segment", func(h *luks2.Header, _ *integrity.Superblock) {
			s := *h.Metadata.Segments[0]
			h.Metadata.Segments[1] = &s
		}, `segment 1 encryption is "aes-xts-plain64", which was not provisioned`},
		{"segment-removed", func(h *luks2.Header, _ *integrity.Superblock) { delete(h.Metadata.Segments, 0) },
			`segment 0 encryption is missing, provisioned "aes-xts-plain64"`},
		{"digest-keyslots", func(h *luks2.Header, _ *integrity.Superblock) {
			h.Metadata.Digests[0].Keyslots = append(h.Metadata.Digests[0].Keyslots, "3")
		},
			`digest 0 keyslots is "0,3", provisioned "0"`},
		{"uuid", func(h *luks2.Header, _ *integrity.Superblock) { h.UUID = "00000000-0000-0000-0000-000000000000" },
			`uuid is "00000000-0000-0000-0000-000000000000"`},
		{"config-requirements", func(h *luks2.Header, _ *integrity.Superblock) {
			h.Metadata.Config.Requirements = json.RawMessage(`{"mandatory":["online-reencrypt-v2"]}`)
		}, `config requirements is "{\"mandatory\":[\"online-reencrypt-v2\"]}", provisioned ""`},
		{"integrity-tag-size", func(_ *luks2.Header, sb *integrity.Superblock) { sb.IntegrityTagSize = 16 },
			`dm-integrity superblock tag_size is "16", provisioned "32"`},
		{"integrity-provided-sectors", func(_ *luks2.Header, sb *integrity.Superblock) { sb.ProvidedDataSectors++ },
			`dm-integrity superblock provided_data_sectors is "1001", provisioned "1000"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := format(t)
			sb := &integrity.Superblock{Version: 5, IntegrityTagSize: 32, ProvidedDataSectors: 1000}
			want := Describe(h, sb)
			tc.mutate(h, sb)
			err := Compare(want, Describe(h, sb))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unchanged header refused: %v", err)
			case tc.want == "":
				return
			case err == nil:
				t.Fatal("change not detected")
			case !errors.Is(err, ErrChanged):
				t.Errorf("error %v does not wrap ErrChanged", err)
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestCanonicalJSON(t *testing.T) {
	a := canonicalJSON(json.RawMessage(`{ "b": [1, 2], "a": "x" }`))
	b := canonicalJSON(json.RawMessage(`{"a":"x","b":[1,2]}`))
	if a != b {
		t.Errorf("key order and whitespace count: %q vs %q", a, b)
	}
}

func TestSumVerify(t *testing.T) {
	vk := bytes.Repeat([]byte{7}, 64)
	mac, err := Sum(vk, []byte("record"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		vk, msg []byte
		ok      bool
	}{
		{vk, []byte("record"), true},
		{vk, []byte("recorD"), false},
		{bytes.Repeat([]byte{8}, 64), []byte("record"), false},
	} {
		ok, err := Verify(tc.vk, tc.msg, mac)
		if err != nil || ok != tc.ok {
			t.Errorf("Verify(%x…, %q) = %v, %v; want %v", tc.vk[:2], tc.msg, ok, err, tc.ok)
		}
	}
	// Domain separation: the metadata key is not the raw volume key.
	if ok, _ := Verify(vk, []byte("record"), append([]byte{}, vk[:32]...)); ok {
		t.Error("a MAC equal to the key verified")
	}
}
