package provision

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/confidisk/confidisk/activate"
	"github.com/confidisk/confidisk/dm"
	"github.com/confidisk/confidisk/luks2"
)

// Names of the device-mapper devices of dm-clone mode: CloneName is the
// read-write root (the clone while it hydrates, then a linear mapping of the
// hydrated copy); the other two are the parts of the state volume the clone
// uses.
const (
	CloneName     = "rwroot"
	CloneMetaName = "rwroot-meta"
	CloneDestName = "rwroot-dest"
)

// cloneSource maps the verity root for a first boot in clone mode and
// checks that it can become a read-write root: a file system that mounts
// read-write (not erofs or squashfs) in whole 4 KiB blocks. It returns the
// record of the clone to make.
func (b *booter) cloneSource() (*cloneRecord, error) {
	path, sectors, err := b.mapVerity(b.res.Layout)
	if err != nil {
		return nil, err
	}
	fstype, err := fsType(path)
	if err != nil {
		return nil, err
	}
	if fstype == "erofs" || fstype == "squashfs" {
		return nil, fmt.Errorf("dm-clone mode makes the root file system itself read-write: the verity root holds %s, which cannot be (use an ext4, xfs or btrfs root, or confidisk.rw=overlay)", fstype)
	}
	return newCloneRecord(b.cfg.RootHash, sectors, b.cfg.Clone.RegionSize)
}

// prepareClone makes the state volume ready to be the clone's destination
// (provisioning step "filesystem" in clone mode): it checks that the clone
// fits and zeroes the metadata area, so that the kernel formats it when the
// clone is first made.
func (b *booter) prepareClone(dev string, h *luks2.Header, vk []byte, rec *cloneRecord) error {
	path, err := activate.LUKS(b.dm, StateName, dev, h, vk, activate.LUKSOptions{})
	if err != nil {
		return fmt.Errorf("open the new state volume: %w", err)
	}
	return errors.Join(zeroCloneMetadata(path, rec), activate.CloseLUKS(b.dm, StateName, true))
}

func zeroCloneMetadata(path string, rec *cloneRecord) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if err := rec.checkFits(uint64(size) / 512); err != nil {
		return err
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < int64(rec.MetadataSectors)*512; off += int64(len(zero)) {
		if _, err := f.WriteAt(zero, off); err != nil {
			return fmt.Errorf("zero the dm-clone metadata area: %w", err)
		}
	}
	return f.Sync()
}

// cloneRoot maps the read-write root of clone mode at /dev/mapper/rwroot:
// the hydrated copy alone once the record says so. Otherwise it first asks
// the kernel whether hydration is complete, with the clone over a source
// that fails every read (nothing reads the source of a clone without
// hydration and without I/O): when it is, the boot records it and maps the
// copy alone without ever mapping the verity root, which the host may have
// dropped or destroyed by then. If not, the clone is made again over the
// verity root, which must be the one hydration started from, and hydration
// starts (confidisk.clone-hydration=1).
func (b *booter) cloneRoot(lay *Layout, h *luks2.Header, vk []byte) error {
	rec := b.pt.Clone
	if rec == nil {
		return fmt.Errorf("%w: the volume was provisioned for dm-clone mode but holds no clone record", ErrMetadataTampered)
	}
	if err := rec.validate(); err != nil {
		return err
	}
	if rec.Hydrated {
		if got := hex.EncodeToString(b.cfg.RootHash); got != rec.RootHash {
			b.logf("dm-clone: roothash=%s is not used: the root is the hydrated copy of %s", got, rec.RootHash)
		}
		return b.mapHydrated(rec)
	}
	if err := b.mapCloneParts(rec); err != nil {
		return err
	}
	st, err := b.probeClone(rec)
	if err != nil {
		return err
	}
	if st.Done() {
		return b.finishHydration(lay.State, h, vk, rec)
	}
	if lay.RootData == "" {
		return fmt.Errorf("%w: hydration is not complete (%d of %d regions) and the disk has no verity root for roothash=%x",
			ErrCloneSource, st.Hydrated, st.Regions, b.cfg.RootHash)
	}
	src, sectors, err := b.mapVerity(lay)
	if err != nil {
		return err
	}
	if err := rec.checkSource(b.cfg.RootHash, sectors); err != nil {
		return err
	}
	if st, err = b.mapClone(src, rec); err != nil {
		return err
	}
	b.logf("dm-clone: %d of %d regions of %d KiB hydrated", st.Hydrated, st.Regions, rec.RegionSectors/2)
	b.res.Clone = &CloneProgress{Hydrated: st.Hydrated, Regions: st.Regions}
	if !b.cfg.Clone.Hydrate {
		b.logf("dm-clone: background hydration not started (confidisk.clone-hydration=0): `confidisk clone start` starts it")
		return nil
	}
	if _, err := b.dm.Message(CloneName, 0, "enable_hydration"); err != nil {
		return fmt.Errorf("dm-clone: start hydration: %w", err)
	}
	return nil
}

// CloneProgress is the hydration state a boot in clone mode found.
type CloneProgress struct {
	Hydrated, Regions uint64
	// Finished is true when this boot found hydration complete and
	// recorded it: the root is the copy alone from now on.
	Finished bool `json:",omitempty"`
}

// mapCloneParts maps the clone's metadata and destination areas of the
// state volume.
func (b *booter) mapCloneParts(rec *cloneRecord) error {
	state := "/dev/mapper/" + StateName
	parts := []struct {
		name        string
		off, length uint64
	}{{CloneMetaName, 0, rec.MetadataSectors}, {CloneDestName, rec.MetadataSectors, rec.SourceSectors}}
	for _, p := range parts {
		t, err := dm.LinearParams{Device: state, Offset: p.off}.Target(0, p.length)
		if err != nil {
			return err
		}
		if _, err := b.dm.CreateAndLoad(p.name, "", []dm.Target{t}, false); err != nil {
			return fmt.Errorf("dm-clone: map %s: %w", p.name, err)
		}
		name := p.name
		b.undo.add(func() error { return b.removeMapped(name) })
	}
	return nil
}

// probeClone reads the clone's status with a source that fails every read
// (the error target) and removes it again.
func (b *booter) probeClone(rec *cloneRecord) (dm.CloneStatus, error) {
	if _, err := b.dm.CreateAndLoad(cloneProbeName, "", []dm.Target{{Start: 0, Length: rec.SourceSectors, Type: "error"}}, true); err != nil {
		return dm.CloneStatus{}, fmt.Errorf("dm-clone: map the probe source: %w", err)
	}
	b.undo.add(func() error { return b.removeMapped(cloneProbeName) })
	st, err := b.mapClone(b.dm.DevicePath(cloneProbeName), rec)
	return st, errors.Join(err, b.removeMapped(CloneName), b.removeMapped(cloneProbeName))
}

// cloneProbeName is the source that fails every read, used to read a
// clone's status without its source.
const cloneProbeName = "rwroot-probe"

// mapClone maps the clone over src, without background hydration, and
// returns its status.
func (b *booter) mapClone(src string, rec *cloneRecord) (dm.CloneStatus, error) {
	cp := dm.CloneParams{
		MetadataDevice: b.dm.DevicePath(CloneMetaName), DestinationDevice: b.dm.DevicePath(CloneDestName), SourceDevice: src,
		RegionSize: rec.RegionSectors, NoHydration: true,
		HydrationThreshold: b.cfg.Clone.Threshold, HydrationBatchSize: b.cfg.Clone.Batch,
	}
	t, err := cp.Target(0, rec.SourceSectors)
	if err != nil {
		return dm.CloneStatus{}, err
	}
	if _, err := b.dm.CreateAndLoad(CloneName, "", []dm.Target{t}, false); err != nil {
		return dm.CloneStatus{}, fmt.Errorf("dm-clone: map the clone (is the dm-clone module loaded?): %w", err)
	}
	b.undo.add(func() error { return b.removeMapped(CloneName) })
	return CloneStatusOf(b.dm, CloneName)
}

// CloneStatusOf reads the status of the clone target of device name.
func CloneStatusOf(c *dm.Client, name string) (dm.CloneStatus, error) {
	ts, err := c.Status(name)
	if err != nil {
		return dm.CloneStatus{}, err
	}
	if len(ts) != 1 || ts[0].Type != "clone" {
		return dm.CloneStatus{}, fmt.Errorf("dm-clone: %s is not a clone", name)
	}
	return dm.ParseCloneStatus(ts[0].Params)
}

// finishHydration ends the clone once every region is hydrated: it removes
// the clone, if still there (its removal commits its metadata and flushes
// the destination) and its parts, records the hydration in the provisioning
// token, unmaps the verity root if it was mapped and maps the copy alone.
func (b *booter) finishHydration(dev string, h *luks2.Header, vk []byte, rec *cloneRecord) error {
	for _, name := range []string{CloneName, CloneMetaName, CloneDestName} {
		if err := b.removeMapped(name); err != nil {
			return fmt.Errorf("dm-clone: remove %s: %w", name, err)
		}
	}
	b.point("clone-removed") // hydration complete on disk, not yet recorded
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	rec.Hydrated = true
	if err := b.writeStep(f, h, vk, b.pt, b.pt.Step); err != nil {
		rec.Hydrated = false
		return fmt.Errorf("dm-clone: record the finished hydration: %w", err)
	}
	b.logf("dm-clone: hydration complete and recorded; the verity source is no longer used")
	b.res.Clone = &CloneProgress{Finished: true}
	if err := b.unmapVerity(); err != nil {
		return fmt.Errorf("dm-clone: unmap the verity source: %w", err)
	}
	return b.mapHydrated(rec)
}

// mapHydrated maps the hydrated copy alone as the root device.
func (b *booter) mapHydrated(rec *cloneRecord) error {
	t, err := dm.LinearParams{Device: "/dev/mapper/" + StateName, Offset: rec.MetadataSectors}.Target(0, rec.SourceSectors)
	if err != nil {
		return err
	}
	if _, err := b.dm.CreateAndLoad(CloneName, "", []dm.Target{t}, false); err != nil {
		return fmt.Errorf("dm-clone: map the hydrated root: %w", err)
	}
	b.undo.add(func() error { return b.removeMapped(CloneName) })
	if b.res.Clone == nil {
		b.res.Clone = &CloneProgress{}
	}
	b.logf("dm-clone: the root is the hydrated copy (no clone, no verity source)")
	return nil
}

// removeMapped removes the device name if it is still mapped (a failed
// boot's undo, after finishHydration may have removed it already).
func (b *booter) removeMapped(name string) error {
	if err := b.dm.Remove(name); err != nil && !errors.Is(err, unix.ENXIO) {
		return err
	}
	return nil
}

// mountCloneRoot mounts /dev/mapper/rwroot read-write at Config.Root.
func (b *booter) mountCloneRoot() error {
	dev := b.dm.DevicePath(CloneName)
	fstype, err := fsType(dev)
	if err != nil {
		return err
	}
	if err := unix.Mount(dev, b.cfg.Root, fstype, 0, ""); err != nil {
		return fmt.Errorf("mount the read-write root %s (%s): %w", dev, fstype, err)
	}
	b.undo.add(func() error { return unix.Unmount(b.cfg.Root, 0) })
	b.logf("read-write root (clone, %s) mounted at %s", fstype, b.cfg.Root)
	return nil
}
