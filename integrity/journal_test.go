package integrity

import (
	"encoding/binary"
	"testing"
)

// TestEmptyJournalSection checks the section init_journal writes: the
// commit id of sequence 0 in the last 8 bytes of each sector, entries
// unused, nothing else set.
func TestEmptyJournalSection(t *testing.T) {
	l, err := NewLayout(LUKS2Params(1<<16, 32768, 4096, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []uint32{0, 1} {
		b := l.EmptyJournalSection(i)
		if len(b) != int(l.JournalSectionSectors)*SectorSize {
			t.Fatalf("section of %d bytes, want %d", len(b), l.JournalSectionSectors*SectorSize)
		}
		unused := 0
		for j := range l.JournalSectionSectors {
			sec := b[int(j)*SectorSize : int(j+1)*SectorSize]
			if got, want := binary.LittleEndian.Uint64(sec[SectorSize-8:]), 0x1111111111111111^(uint64(i)<<32^uint64(j)); got != want {
				t.Errorf("section %d sector %d: commit id %#x, want %#x", i, j, got, want)
			}
			for k := 0; k+4 <= SectorSize-8; k++ {
				if binary.LittleEndian.Uint32(sec[k:]) == journalEntryUnused {
					unused++
					k += 3
				}
			}
		}
		if unused != int(l.JournalSectionEntries) {
			t.Errorf("section %d: %d unused entries, want %d", i, unused, l.JournalSectionEntries)
		}
	}
}
