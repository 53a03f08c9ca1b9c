package dm

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// put writes src into dst at off; a helper for hand-built byte images.
func put(dst []byte, off int, src ...byte) { copy(dst[off:], src) }

func TestMarshalTableKnownBytes(t *testing.T) {
	h := header{Name: "vol", UUID: "CRYPT-1", Flags: flagReadOnly | flagSecureData}
	ts := []Target{
		{Start: 0, Length: 8, Type: "linear", Params: "/dev/a 0"}, // 40+9 -> 56
		{Start: 8, Length: 16, Type: "zero"},                      // 40+1 -> 48
	}
	got, err := marshalTable(binary.LittleEndian, h, ts)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 416)
	put(want, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)  // version 4.0.0
	put(want, 12, 0xa0, 0x01, 0, 0)                   // data_size 416
	put(want, 16, 0x38, 0x01, 0, 0)                   // data_start 312
	put(want, 20, 2, 0, 0, 0)                         // target_count
	put(want, 28, 0x01, 0x80, 0, 0)                   // flags READONLY|SECURE_DATA
	put(want, 48, 'v', 'o', 'l')                      // name
	put(want, 176, 'C', 'R', 'Y', 'P', 'T', '-', '1') // uuid
	// first dm_target_spec at 312
	put(want, 312+8, 8)                      // length 8
	put(want, 312+20, 56)                    // next: 56 bytes to the next spec
	put(want, 312+24, []byte("linear")...)   // target_type
	put(want, 312+40, []byte("/dev/a 0")...) // params, NUL and padding follow
	// second spec at 368
	put(want, 368, 8)                    // sector_start 8
	put(want, 368+8, 16)                 // length 16
	put(want, 368+20, 48)                // next
	put(want, 368+24, []byte("zero")...) // target_type; empty params
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DM_TABLE_LOAD buffer (-want +got):\n%s", diff)
	}

	be, err := marshalTable(binary.BigEndian, h, ts)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off  int
		want []byte
	}{
		{0, []byte{0, 0, 0, 4}},
		{12, []byte{0, 0, 0x01, 0xa0}},
		{16, []byte{0, 0, 0x01, 0x38}},
		{28, []byte{0, 0, 0x80, 0x01}},
		{312 + 8, []byte{0, 0, 0, 0, 0, 0, 0, 8}},
		{312 + 20, []byte{0, 0, 0, 56}},
	} {
		if diff := cmp.Diff(c.want, be[c.off:c.off+len(c.want)]); diff != "" {
			t.Errorf("big-endian bytes at %d (-want +got):\n%s", c.off, diff)
		}
	}
}

func TestMarshalTableAlignment(t *testing.T) {
	// Params lengths 0..16 give records of 48 or 56 (or 64) bytes; every
	// spec must start 8-aligned and next must point at the following one.
	var ts []Target
	var start uint64
	for n := 0; n <= 16; n++ {
		ts = append(ts, Target{Start: start, Length: 1, Type: "error", Params: strings.Repeat("p", n)})
		start++
	}
	b, err := marshalTable(binary.LittleEndian, header{Name: "a"}, ts)
	if err != nil {
		t.Fatal(err)
	}
	off := headerSize
	for i, tg := range ts {
		if off%8 != 0 {
			t.Fatalf("spec %d at unaligned offset %d", i, off)
		}
		next := int(binary.LittleEndian.Uint32(b[off+specOffNext:]))
		wantNext := (specSize + len(tg.Params) + 1 + 7) / 8 * 8
		if next != wantNext {
			t.Errorf("spec %d: next = %d, want %d", i, next, wantNext)
		}
		if p := cString(b[off+specSize:]); p != tg.Params {
			t.Errorf("spec %d: params %q, want %q", i, p, tg.Params)
		}
		off += next
	}
	if off != len(b) || int(binary.LittleEndian.Uint32(b[offDataSize:])) != len(b) {
		t.Errorf("records end at %d, buffer is %d bytes", off, len(b))
	}
}

func TestMarshalErrors(t *testing.T) {
	if _, err := marshalTable(binary.LittleEndian, header{Name: "a"}, nil); err == nil {
		t.Error("empty table: want an error")
	}
	if _, err := marshalTable(binary.LittleEndian, header{Name: "a"}, []Target{{Start: 0, Length: 1, Type: "linear", Params: "a\x00b"}}); err == nil {
		t.Error("NUL in params: want an error")
	}
	if _, err := marshalMessage(binary.LittleEndian, header{Name: "a"}, 0, ""); err == nil {
		t.Error("empty message: want an error")
	}
	for _, n := range []string{"", ".", "..", "a/b", strings.Repeat("n", 128)} {
		if checkName(n) == nil {
			t.Errorf("checkName(%q): want an error", n)
		}
	}
	if checkName(strings.Repeat("n", 127)) != nil {
		t.Error("checkName(127 bytes): want ok")
	}
	if checkUUID(strings.Repeat("u", 129)) == nil || checkUUID(strings.Repeat("u", 128)) != nil {
		t.Error("checkUUID limits wrong")
	}
}

func TestMarshalMessageKnownBytes(t *testing.T) {
	got, err := marshalMessage(binary.LittleEndian, header{Name: "c"}, 0x0102, "enable_hydration")
	if err != nil {
		t.Fatal(err)
	}
	// 8 (sector) + 16 + 1 (NUL) = 25 -> 32
	want := make([]byte, 312+32)
	put(want, 0, 4)
	put(want, 12, 0x58, 0x01) // data_size 344
	put(want, 16, 0x38, 0x01) // data_start 312
	put(want, 48, 'c')
	put(want, 312, 0x02, 0x01) // sector
	put(want, 320, []byte("enable_hydration")...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DM_TARGET_MSG buffer (-want +got):\n%s", diff)
	}
}

// replySpec is one target of a hand-built DM_TABLE_STATUS reply.
type replySpec struct {
	start, length uint64
	typ, params   string
	next          uint32 // from the start of the data area
}

// buildReply lays out a reply as drivers/md/dm-ioctl.c:retrieve_status
// does, at the offsets the specs' next fields give (the first at 0).
func buildReply(o binary.ByteOrder, count uint32, specs []replySpec, size int) []byte {
	b := make([]byte, size)
	o.PutUint32(b[offVersion:], 4)
	o.PutUint32(b[offVersion+4:], 48)
	o.PutUint32(b[offDataStart:], headerSize)
	o.PutUint32(b[offDataSize:], uint32(size))
	o.PutUint32(b[offTargetCount:], count)
	off := headerSize
	for _, s := range specs {
		o.PutUint64(b[off+specOffStart:], s.start)
		o.PutUint64(b[off+specOffLength:], s.length)
		o.PutUint32(b[off+specOffNext:], s.next)
		copy(b[off+specOffType:], s.typ)
		copy(b[off+specSize:], s.params)
		off = headerSize + int(s.next)
	}
	return b
}

func TestParseTargets(t *testing.T) {
	specs := []replySpec{
		{0, 2048, "linear", "7:0 0", 48},
		{2048, 4096, "crypt", "aes-xts-plain64 " + testKeyHex + " 0 7:1 0", 48 + 136}, // 40+89 -> 136
		{6144, 8, "verity", "V", 0},
	}
	want := []Target{
		{0, 2048, "linear", "7:0 0"},
		{2048, 4096, "crypt", "aes-xts-plain64 " + testKeyHex + " 0 7:1 0"},
		{6144, 8, "verity", "V"},
	}
	for _, o := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		b := buildReply(o, 3, specs, headerSize+48+136+48)
		got, err := parseTargets(b, o)
		if err != nil {
			t.Fatalf("%v: parseTargets: %v", o, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v: (-want +got):\n%s", o, diff)
		}
	}
	// data_size smaller than the buffer: only the data area counts.
	b := buildReply(binary.LittleEndian, 1, specs[:1], headerSize+4096)
	binary.LittleEndian.PutUint32(b[offDataSize:], headerSize+48)
	if got, err := parseTargets(b, binary.LittleEndian); err != nil || len(got) != 1 {
		t.Errorf("short data_size: got %v, %v", got, err)
	}
	// No targets.
	if got, err := parseTargets(buildReply(binary.LittleEndian, 0, nil, headerSize), binary.LittleEndian); err != nil || got != nil {
		t.Errorf("no targets: got %v, %v", got, err)
	}
}

func TestParseTargetsHostile(t *testing.T) {
	le := binary.LittleEndian
	good := func() []byte {
		return buildReply(le, 2, []replySpec{{0, 8, "linear", "a 0", 48}, {8, 8, "zero", "", 0}}, headerSize+96)
	}
	tests := map[string]struct {
		mod  func([]byte) []byte
		want string
	}{
		"short buffer":             {func(b []byte) []byte { return b[:100] }, "shorter than struct dm_ioctl"},
		"buffer full":              {func(b []byte) []byte { le.PutUint32(b[offFlags:], flagBufferFull); return b }, "DM_BUFFER_FULL_FLAG"},
		"data_size too large":      {func(b []byte) []byte { le.PutUint32(b[offDataSize:], 1<<31); return b }, "outside"},
		"data_start inside header": {func(b []byte) []byte { le.PutUint32(b[offDataStart:], 100); return b }, "outside"},
		"data_start past size":     {func(b []byte) []byte { le.PutUint32(b[offDataStart:], 500); return b }, "outside"},
		"next backwards":           {func(b []byte) []byte { le.PutUint32(b[headerSize+specOffNext:], 0); return b }, "does not move past"},
		"next into own params":     {func(b []byte) []byte { le.PutUint32(b[headerSize+specOffNext:], 41); return b }, "does not move past"},
		"next past end":            {func(b []byte) []byte { le.PutUint32(b[headerSize+specOffNext:], 0xfffffff0); return b }, "runs past"},
		"count too large":          {func(b []byte) []byte { le.PutUint32(b[offTargetCount:], 0xffffffff); return b }, "does not move past"},
		"count larger than records": {func(b []byte) []byte {
			le.PutUint32(b[offTargetCount:], 3)
			le.PutUint32(b[headerSize+48+specOffNext:], 96)
			return b
		}, "runs past"},
		"params without NUL": {func(b []byte) []byte {
			b = b[:headerSize+44]
			le.PutUint32(b[offDataSize:], uint32(len(b)))
			copy(b[headerSize+specSize:], "abcd")
			return b
		}, "not NUL-terminated"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseTargets(tc.mod(good()), le)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseTargets error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// nameRec is one dm_name_list record of a hand-built DM_LIST_DEVICES reply.
type nameRec struct {
	dev        uint64
	name, uuid string
	flags      uint32
}

// buildNameList lays records out as list_devices (drivers/md/dm-ioctl.c).
func buildNameList(o binary.ByteOrder, recs []nameRec) []byte {
	b := make([]byte, headerSize+4096)
	o.PutUint32(b[offDataStart:], headerSize)
	off := headerSize
	prev := -1
	for _, r := range recs {
		if prev >= 0 {
			o.PutUint32(b[prev+8:], uint32(off-prev))
		}
		o.PutUint64(b[off:], r.dev)
		copy(b[off+12:], r.name)
		p := off + alignUp(12+len(r.name)+1)
		o.PutUint32(b[p:], 7) // event_nr
		o.PutUint32(b[p+4:], r.flags)
		p += 8
		if r.flags&nameListHasUUID != 0 {
			copy(b[p:], r.uuid)
			p += alignUp(len(r.uuid) + 1)
		}
		prev, off = off, p
	}
	o.PutUint32(b[offDataSize:], uint32(off))
	return b
}

func TestParseNameList(t *testing.T) {
	le := binary.LittleEndian
	recs := []nameRec{
		{encodeDev(253, 0), "root", "CRYPT-VERITY-abc-root", nameListHasUUID},
		{encodeDev(253, 300), "state_dif", "", 2},
		{encodeDev(253, 1), "x", "CRYPT-LUKS2-1234-x", nameListHasUUID},
	}
	got, err := parseNameList(buildNameList(le, recs), le, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []Device{
		{Name: "root", UUID: "CRYPT-VERITY-abc-root", Major: 253, Minor: 0},
		{Name: "state_dif", Major: 253, Minor: 300},
		{Name: "x", UUID: "CRYPT-LUKS2-1234-x", Major: 253, Minor: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	got, err = parseNameList(buildNameList(le, recs), le, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		want[i].UUID = ""
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("without flags (-want +got):\n%s", diff)
	}

	empty := make([]byte, headerSize+64)
	le.PutUint32(empty[offDataStart:], headerSize)
	le.PutUint32(empty[offDataSize:], headerSize)
	if got, err := parseNameList(empty, le, true); err != nil || got != nil {
		t.Errorf("empty list: %v, %v", got, err)
	}

	bad := buildNameList(le, recs[:2])
	le.PutUint32(bad[headerSize+8:], 5) // next smaller than a record
	if _, err := parseNameList(bad, le, true); err == nil || !strings.Contains(err.Error(), "bad next") {
		t.Errorf("bad next: error = %v", err)
	}
}

func TestDevEncoding(t *testing.T) {
	tests := []struct {
		major, minor uint32
		dev          uint64
	}{
		{253, 0, 0xfd00},
		{7, 3, 0x0703},
		{253, 300, 0x10fd2c},
		{259, 1048575, 0xfff103ff},
	}
	for _, tc := range tests {
		if got := encodeDev(tc.major, tc.minor); got != tc.dev {
			t.Errorf("encodeDev(%d, %d) = %#x, want %#x", tc.major, tc.minor, got, tc.dev)
		}
		ma, mi := decodeDev(tc.dev)
		if ma != tc.major || mi != tc.minor {
			t.Errorf("decodeDev(%#x) = %d:%d, want %d:%d", tc.dev, ma, mi, tc.major, tc.minor)
		}
	}
}

func TestParseMessageReply(t *testing.T) {
	le := binary.LittleEndian
	b := make([]byte, headerSize+32)
	le.PutUint32(b[offDataStart:], headerSize)
	le.PutUint32(b[offDataSize:], headerSize+6)
	copy(b[headerSize:], "hello")
	if got, err := parseMessageReply(b, le); err != nil || got != "" {
		t.Errorf("without DM_DATA_OUT_FLAG: %q, %v", got, err)
	}
	le.PutUint32(b[offFlags:], flagDataOut)
	if got, err := parseMessageReply(b, le); err != nil || got != "hello" {
		t.Errorf("with DM_DATA_OUT_FLAG: %q, %v", got, err)
	}
	// What Linux 6.12 answered to dm-clone's enable_hydration.
	le.PutUint32(b[offDataSize:], headerSize-7)
	if _, err := parseMessageReply(b, le); err == nil {
		t.Error("DM_DATA_OUT_FLAG with data_size below data_start accepted")
	}
	le.PutUint32(b[offFlags:], 0)
	if got, err := parseMessageReply(b, le); err != nil || got != "" {
		t.Errorf("no reply, data_size below data_start: %q, %v", got, err)
	}
}
