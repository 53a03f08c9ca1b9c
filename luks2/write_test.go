package luks2

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/confidisk/confidisk/internal/faultdev"
)

func formatMem(t *testing.T) []byte {
	t.Helper()
	d := faultdev.New(make([]byte, 4<<20))
	_, _, err := Format(d, 4<<20, []byte("pass"), FormatOptions{
		PBKDF: PBKDF{Type: "pbkdf2", Iterations: 1000}, DataOffset: 2 << 20, KeyslotsSize: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d.Durable()
}

// TestReadShortDevices: a device too short for a header is not LUKS2 (not
// "both copies damaged"); a header cut short is damaged.
func TestReadShortDevices(t *testing.T) {
	img := formatMem(t)
	tests := []struct {
		name    string
		dev     []byte
		notLUKS bool
		want    string
	}{
		{"empty", nil, true, "not a LUKS2 device"},
		{"100 zero bytes", make([]byte, 100), true, "not a LUKS2 device"},
		{"primary cut at 3000 bytes", img[:3000], false, "the primary LUKS2 header is damaged and no secondary header was found: read binary header at 0: unexpected EOF"},
		{"secondary cut at 20000 bytes", img[:20000], false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, rep, err := Read(bytes.NewReader(tc.dev))
			if tc.want == "" {
				if err != nil || rep.SecondaryErr == nil {
					t.Fatalf("got %v, secondary %v; want the primary, the secondary damaged", err, rep.SecondaryErr)
				}
				return
			}
			if err == nil || errors.Is(err, ErrNotLUKS2) != tc.notLUKS || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want %q (ErrNotLUKS2: %v)", err, tc.want, tc.notLUKS)
			}
		})
	}
}

// TestWriteRepairsTheDamagedCopyFirst: with the secondary copy damaged,
// Write writes and syncs it before it touches the good primary, so a cut
// between the copies leaves two valid ones.
func TestWriteRepairsTheDamagedCopyFirst(t *testing.T) {
	img := formatMem(t)
	copy(img[DefaultHdrSize+5000:], "garbage")
	h, rep, err := Read(bytes.NewReader(img))
	if err != nil || rep.SecondaryErr == nil {
		t.Fatalf("read: %v, secondary %v", err, rep.SecondaryErr)
	}
	d := faultdev.New(img)
	d.CutAt(5, faultdev.Cache, 0) // events: sync, 3 writes, sync, then the other copy
	if err := h.Write(d); err != nil {
		t.Fatal(err)
	}
	_, rep, err = Read(bytes.NewReader(d.Durable()))
	if err != nil || rep.PrimaryErr != nil || rep.SecondaryErr != nil || !rep.Stale {
		t.Fatalf("after a cut between the copies: %v, report %+v; want two valid copies, the old primary stale", err, rep)
	}
}
