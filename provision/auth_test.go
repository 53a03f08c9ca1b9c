package provision

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/luks2/metamac"
)

// provisionedHeader is a header as first boot makes it (hmac-sha256), with
// an authenticated version-2 token at step complete.
func provisionedHeader(t *testing.T) (*luks2.Header, *integrity.Superblock, []byte, *provisionToken) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "vol"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.Truncate(20 << 20)
	h, vk, err := luks2.Format(f, 20<<20, []byte("recovery"), luks2.FormatOptions{
		Integrity: "hmac-sha256", PBKDF: luks2.PBKDF{Type: "pbkdf2", Hash: "sha512", Iterations: 1000},
	})
	if err != nil {
		t.Fatal(err)
	}
	sb := &integrity.Superblock{Version: 5, IntegrityTagSize: 32, JournalSections: 4, ProvidedDataSectors: 8000, Log2SectorsPerBlock: 3}
	pt := &provisionToken{Step: StepComplete, RW: RWOverlay, Settings: &Settings{Anchor: "tpm", PCRs: []int{7}, TEE: "none"}}
	if err := authenticate(pt, h, sb, vk); err != nil {
		t.Fatal(err)
	}
	if err := setProvisionToken(h, pt); err != nil {
		t.Fatal(err)
	}
	return h, sb, vk, pt
}

// reparse reads pt back from the header's JSON, as a boot would.
func reparse(t *testing.T, h *luks2.Header) *provisionToken {
	t.Helper()
	pt, _, err := findProvisionToken(h)
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

// TestVerifyMetadata: each rewrite of the host is refused with the error
// that names it; the untouched header verifies.
func TestVerifyMetadata(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(h *luks2.Header, sb *integrity.Superblock, pt *provisionToken)
		wantErr error
		wantMsg string
	}{
		{"untouched", func(*luks2.Header, *integrity.Superblock, *provisionToken) {}, nil, ""},
		{"cipher-null", func(h *luks2.Header, _ *integrity.Superblock, _ *provisionToken) {
			h.Metadata.Segments[0].Encryption, h.Metadata.Segments[0].Integrity = "cipher_null-ecb", nil
		}, metamac.ErrChanged, `segment 0 encryption is "cipher_null-ecb", provisioned "aes-xts-plain64"`},
		{"iv-tweak", func(h *luks2.Header, _ *integrity.Superblock, _ *provisionToken) { h.Metadata.Segments[0].IVTweak = 8 },
			metamac.ErrChanged, "iv_tweak"},
		{"superblock", func(_ *luks2.Header, sb *integrity.Superblock, _ *provisionToken) { sb.JournalSections = 0 },
			metamac.ErrChanged, "journal_sections"},
		{"step-rewound", func(_ *luks2.Header, _ *integrity.Superblock, pt *provisionToken) { pt.Step = StepFormatted },
			ErrMetadataTampered, ""},
		{"anchor-dropped", func(_ *luks2.Header, _ *integrity.Superblock, pt *provisionToken) { pt.Settings.PCRs = []int{} },
			ErrMetadataTampered, ""},
		{"record-edited-with-header", func(h *luks2.Header, _ *integrity.Superblock, pt *provisionToken) {
			h.Metadata.Segments[0].Offset += 4096
			pt.Metadata["segments.0.offset"] = "16781312"
		}, ErrMetadataTampered, ""},
		{"clone-record-added", func(_ *luks2.Header, _ *integrity.Superblock, pt *provisionToken) {
			pt.Clone = &cloneRecord{RootHash: rh, SourceSectors: 32768, MetadataSectors: 8192, RegionSectors: 128, Hydrated: true}
		}, ErrMetadataTampered, ""},
		{"mac-stripped", func(_ *luks2.Header, _ *integrity.Superblock, pt *provisionToken) { pt.MAC = nil },
			ErrMetadataTampered, "missing"},
		{"downgraded-to-v1", func(_ *luks2.Header, _ *integrity.Superblock, pt *provisionToken) {
			pt.Version, pt.MAC, pt.Settings, pt.Metadata = 1, nil, nil, nil
		}, ErrUnauthenticated, "version 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, sb, vk, pt := provisionedHeader(t)
			tc.mutate(h, sb, pt)
			raw, _ := json.Marshal(pt)
			for id, tok := range h.Metadata.Tokens {
				if strings.Contains(string(tok), TokenType) {
					h.Metadata.Tokens[id] = raw
				}
			}
			err := verifyMetadata(reparse(t, h), h, func() (*integrity.Superblock, error) { return sb, nil }, vk)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("untouched volume refused: %v", err)
			case tc.wantErr == nil:
			case !errors.Is(err, tc.wantErr):
				t.Fatalf("verifyMetadata = %v, want %v", err, tc.wantErr)
			case !strings.Contains(err.Error(), tc.wantMsg):
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
		})
	}
	h, sb, vk, pt := provisionedHeader(t)
	readSB := func() (*integrity.Superblock, error) { return sb, nil }
	if err := verifyMetadata(pt, h, readSB, make([]byte, 96)); !errors.Is(err, ErrMetadataTampered) {
		t.Errorf("another volume key: %v, want ErrMetadataTampered", err)
	}
	if err := verifyMetadata(pt, h, nil, vk); err == nil {
		t.Error("a missing superblock accepted")
	}
	// The offset moved: named as such, before the superblock (which is not
	// at the new offset) is read.
	h.Metadata.Segments[0].Offset += 1 << 20
	failing := func() (*integrity.Superblock, error) { return nil, errors.New("no superblock there") }
	if err := verifyMetadata(pt, h, failing, vk); !errors.Is(err, metamac.ErrChanged) || !strings.Contains(err.Error(), "offset") {
		t.Errorf("offset moved: %v, want the offset named", err)
	}
}

func TestCheckFloor(t *testing.T) {
	cfg := DefaultConfig()
	tests := []struct {
		name   string
		mutate func(h *luks2.Header)
		want   string
	}{
		{"provisioned", func(*luks2.Header) {}, ""},
		{"cipher-null", func(h *luks2.Header) {
			h.Metadata.Segments[0].Encryption, h.Metadata.Segments[0].Integrity = "cipher_null-ecb", nil
		}, `segment 0 encryption is "cipher_null-ecb"`},
		{"integrity-stripped", func(h *luks2.Header) { h.Metadata.Segments[0].Integrity = nil }, "no integrity protection"},
		{"integrity-none", func(h *luks2.Header) { h.Metadata.Segments[0].Integrity.Type = "none" }, "no integrity protection"},
		{"null-iv", func(h *luks2.Header) { h.Metadata.Segments[0].Encryption = "aes-xts-null" }, `"aes-xts-null"`},
		{"ecb", func(h *luks2.Header) { h.Metadata.Segments[0].Encryption = "aes-ecb" }, `"aes-ecb"`},
		{"other-cipher", func(h *luks2.Header) { h.Metadata.Segments[0].Encryption = "aes-cbc-essiv:sha256" }, "the boot configuration says aes-xts-plain64"},
		{"other-integrity", func(h *luks2.Header) { h.Metadata.Segments[0].Integrity.Type = "hmac(sha1)" }, "with hmac(sha256)"},
		{"two-segments", func(h *luks2.Header) { s := *h.Metadata.Segments[0]; h.Metadata.Segments[1] = &s }, "exactly one segment"},
		{"keyslot-null", func(h *luks2.Header) { h.Metadata.Keyslots[0].Area.Encryption = "cipher_null-ecb" }, `keyslot 0 area encryption is "cipher_null-ecb"`},
		{"keyslot-ecb", func(h *luks2.Header) { h.Metadata.Keyslots[0].Area.Encryption = "aes-ecb" }, "keyslot 0 area"},
		{"key-size", func(h *luks2.Header) { h.Metadata.Keyslots[0].KeySize = 32 }, "32-byte key"},
		{"iv-tweak", func(h *luks2.Header) { h.Metadata.Segments[0].IVTweak = 8 }, "iv_tweak is 8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _, _, _ := provisionedHeader(t)
			tc.mutate(h)
			err := checkFloor(h, &cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("provisioned volume below the floor: %v", err)
			case tc.want == "":
			case !errors.Is(err, ErrBelowFloor):
				t.Fatalf("checkFloor = %v, want ErrBelowFloor", err)
			case !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	aead := cfg
	aead.Integrity = "aead"
	h, _, _, _ := provisionedHeader(t)
	if err := checkFloor(h, &aead); !errors.Is(err, ErrBelowFloor) {
		t.Errorf("hmac volume under an aead configuration: %v", err)
	}
}

func TestCheckSettings(t *testing.T) {
	broker := Settings{Anchor: "tpm+broker", Broker: "https://b:8443", BrokerCA: "aa", PCRs: []int{7}, TEE: "none"}
	tpmOnly := Settings{Anchor: "tpm", PCRs: []int{7}, TEE: "none"}
	tests := []struct {
		name      string
		prov, now Settings
		want      *Settings // nil: refused
		msg       string
	}{
		{"same", broker, broker, &broker, ""},
		{"broker-dropped", broker, tpmOnly, nil, "roll-back anchor tpm+broker, this boot asks for tpm"},
		{"tpm-dropped", broker, Settings{Anchor: "broker", Broker: "https://b:8443", BrokerCA: "aa", PCRs: []int{7}, TEE: "none"}, nil, "asks for broker"},
		{"other-broker", broker, Settings{Anchor: "tpm+broker", Broker: "https://evil:8443", BrokerCA: "aa", PCRs: []int{7}, TEE: "none"}, nil, "evil"},
		{"other-ca", broker, Settings{Anchor: "tpm+broker", Broker: "https://b:8443", BrokerCA: "bb", PCRs: []int{7}, TEE: "none"}, nil, "CA"},
		{"fewer-pcrs", tpmOnly, Settings{Anchor: "tpm", PCRs: []int{}, TEE: "none"}, nil, "sealed to PCRs [7]"},
		{"tee-dropped", Settings{Anchor: "tpm", PCRs: []int{7}, TEE: "sev-snp"}, tpmOnly, nil, "TEE evidence sev-snp"},
		{"broker-joins", tpmOnly, broker, &broker, ""},
		{"more-pcrs", tpmOnly, Settings{Anchor: "tpm", PCRs: []int{7, 11}, TEE: "none"}, &tpmOnly, ""},
		{"tee-appears", tpmOnly, Settings{Anchor: "tpm", PCRs: []int{7}, TEE: "tdx"}, &Settings{Anchor: "tpm", PCRs: []int{7}, TEE: "tdx"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := checkSettings(&tc.prov, &tc.now)
			if tc.want == nil {
				if !errors.Is(err, ErrDowngrade) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("checkSettings = %v, want ErrDowngrade saying %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("recorded settings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCanonicalIgnoresLayout: the MAC input does not depend on how the
// host lays out the token's JSON (key order, spaces, unknown fields).
func TestCanonicalIgnoresLayout(t *testing.T) {
	h, _, _, pt := provisionedHeader(t)
	want, err := pt.canonical()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	raw, _ := json.Marshal(pt)
	json.Unmarshal(raw, &m)
	m["extra"] = "ignored"
	relaid, _ := json.MarshalIndent(m, "", "   ")
	var back provisionToken
	if err := json.Unmarshal(relaid, &back); err != nil {
		t.Fatal(err)
	}
	got, _ := back.canonical()
	if string(got) != string(want) {
		t.Errorf("canonical form changed with the layout:\n%s\n%s", want, got)
	}
	_ = h
}

func FuzzProvisionToken(f *testing.F) {
	f.Add([]byte(`{"type":"confidisk-provision","keyslots":[],"version":2,"step":"complete","recovery_keyslot":-1,"rw":"overlay",` +
		`"settings":{"anchor":"tpm","pcrs":[7],"tee":"none"},"metadata":{"uuid":"x"},"mac":"AAAA"}`))
	f.Add([]byte(`{"type":"confidisk-provision","keyslots":[],"version":1,"step":"sealed","recovery_keyslot":0,"rw":"copy"}`))
	f.Add([]byte(`{"type":"confidisk-provision","version":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h := &luks2.Header{UUID: "u", Metadata: &luks2.Metadata{Tokens: map[int]json.RawMessage{0: b}}}
		pt, _, err := findProvisionToken(h)
		if err != nil {
			return
		}
		if pt.Step.index() < 0 || (pt.Version != 1 && pt.Version != tokenVersion) {
			t.Fatalf("accepted token with step %q version %d", pt.Step, pt.Version)
		}
		if _, err := pt.canonical(); err != nil {
			t.Fatalf("accepted token has no canonical form: %v", err)
		}
		// Without the volume key nothing verifies.
		if err := verifyMetadata(pt, h, nil, make([]byte, 64)); err == nil {
			t.Fatal("a fuzzed token verified")
		}
	})
}
