package luks2

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestWriteRefusesWhatCryptsetupRefuses: every write goes through the same
// validation as a read, so a header change that breaks a cryptsetup rule is
// refused before anything is written; the same JSON, forced onto the disk
// with valid checksums, is refused by cryptsetup (the oracle).
func TestWriteRefusesWhatCryptsetupRefuses(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(m *Metadata)
		wantErr string
	}{
		{"keyslot-without-digest", func(m *Metadata) { m.Digests[0].Keyslots = []string{} },
			"keyslot 0: referenced by 0 digests"},
		{"keyslot-in-two-digests", func(m *Metadata) { d := *m.Digests[0]; m.Digests[1] = &d },
			"keyslot 0: referenced by 2 digests"},
		{"token-missing-keyslot", func(m *Metadata) { m.Tokens[1] = json.RawMessage(`{"type":"x","keyslots":["9"]}`) },
			`token 1: field "keyslots"`},
		{"token-empty-type", func(m *Metadata) { m.Tokens[1] = json.RawMessage(`{"type":"","keyslots":[]}`) },
			`token 1: field "type"`},
		{"unknown-keyslot-without-area", func(m *Metadata) {
			m.Keyslots[1] = &Keyslot{Type: "foo", Raw: rawValue(`{"type":"foo","key_size":1}`)}
		}, `keyslot 1: field "area"`},
		{"unknown-segment-without-size", func(m *Metadata) {
			m.Segments[1] = &Segment{Type: "foo", Raw: rawValue(`{"type":"foo","offset":"2097152"}`)}
		}, `segment 1: field "size"`},
		{"crypt-segment-without-digest", func(m *Metadata) {
			s := *m.Segments[0]
			m.Segments[0].Size = SegmentSize{Bytes: 1 << 20}
			s.Offset = 2 << 20
			m.Segments[1] = &s
		}, "segment 1: no digest covers the crypt segment"},
		{"two-reencrypt-requirements", func(m *Metadata) {
			m.Config.Requirements = json.RawMessage(`{"mandatory":["online-reencrypt-v2","online-reencrypt-v3"]}`)
		}, `config requirements: field "mandatory"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dev := baseImage(t, DefaultHdrSize)
			h, _, err := Read(dev)
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(h.Metadata)
			before := bytes.Clone(dev)
			if err := h.Write(syncer(dev)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Write: %v, want an error with %q", err, tc.wantErr)
			}
			if !bytes.Equal(before, dev) {
				t.Error("the refused header was written anyway")
			}
			js, err := h.Metadata.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			putJSONArea(t, dev, 0, js)
			putJSONArea(t, dev, DefaultHdrSize, js)
			if ok, _ := cryptsetupAccepts(t, dev); ok {
				t.Error("cryptsetup accepts the header confidisk refuses to write")
			}
		})
	}
}
