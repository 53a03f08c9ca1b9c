package integrity

import "encoding/binary"

// commitIDs are the journal commit ids of a target without journal_crypt
// (create_journal: 0x1111111111111111 times 1..4, N_COMMIT_IDS of them).
var commitIDs = [4]uint64{0x1111111111111111, 0x2222222222222222, 0x3333333333333333, 0x4444444444444444}

// journalEntryUnused is the sector_hi of an unused journal entry
// (journal_entry_set_unused: cpu_to_le32(-1)).
const journalEntryUnused = 0xffffffff

// EmptyJournalSection returns journal section i as the kernel initialises
// it when it formats a device (init_journal with commit sequence 0): every
// 512-byte journal sector zero but for its last 8 bytes, the commit id
// commit_ids[0] ^ (i << 32 ^ j) of sector j (dm_integrity_commit_id), and
// every journal entry of the section's first JOURNAL_BLOCK_SECTORS sectors
// marked unused (entry n in sector n mod 8 at offset (n / 8) times the entry
// size, its sector_hi set to 0xffffffff). A journal of such sections
// replays as empty (replay_journal) and continues at section 0 with
// sequence 0. Without journal_crypt and journal_mac only.
func (l *Layout) EmptyJournalSection(i uint32) []byte {
	b := make([]byte, int(l.JournalSectionSectors)*SectorSize)
	for j := range l.JournalSectionSectors {
		id := commitIDs[0] ^ (uint64(i)<<32 ^ uint64(j))
		binary.LittleEndian.PutUint64(b[int(j+1)*SectorSize-8:], id)
	}
	for n := range l.JournalSectionEntries {
		off := int(n%journalBlockSectors)*SectorSize + int(n/journalBlockSectors)*int(l.JournalEntrySize)
		binary.LittleEndian.PutUint32(b[off+4:], journalEntryUnused)
	}
	return b
}
