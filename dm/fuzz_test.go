package dm

import (
	"encoding/binary"
	"testing"
)

// FuzzParseTargets feeds arbitrary DM_TABLE_STATUS replies to the parser:
// hostile data_start, data_size, target_count and next values must give an
// error, never a panic or an endless loop, and every target returned must
// come from inside the buffer.
func FuzzParseTargets(f *testing.F) {
	le := binary.LittleEndian
	f.Add(buildReply(le, 2, []replySpec{{0, 8, "linear", "a 0", 48}, {8, 8, "zero", "", 0}}, headerSize+96))
	f.Add(buildReply(le, 1, []replySpec{{0, 8, "crypt", "aes-xts-plain64 - 0 7:0 0", 0}}, headerSize+80))
	f.Add(make([]byte, headerSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := parseTargets(b, le)
		if err != nil {
			return
		}
		for _, tg := range ts {
			if len(tg.Params) >= len(b) || len(tg.Type) > typeNameLen {
				t.Fatalf("target %+v larger than its %d-byte buffer", tg, len(b))
			}
		}
		if len(ts) > len(b)/specSize {
			t.Fatalf("%d targets from %d bytes", len(ts), len(b))
		}
	})
}

// FuzzParseNameList does the same for DM_LIST_DEVICES replies.
func FuzzParseNameList(f *testing.F) {
	le := binary.LittleEndian
	f.Add(buildNameList(le, []nameRec{{encodeDev(253, 0), "root", "CRYPT-VERITY-x", nameListHasUUID}, {encodeDev(253, 1), "b", "", 2}}), true)
	f.Add(make([]byte, headerSize+16), false)
	f.Fuzz(func(t *testing.T, b []byte, withFlags bool) {
		ds, err := parseNameList(b, le, withFlags)
		if err != nil {
			return
		}
		if len(ds) > len(b)/(nameListOffName+1) {
			t.Fatalf("%d devices from %d bytes", len(ds), len(b))
		}
	})
}
