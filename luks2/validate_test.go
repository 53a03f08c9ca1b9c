package luks2

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/confidisk/confidisk/internal/testutil"
)

// mangleOpts builds the valid header every mangled one starts from: one
// pbkdf2 keyslot, one token, a 512 KiB keyslots area.
func mangleOpts(hdrSize uint64) FormatOptions {
	return FormatOptions{
		PBKDF: PBKDF{Type: "pbkdf2", Iterations: 1000}, HdrSize: hdrSize, KeyslotsSize: 512 << 10,
		Tokens: []json.RawMessage{json.RawMessage(`{"type":"confidisk-test","keyslots":["0"]}`)},
	}
}

var baseImages sync.Map // hdrSize → memDev

// baseImage formats (once per metadata size) a small valid volume in memory.
func baseImage(t *testing.T, hdrSize uint64) memDev {
	t.Helper()
	if v, ok := baseImages.Load(hdrSize); ok {
		return bytes.Clone(v.(memDev))
	}
	o := mangleOpts(hdrSize)
	dataOff := (2*hdrSize + o.KeyslotsSize + (1<<20 - 1)) / (1 << 20) * (1 << 20)
	dev := make(memDev, dataOff+1<<20)
	if _, _, err := Format(dev, uint64(len(dev)), []byte("pw"), o); err != nil {
		t.Fatal(err)
	}
	baseImages.Store(hdrSize, dev)
	return bytes.Clone(dev)
}

// jsonAreaOf returns a copy of the JSON area of the header copy at off.
func jsonAreaOf(t *testing.T, dev memDev, off uint64) []byte {
	t.Helper()
	h, err := ParseBinHeader(dev[off:])
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(dev[off+BinHeaderSize : off+h.HdrSize])
}

// putJSONArea replaces the JSON area of the header copy at off and
// recomputes that copy's checksum, so that only the JSON rules can refuse it.
// area is cut or zero-padded to the area's size.
func putJSONArea(t *testing.T, dev memDev, off uint64, area []byte) {
	t.Helper()
	h, err := ParseBinHeader(dev[off:])
	if err != nil {
		t.Fatal(err)
	}
	full := make([]byte, h.HdrSize-BinHeaderSize)
	copy(full, area)
	if h.Checksum, err = h.checksum(full); err != nil {
		t.Fatal(err)
	}
	bin, err := h.marshal(false)
	if err != nil {
		t.Fatal(err)
	}
	copy(dev[off:], bin)
	copy(dev[off+BinHeaderSize:], full)
}

// mutation changes a header's JSON area.
type mutation func(t *testing.T, area []byte) []byte

// text edits the JSON text (the area up to its first NUL).
func text(f func(s string) string) mutation {
	return func(t *testing.T, area []byte) []byte {
		s, _, _ := strings.Cut(string(area), "\x00")
		return []byte(f(s))
	}
}

// obj edits the decoded JSON object (numbers kept as written) and writes
// it back compactly.
func obj(f func(h map[string]any)) mutation {
	return func(t *testing.T, area []byte) []byte {
		s, _, _ := strings.Cut(string(area), "\x00")
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var h map[string]any
		if err := dec.Decode(&h); err != nil {
			t.Fatal(err)
		}
		f(h)
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(h); err != nil {
			t.Fatal(err)
		}
		return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	}
}

// at returns the object at a path of keys ("keyslots", "0", "area").
func at(h map[string]any, path ...string) map[string]any {
	for _, k := range path {
		h = h[k].(map[string]any)
	}
	return h
}

// set sets (or with a nil value deletes) the field at path.
func set(path string, v any) mutation {
	p := strings.Split(path, ".")
	return obj(func(h map[string]any) {
		o := at(h, p[:len(p)-1]...)
		if v == nil {
			delete(o, p[len(p)-1])
			return
		}
		o[p[len(p)-1]] = v
	})
}

// raw is a JSON value written as is.
func raw(s string) json.RawMessage { return json.RawMessage(s) }

// deepCopy copies a decoded JSON value.
func deepCopy(v any) any {
	b, _ := json.Marshal(v)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	_ = dec.Decode(&out)
	return out
}

// addKeyslot1 copies keyslot 0 to keyslot 1 with its area at offset (and
// digest 0 covering it), so that rules between keyslots can be broken.
func addKeyslot1(h map[string]any, offset string) {
	ks := deepCopy(at(h, "keyslots", "0")).(map[string]any)
	ks["area"].(map[string]any)["offset"] = offset
	at(h, "keyslots")["1"] = ks
	d := at(h, "digests", "0")
	d["keyslots"] = append(d["keyslots"].([]any), "1")
}

// cryptsetupAccepts reports whether `cryptsetup luksDump` loads the image
// and, if not, its debug output.
func cryptsetupAccepts(t *testing.T, dev memDev) (bool, string) {
	t.Helper()
	cs := testutil.LookPath(t, "cryptsetup", "cryptsetup-bin")
	path := filepath.Join(t.TempDir(), "mangled.img")
	if err := os.WriteFile(path, dev, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(cs, "luksDump", "--debug", path).CombinedOutput()
	if err != nil {
		return false, debugLines(string(out))
	}
	return true, ""
}

// debugLines returns the lines of cryptsetup's debug output that say why
// it refused the primary header: those between its checksum check and the
// read of the secondary.
func debugLines(out string) string {
	_, after, ok := strings.Cut(out, "(in-memory)\n")
	if !ok {
		return out
	}
	before, _, _ := strings.Cut(after, "Trying to read secondary")
	return strings.TrimSpace(before)
}

// mangledRow is one rule of the table: a valid header with mut applied.
type mangledRow struct {
	name string
	mut  mutation
	// hdrSize is the metadata size (default 16 KiB).
	hdrSize uint64
	// primaryOnly mangles only the primary copy (the secondary stays valid).
	primaryOnly bool
	// wantErr is what confidisk's error must contain; "" means both
	// confidisk and cryptsetup accept the header.
	wantErr string
}

// build returns the mangled image of a row.
func (r mangledRow) build(t *testing.T) memDev {
	t.Helper()
	hs := r.hdrSize
	if hs == 0 {
		hs = DefaultHdrSize
	}
	dev := baseImage(t, hs)
	area := r.mut(t, jsonAreaOf(t, dev, 0))
	putJSONArea(t, dev, 0, area)
	if !r.primaryOnly {
		putJSONArea(t, dev, hs, area)
	}
	return dev
}

// TestMangledHeaders is the table of LUKS2 JSON rules: each header has one
// rule broken (valid checksums, so only the rule can refuse it) and confidisk
// must refuse it with an error naming the object and field, and cryptsetup
// 2.6 (the oracle) must refuse it too; or a change both must accept.
func TestMangledHeaders(t *testing.T) {
	for _, r := range mangledRows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			dev := r.build(t)
			_, _, err := Read(memDev(bytes.Clone(dev)))
			checkRefusal(t, err, r.wantErr)
			ok, why := cryptsetupAccepts(t, dev)
			if want := r.wantErr == ""; ok != want {
				t.Errorf("cryptsetup luksDump accepts: %v, want %v\n%s", ok, want, why)
			}
		})
	}
}

// TestStricterThanCryptsetup pins the headers cryptsetup accepts and
// confidisk refuses on purpose (see stricterRows), so that a change on
// either side shows.
func TestStricterThanCryptsetup(t *testing.T) {
	for _, r := range stricterRows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			dev := r.build(t)
			_, _, err := Read(memDev(bytes.Clone(dev)))
			checkRefusal(t, err, r.wantErr)
			if ok, _ := cryptsetupAccepts(t, dev); !ok {
				t.Error("cryptsetup refuses it now: move the row to mangledRows")
			}
		})
	}
}

// checkRefusal checks Read's error against a row's wantErr.
func checkRefusal(t *testing.T, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("confidisk refuses a header cryptsetup accepts: %v", err)
	case wantErr != "" && err == nil:
		t.Errorf("confidisk accepts a header cryptsetup refuses, want an error with %q", wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Errorf("error %q does not say %q", err, wantErr)
	}
}

// TestWriteFuzzSeeds writes the table's JSON areas (16 KiB headers, trailing
// NULs cut: FuzzParseMetadata pads them back) into FuzzParseMetadata's seed
// corpus, for rows that have no seed yet (salts differ on every run), when
// LUKS2_WRITE_SEEDS=1; without it, it checks that every row has its seed.
func TestWriteFuzzSeeds(t *testing.T) {
	write := os.Getenv("LUKS2_WRITE_SEEDS") != ""
	dir := filepath.Join("testdata", "fuzz", "FuzzParseMetadata")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, r := range append(mangledRows, stricterRows...) {
		if r.hdrSize != 0 && r.hdrSize != DefaultHdrSize {
			continue
		}
		name := filepath.Join(dir, strings.NewReplacer("/", "-", "^", "pow").Replace(r.name))
		if _, err := os.Stat(name); err == nil {
			continue
		}
		if !write {
			t.Errorf("row %q has no fuzz seed %s: run go test ./luks2 -run TestWriteFuzzSeeds with LUKS2_WRITE_SEEDS=1", r.name, name)
			continue
		}
		area := bytes.TrimRight(jsonAreaOf(t, r.build(t), 0), "\x00")
		seed := "go test fuzz v1\n[]byte(" + strconv.Quote(string(area)) + ")\n"
		if err := os.WriteFile(name, []byte(seed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
