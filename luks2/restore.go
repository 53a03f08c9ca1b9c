package luks2

import (
	"bytes"
	"fmt"
	"slices"
)

// CheckBackup reads a header backup (everything before the data segment, as
// cryptsetup luksHeaderBackup writes it) and checks that it is whole: a
// valid header whose data offset is the backup's length.
func CheckBackup(backup []byte) (*Header, error) {
	h, _, err := Read(bytes.NewReader(backup))
	if err != nil {
		return nil, err
	}
	seg := h.Metadata.Segments[0]
	if seg == nil {
		return nil, fmt.Errorf("the backup has no segment 0")
	}
	if uint64(seg.Offset) != uint64(len(backup)) {
		return nil, fmt.Errorf("the backup holds %d bytes but its data offset is %d", len(backup), seg.Offset)
	}
	return h, nil
}

// span is a byte range [a, b) of the device.
type span struct{ a, b uint64 }

func (x span) overlaps(y span) bool { return x.a < y.b && y.a < x.b }

// keyslotSpans lists the areas of h's keyslots, by keyslot id.
func keyslotSpans(h *Header) []span {
	ids := make([]int, 0, len(h.Metadata.Keyslots))
	for id, k := range h.Metadata.Keyslots {
		if k.Raw == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]span, 0, len(ids))
	for _, id := range ids {
		a := h.Metadata.Keyslots[id].Area
		out = append(out, span{uint64(a.Offset), uint64(a.Offset + a.Size)})
	}
	return out
}

// Restore writes a header backup (checked with [CheckBackup]) to dev, in an
// order that keeps the volume opening at every point when dev holds the same
// volume with the same metadata size, and ends with dev holding exactly the
// backup's bytes, as cryptsetup luksHeaderRestore leaves it:
//
//  1. the backup's keyslot areas that overwrite no area the current header
//     uses (or would write what is already there) — unless none of the
//     backup's keyslots could be written that way, then all of them, so
//     that the header switch never names keyslots whose areas are missing;
//     then Sync;
//  2. the backup's header copies, the damaged or stale current copy
//     first, each synced: Read sees the old header or the backup's;
//  3. all of the backup (the rest of the keyslots area), synced.
func Restore(dev Device, backup []byte) error {
	bh, err := CheckBackup(backup)
	if err != nil {
		return err
	}
	cur, _, curErr := Read(dev)
	var used []span
	if curErr == nil {
		used = keyslotSpans(cur)
	}
	if err := restoreAreas(dev, backup, keyslotSpans(bh), used); err != nil {
		return err
	}
	order := []uint64{0, bh.HdrSize}
	if curErr == nil && cur.secondaryFirst {
		order = []uint64{bh.HdrSize, 0}
	}
	for _, off := range order {
		if err := writeSynced(dev, backup[off:off+bh.HdrSize], off); err != nil {
			return fmt.Errorf("restore the header copy at %d: %w", off, err)
		}
	}
	if err := writeSynced(dev, backup, 0); err != nil {
		return fmt.Errorf("restore the keyslots area: %w", err)
	}
	return nil
}

// restoreAreas is step 1 of [Restore].
func restoreAreas(dev Device, backup []byte, areas, used []span) error {
	var now, later []span
	for _, a := range areas {
		if a.b > uint64(len(backup)) {
			return fmt.Errorf("a keyslot area of the backup ends at %d, past its %d bytes", a.b, len(backup))
		}
		if !slices.ContainsFunc(used, a.overlaps) || sameBytes(dev, backup, a) {
			now = append(now, a)
		} else {
			later = append(later, a)
		}
	}
	if len(now) == 0 {
		now = later
	}
	for _, a := range now {
		if _, err := dev.WriteAt(backup[a.a:a.b], int64(a.a)); err != nil {
			return fmt.Errorf("restore the keyslot area at %d: %w", a.a, err)
		}
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("sync the restored keyslot areas: %w", err)
	}
	return nil
}

// sameBytes reports whether dev already holds the backup's bytes in a.
func sameBytes(dev Device, backup []byte, a span) bool {
	b := make([]byte, a.b-a.a)
	n, _ := dev.ReadAt(b, int64(a.a))
	return n == len(b) && bytes.Equal(b, backup[a.a:a.b])
}

func writeSynced(dev Device, b []byte, off uint64) error {
	if _, err := dev.WriteAt(b, int64(off)); err != nil {
		return err
	}
	return dev.Sync()
}
