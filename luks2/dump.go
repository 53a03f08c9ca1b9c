package luks2

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// DumpJSON returns the JSON metadata the way `cryptsetup luksDump
// --dump-json-metadata` prints it (json-c's pretty format, no final newline).
func (h *Header) DumpJSON() ([]byte, error) {
	js, err := h.Metadata.MarshalJSON()
	if err != nil {
		return nil, err
	}
	pretty, err := indentLikeJSONC(js)
	if err != nil {
		return nil, err
	}
	return pretty, nil
}

// Dump writes a human-readable description of the header, in the layout of
// `cryptsetup luksDump` (lib/luks2/luks2_json_metadata.c LUKS2_hdr_dump).
func (h *Header) Dump(w io.Writer) {
	m := h.Metadata
	orNone := func(s, none string) string {
		if s == "" {
			return none
		}
		return s
	}
	fmt.Fprintf(w, "LUKS header information\n")
	fmt.Fprintf(w, "Version:       \t2\n")
	fmt.Fprintf(w, "Epoch:         \t%d\n", h.SeqID)
	fmt.Fprintf(w, "Metadata area: \t%d [bytes]\n", h.HdrSize)
	fmt.Fprintf(w, "Keyslots area: \t%d [bytes]\n", m.Config.KeyslotsSize)
	fmt.Fprintf(w, "UUID:          \t%s\n", h.UUID)
	fmt.Fprintf(w, "Label:         \t%s\n", orNone(h.Label, "(no label)"))
	fmt.Fprintf(w, "Subsystem:     \t%s\n", orNone(h.Subsystem, "(no subsystem)"))
	fmt.Fprintf(w, "Flags:       \t%s\n", orNone(strings.Join(m.Config.Flags, " "), "(no flags)"))
	fmt.Fprintf(w, "\nData segments:\n")
	for _, id := range sortedIDs(m.Segments) {
		s := m.Segments[id]
		fmt.Fprintf(w, "  %d: %s\n", id, s.Type)
		if s.Raw != nil {
			continue
		}
		fmt.Fprintf(w, "\toffset: %d [bytes]\n", s.Offset)
		if s.Size.Dynamic {
			fmt.Fprintf(w, "\tlength: (whole device)\n")
		} else {
			fmt.Fprintf(w, "\tlength: %d [bytes]\n", s.Size.Bytes)
		}
		fmt.Fprintf(w, "\tcipher: %s\n", s.Encryption)
		fmt.Fprintf(w, "\tsector: %d [bytes]\n", s.SectorSize)
		if s.Integrity != nil {
			fmt.Fprintf(w, "\tintegrity: %s\n", s.Integrity.Type)
		}
		if len(s.Flags) > 0 {
			fmt.Fprintf(w, "\tflags : %s\n", strings.Join(s.Flags, " "))
		}
	}
	fmt.Fprintf(w, "\nKeyslots:\n")
	for _, id := range sortedIDs(m.Keyslots) {
		k := m.Keyslots[id]
		fmt.Fprintf(w, "  %d: %s\n", id, k.Type)
		if k.Raw != nil {
			continue
		}
		fmt.Fprintf(w, "\tKey:        %d bits\n", k.KeySize*8)
		fmt.Fprintf(w, "\tPriority:   %s\n", []string{"ignored", "normal", "preferred"}[priority(k)])
		fmt.Fprintf(w, "\tCipher:     %s\n", k.Area.Encryption)
		fmt.Fprintf(w, "\tCipher key: %d bits\n", k.Area.KeySize*8)
		fmt.Fprintf(w, "\tPBKDF:      %s\n", k.KDF.Type)
		if k.KDF.Type == "pbkdf2" {
			fmt.Fprintf(w, "\tHash:       %s\n", k.KDF.Hash)
			fmt.Fprintf(w, "\tIterations: %d\n", k.KDF.Iterations)
		} else {
			fmt.Fprintf(w, "\tTime cost:  %d\n", k.KDF.Time)
			fmt.Fprintf(w, "\tMemory:     %d\n", k.KDF.Memory)
			fmt.Fprintf(w, "\tThreads:    %d\n", k.KDF.CPUs)
		}
		dumpHex(w, "Salt:       ", k.KDF.Salt)
		fmt.Fprintf(w, "\tAF stripes: %d\n", k.AF.Stripes)
		fmt.Fprintf(w, "\tAF hash:    %s\n", k.AF.Hash)
		fmt.Fprintf(w, "\tArea offset:%d [bytes]\n", k.Area.Offset)
		fmt.Fprintf(w, "\tArea length:%d [bytes]\n", k.Area.Size)
		if did, _, err := m.digestFor(id); err == nil {
			fmt.Fprintf(w, "\tDigest ID:  %d\n", did)
		}
	}
	fmt.Fprintf(w, "Tokens:\n")
	for _, id := range sortedIDs(m.Tokens) {
		fmt.Fprintf(w, "  %d: %s\n", id, tokenType(m.Tokens[id]))
		var th TokenHeader
		_ = jsonUnmarshal(m.Tokens[id], &th)
		for _, k := range th.Keyslots {
			fmt.Fprintf(w, "\tKeyslot:    %s\n", k)
		}
	}
	fmt.Fprintf(w, "Digests:\n")
	for _, id := range sortedIDs(m.Digests) {
		d := m.Digests[id]
		fmt.Fprintf(w, "  %d: %s\n", id, d.Type)
		if d.Raw != nil {
			continue
		}
		fmt.Fprintf(w, "\tHash:       %s\n", d.Hash)
		fmt.Fprintf(w, "\tIterations: %d\n", d.Iterations)
		dumpHex(w, "Salt:       ", d.Salt)
		dumpHex(w, "Digest:     ", d.Digest)
	}
}

// dumpHex prints bytes as cryptsetup does: 16 per line, continuation lines
// indented under the first.
func dumpHex(w io.Writer, label string, b []byte) {
	for i := 0; i < len(b); i += 16 {
		prefix := strings.Repeat(" ", len(label))
		if i == 0 {
			prefix = label
		}
		var sb strings.Builder
		for _, c := range b[i:min(i+16, len(b))] {
			fmt.Fprintf(&sb, "%02x ", c)
		}
		fmt.Fprintf(w, "\t%s%s\n", prefix, sb.String())
	}
}

func sortedIDs[T any](m map[int]T) []int {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
