package preencrypt

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/internal/faultdev"
	"github.com/confidisk/confidisk/luks2"
	"github.com/confidisk/confidisk/sectorcrypt"
)

const devSize = 12 << 20

// header formats a small LUKS2 header (1 MiB data offset) into a memory
// image and returns it with the header and the volume key.
func header(t *testing.T, integ string, sectorSize int) ([]byte, *luks2.Header, []byte) {
	t.Helper()
	return headerCipher(t, "", integ, sectorSize)
}

func headerCipher(t *testing.T, cipher, integ string, sectorSize int) ([]byte, *luks2.Header, []byte) {
	t.Helper()
	img := &memDev{b: make([]byte, devSize)}
	h, vk, err := luks2.Format(img, devSize, []byte("pass"), luks2.FormatOptions{
		Cipher: cipher, Integrity: integ, SectorSize: sectorSize,
		PBKDF:        luks2.PBKDF{Type: "pbkdf2", Iterations: 1000},
		KeyslotsSize: 1<<20 - 32<<10, DataOffset: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	return img.b, h, vk
}

type memDev struct{ b []byte }

func (m *memDev) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }
func (m *memDev) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m.b[off:]), nil }

func randData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestNewPlanRefusals(t *testing.T) {
	_, h, vk := header(t, "hmac-sha256", 4096)
	p, err := NewPlan(h, vk, devSize/512, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, hCBC, vkCBC := headerCipher(t, "aes-cbc-essiv:sha256", "hmac-sha256", 4096)
	_, hNone, vkNone := header(t, "", 4096)
	for _, tt := range []struct {
		name    string
		h       *luks2.Header
		vk      []byte
		data    int64
		wantErr string
	}{
		{"data larger than the volume", h, vk, p.ProvidedBytes() + 4096, "larger than the volume"},
		{"data not whole sectors", h, vk, 4096 + 512, "not a multiple of the 4096-byte sector size"},
		{"cbc", hCBC, vkCBC, 0, "not aes-cbc-essiv:sha256 with integrity hmac(sha256)"},
		{"no integrity", hNone, vkNone, 0, "has no integrity"},
		{"wrong key size", h, vk[:32], 0, "volume key of 32 bytes"},
	} {
		_, err := NewPlan(tt.h, tt.vk, devSize/512, tt.data)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.wantErr)
		}
	}
	if _, err := NewPlan(h, vk, devSize/512, p.ProvidedBytes()); err != nil {
		t.Errorf("data exactly the volume's size: %v", err)
	}
}

// TestWrite checks what Write leaves: the superblock the layout says, the
// empty journal, the data sealed where the layout puts it (and zeros sealed
// after it), a tag for every block.
func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		integ string
		s     int
	}{{"hmac-sha256", 512}, {"hmac-sha256", 4096}, {"hmac-sha512", 4096}, {"aead", 4096}, {"aead", 512}} {
		s := tc.s
		img, h, vk := header(t, tc.integ, s)
		data := randData(3<<20+s, uint64(s))
		p, err := NewPlan(h, vk, devSize/512, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		dev := &memDev{b: img}
		if err := p.Write(dev, bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
		l := p.Layout
		sb, err := integrity.ReadSuperblock(dev, int64(l.Offset)*512)
		if err != nil {
			t.Fatalf("%d: the superblock written does not read back: %v", s, err)
		}
		if sb.ProvidedDataSectors != l.Superblock.ProvidedDataSectors || sb.JournalSections != l.Superblock.JournalSections {
			t.Errorf("%d: superblock %+v, want %+v", s, sb, l.Superblock)
		}
		section := int64(l.JournalSectionSectors) * 512
		for i := range sb.JournalSections {
			off := int64(l.Offset)*512 + integrity.SuperblockAreaSize + int64(i)*section
			if !bytes.Equal(img[off:off+section], l.EmptyJournalSection(i)) {
				t.Errorf("%d: journal section %d is not the empty section", s, i)
			}
		}
		seg := h.Metadata.Segments[0]
		c, err := sectorcrypt.ForSegment(seg.Encryption, seg.Integrity.Type, vk, s)
		if err != nil {
			t.Fatal(err)
		}
		spb := uint64(s / 512)
		plain := make([]byte, s)
		ct := make([]byte, s)
		ts := uint64(c.TagSize())
		tag := make([]byte, ts)
		for sec := uint64(0); sec < sb.ProvidedDataSectors; sec += spb {
			clear(plain)
			if int(sec*512) < len(data) {
				copy(plain, data[sec*512:])
			}
			ds, _ := l.DataSector(sec)
			to, _ := l.TagOffset(sec)
			disk, diskTag := img[ds*512:ds*512+uint64(s)], img[to:to+ts]
			what := map[bool]string{true: "data", false: "zeros"}[int(sec*512) < len(data)]
			if g, ok := c.(*sectorcrypt.GCMRandom); ok { // random IVs: open what is on disk
				if err := g.Open(ct, disk, diskTag, sec); err != nil || !bytes.Equal(ct, plain) {
					t.Fatalf("%s, %d-byte sectors: sector %d does not open to the %s (%v)", tc.integ, s, sec, what, err)
				}
				continue
			}
			c.Seal(ct, tag, plain, sec)
			if !bytes.Equal(disk, ct) || !bytes.Equal(diskTag, tag) {
				t.Fatalf("%s, %d-byte sectors: sector %d is not sealed %s", tc.integ, s, sec, what)
			}
		}
	}
}

// TestWriteFaults fails each write of Write in turn, and cuts the power at
// each write and sync: the superblock is durable only when everything else
// is, so an interrupted volume never opens with missing sectors.
func TestWriteFaults(t *testing.T) {
	img, h, vk := header(t, "hmac-sha256", 4096)
	data := randData(1<<20, 3)
	p, err := NewPlan(h, vk, devSize/512, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	ref := faultdev.New(img)
	if err := p.Write(ref, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	want := ref.Flushed()
	sbOff := int64(p.Layout.Offset) * 512
	hasSB := func(b []byte) bool {
		_, err := integrity.ReadSuperblock(bytes.NewReader(b), sbOff)
		return err == nil
	}
	for n := range ref.Writes() {
		d := faultdev.New(img)
		d.FailWriteAt(n)
		if err := p.Write(d, bytes.NewReader(data), nil); err == nil {
			t.Fatalf("write %d failed but Write returned no error", n)
		}
		if hasSB(d.Flushed()) {
			t.Errorf("write %d failed, yet the superblock was written", n)
		}
	}
	for n := range ref.Events() {
		for _, m := range []faultdev.Mode{faultdev.Cache, faultdev.WriteThrough, faultdev.Torn} {
			d := faultdev.New(img)
			d.CutAt(n, m, 7)
			p.Write(d, bytes.NewReader(data), nil)
			got := d.Durable()
			if hasSB(got) && !bytes.Equal(got, want) {
				t.Errorf("power cut at event %d (%v): a superblock is durable but the volume is not complete", n, m)
			}
		}
	}
}
