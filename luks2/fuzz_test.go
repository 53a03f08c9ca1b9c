package luks2

import (
	"bytes"
	"io"
	"testing"
)

// memDev is a fixed-size in-memory device.
type memDev []byte

func (m memDev) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m memDev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, io.ErrShortWrite
	}
	return copy(m[off:], p), nil
}

// seedHeader formats a small header in memory and returns its first 64 KiB.
func seedHeader(t testing.TB) []byte {
	dev := make(memDev, 2<<20)
	_, _, err := Format(dev, uint64(len(dev)), []byte("seed"), FormatOptions{
		PBKDF: PBKDF{Type: "pbkdf2", Iterations: 1000}, KeyslotsSize: 512 << 10, DataOffset: 1 << 20, Integrity: "hmac-sha256",
	})
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(dev[:2*DefaultHdrSize])
}

// FuzzParseMetadata feeds hostile JSON to the metadata parser: no panic,
// and whatever it accepts must pass the checks before a write and survive
// a marshal/parse round trip.
func FuzzParseMetadata(f *testing.F) {
	seed := seedHeader(f)
	js := seed[BinHeaderSize:DefaultHdrSize]
	f.Add(bytes.TrimRight(js, "\x00"))
	f.Add([]byte(`{"keyslots":{},"tokens":{},"segments":{"0":{"type":"crypt","offset":"32768","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}},"digests":{},"config":{"json_size":"12288","keyslots_size":"0"}}`))
	f.Add([]byte(`{"keyslots":{"99":{}},"tokens":{},"segments":{},"digests":{},"config":{}}`))
	f.Add([]byte(`{"keyslots":{"0":{"type":"luks2","key_size":64,"af":{"type":"luks1","stripes":4000,"hash":"sha256"},"area":{"type":"raw","offset":"18446744073709551615","size":"4096","encryption":"aes-xts-plain64","key_size":64},"kdf":{"type":"pbkdf2","hash":"sha256","iterations":1,"salt":""}}},"tokens":{},"segments":{},"digests":{},"config":{"json_size":"12288","keyslots_size":"16744448"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMetadata(padArea(b), DefaultHdrSize)
		if err != nil {
			return
		}
		if err := m.Validate(DefaultHdrSize); err != nil {
			t.Fatalf("accepted metadata cannot be written back: %v", err)
		}
		out, err := m.MarshalJSON()
		if err != nil {
			t.Fatalf("accepted metadata does not marshal: %v", err)
		}
		if _, err := ParseMetadata(padArea(out), DefaultHdrSize); err != nil {
			t.Fatalf("marshalled metadata does not parse: %v\n%s", err, out)
		}
	})
}

// padArea NUL-pads JSON text to a JSON area of the default header size
// (longer text is left as it is, and refused for it).
func padArea(b []byte) []byte {
	if len(b) >= DefaultHdrSize-BinHeaderSize {
		return b
	}
	area := make([]byte, DefaultHdrSize-BinHeaderSize)
	copy(area, b)
	return area
}

// FuzzRead reads a whole hostile device (both header copies). It must not
// panic, and must not allocate more than the format allows.
func FuzzRead(f *testing.F) {
	seed := seedHeader(f)
	f.Add(seed)
	bad := bytes.Clone(seed)
	bad[8], bad[9] = 0xff, 0xff // absurd hdr_size
	f.Add(bad)
	f.Add(seed[:5000])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, _, err := Read(memDev(b))
		if err != nil {
			return
		}
		if _, err := h.DumpJSON(); err != nil {
			t.Fatalf("accepted header does not dump: %v", err)
		}
		h.Dump(io.Discard)
	})
}
