package activate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/confidisk/confidisk/dm"
	"github.com/confidisk/confidisk/integrity"
	"github.com/confidisk/confidisk/loop"
	"github.com/confidisk/confidisk/luks2"
)

// rawDevice gives a block device for a LUKS2 volume at path (a loop device
// for an image file), its size in sectors, and a release function.
func rawDevice(path string, readOnly bool) (dev string, sectors uint64, release func(), err error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", 0, nil, err
	}
	dev, release = path, func() {}
	switch {
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.EBUSY) {
				return "", 0, nil, fmt.Errorf("%s is in use (already mapped or mounted)", path)
			}
			return "", 0, nil, fmt.Errorf("open %s: %w", path, err)
		}
		unix.Close(fd)
	case st.Mode().IsRegular():
		d, err := loop.Attach(path, loop.Options{ReadOnly: readOnly, AutoClear: true})
		if err != nil {
			return "", 0, nil, fmt.Errorf("attach %s to a loop device: %w", path, err)
		}
		dev, release = d.Path, func() { d.Close() }
	default:
		return "", 0, nil, fmt.Errorf("%s is neither a block device nor a regular file", path)
	}
	f, err := os.Open(dev)
	if err != nil {
		release()
		return "", 0, nil, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	f.Close()
	if err != nil {
		release()
		return "", 0, nil, fmt.Errorf("size of %s: %w", dev, err)
	}
	return dev, uint64(size) / 512, release, nil
}

// loadKey puts vk into the thread keyring as a "logon" key under the
// description cryptsetup uses, so that the dm-crypt table refers to it
// instead of carrying it; the returned function revokes it once the table
// is loaded (the kernel keeps its own copy). The caller must hold its OS
// thread (runtime.LockOSThread) from loadKey until the table is loaded: the
// kernel looks the key up in the keyrings of the thread that loads the table.
func loadKey(desc string, vk []byte) (func(), error) {
	id, err := unix.AddKey("logon", desc, vk, unix.KEY_SPEC_THREAD_KEYRING)
	if err != nil {
		return nil, fmt.Errorf("add volume key to the kernel keyring: %w", err)
	}
	return func() {
		unix.KeyctlInt(unix.KEYCTL_REVOKE, id, 0, 0, 0)
		unix.KeyctlInt(unix.KEYCTL_UNLINK, id, unix.KEY_SPEC_THREAD_KEYRING, 0, 0)
	}, nil
}

// ErrIntegrityUninitialised means the dm-integrity superblock of a LUKS2
// volume with integrity was never written (its format did not finish).
var ErrIntegrityUninitialised = errors.New("the dm-integrity superblock is not initialised (the format did not complete)")

// IntegritySuperblock reads the dm-integrity superblock at the data offset
// of h on devPath (a device or an image file).
func IntegritySuperblock(devPath string, h *luks2.Header) (*integrity.Superblock, error) {
	f, err := os.Open(devPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The kernel wrote the superblock below the page cache of devPath (through
	// a dm-integrity mapping): drop cached pages before reading it.
	_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
	seg := h.Metadata.Segments[0]
	if seg == nil {
		return nil, fmt.Errorf("%w: no segment 0", luks2.ErrUnsupported)
	}
	sb, err := integrity.ReadSuperblock(f, int64(seg.Offset))
	if errors.Is(err, integrity.ErrUnformatted) {
		return nil, ErrIntegrityUninitialised
	}
	if err != nil {
		return nil, fmt.Errorf("read dm-integrity superblock: %w", err)
	}
	return sb, nil
}

// providedSectors reads provided_data_sectors from the integrity superblock
// at the data offset of h on devPath.
func providedSectors(devPath string, h *luks2.Header) (uint64, error) {
	sb, err := IntegritySuperblock(devPath, h)
	if err != nil {
		return 0, err
	}
	return sb.ProvidedDataSectors, nil
}

// LUKS activates the LUKS2 volume on devPath as /dev/mapper/NAME with the
// volume key vk, building the tables cryptsetup builds: for integrity
// volumes NAME_dif (dm-integrity) under NAME (dm-crypt). The key goes to the
// kernel through the keyring, as with cryptsetup. On any failure nothing
// stays mapped.
func LUKS(m Mapper, name, devPath string, h *luks2.Header, vk []byte, o LUKSOptions) (string, error) {
	if ok, err := h.VerifyVolumeKey(vk); err != nil || !ok {
		return "", fmt.Errorf("volume key does not match the header's digest (%v)", err)
	}
	dev, sectors, release, err := rawDevice(devPath, o.ReadOnly)
	if err != nil {
		return "", err
	}
	defer release()
	var provided uint64
	if h.Metadata.Segments[0].Integrity != nil {
		if provided, err = providedSectors(dev, h); err != nil {
			return "", err
		}
	}
	t, err := BuildLUKSTables(h, name, dev, sectors, provided, vk, o)
	if err != nil {
		return "", err
	}
	if !o.KeyInHex {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		revoke, err := loadKey(KeyDescription(h), vk)
		if err != nil {
			return "", err
		}
		defer revoke()
	}
	cryptUUID, subUUID := LUKSUUID(h, name)
	if t.Integrity != nil {
		if _, err := m.CreateAndLoad(name+"_dif", subUUID, []dm.Target{*t.Integrity}, o.ReadOnly); err != nil {
			return "", fmt.Errorf("create integrity device %s_dif: %w", name, err)
		}
	}
	path, err := m.CreateAndLoad(name, cryptUUID, []dm.Target{t.Crypt}, o.ReadOnly)
	if err != nil {
		if t.Integrity != nil {
			err = errors.Join(err, m.Remove(name+"_dif"))
		}
		return "", fmt.Errorf("create crypt device %s: %w", name, err)
	}
	return path, nil
}

// CloseLUKS removes NAME and, when there is one, its integrity device NAME_dif.
func CloseLUKS(m interface {
	Remove(string) error
}, name string, hasIntegrity bool) error {
	if err := m.Remove(name); err != nil {
		return err
	}
	if hasIntegrity {
		return m.Remove(name + "_dif")
	}
	return nil
}

// InitIntegrity writes the dm-integrity superblock of a freshly formatted
// LUKS2 volume with integrity, the way cryptsetup's INTEGRITY_format does:
// the superblock area at the data offset is zeroed, a temporary integrity
// device of 8 sectors is loaded so that the kernel formats it, and removed.
// It returns provided_data_sectors.
func InitIntegrity(m Mapper, devPath string, h *luks2.Header) (uint64, error) {
	g, err := geometry(h)
	if err != nil {
		return 0, err
	}
	if g.seg.Integrity == nil {
		return 0, errors.New("the volume has no integrity protection")
	}
	dev, _, release, err := rawDevice(devPath, false)
	if err != nil {
		return 0, err
	}
	defer release()
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	_, err = f.WriteAt(make([]byte, integrity.SuperblockAreaSize), int64(g.seg.Offset))
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("clear the dm-integrity superblock area: %w", err)
	}
	t, err := dmIntegrityParams(dev, g, false).Target(0, integrity.SuperblockSectors)
	if err != nil {
		return 0, err
	}
	tmp := fmt.Sprintf("temporary-confidisk-%d", os.Getpid())
	if _, err := m.CreateAndLoad(tmp, "", []dm.Target{t}, false); err != nil {
		return 0, fmt.Errorf("format dm-integrity superblock: %w", err)
	}
	if err := m.Remove(tmp); err != nil {
		return 0, err
	}
	return providedSectors(dev, h)
}

// InitMode says how the integrity tags of a new volume are initialised.
type InitMode int

const (
	// InitFull writes zeros through the whole mapping, as cryptsetup
	// luksFormat does: every sector then has a valid tag and reads as zeros.
	InitFull InitMode = iota
	// InitFast writes only the first and last MiB (where partition tables,
	// file system superblocks and signature probes look). Every other
	// sector keeps the tag it had on disk, which cannot verify under a
	// fresh key: reading it fails with EIO until it is written. No read
	// ever returns data that was not written through this volume.
	InitFast
	// InitNone writes no tags (cryptsetup's --integrity-no-wipe): every
	// sector reads as EIO until it is written.
	InitNone
)

// InitIntegrityTags initialises a freshly formatted LUKS2 volume with
// integrity, as cryptsetup luksFormat --integrity does: the dm-integrity
// superblock ([InitIntegrity]), then the tags as mode says
// ([WipeIntegrity]). Both `confidisk luks format` and first boot use it.
func InitIntegrityTags(m Mapper, devPath string, h *luks2.Header, vk []byte, mode InitMode, progress func(done, total int64)) error {
	if _, err := InitIntegrity(m, devPath, h); err != nil {
		return fmt.Errorf("initialise dm-integrity: %w", err)
	}
	if mode == InitNone {
		return nil
	}
	if err := WipeIntegrity(m, devPath, h, vk, mode, progress); err != nil {
		return fmt.Errorf("initialise integrity tags: %w", err)
	}
	return nil
}

// InitFastBytes is how much InitFast writes at each end of the volume.
const InitFastBytes = 1 << 20

// WipeIntegrity initialises the tags of a new LUKS2 volume with integrity:
// it maps the volume under a temporary name without the dm-integrity journal
// (as cryptsetup does for its wipe), writes zeros as mode says, and removes
// the mapping. progress, if set, gets bytes written and the total.
func WipeIntegrity(m Mapper, devPath string, h *luks2.Header, vk []byte, mode InitMode, progress func(done, total int64)) error {
	tmp := fmt.Sprintf("temporary-confidisk-wipe-%d", os.Getpid())
	path, err := LUKS(m, tmp, devPath, h, vk, LUKSOptions{NoJournal: true})
	if err != nil {
		return err
	}
	werr := wipe(path, mode, progress)
	return errors.Join(werr, CloseLUKS(m, tmp, true))
}

func wipe(path string, mode InitMode, progress func(done, total int64)) error {
	// O_DIRECT: the zeros go straight to the device instead of through the
	// page cache (as cryptsetup's wipe does); the buffer is page-aligned.
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	type span struct{ off, n int64 }
	spans := []span{{0, size}}
	if mode == InitFast && size > 2*InitFastBytes {
		spans = []span{{0, InitFastBytes}, {size - InitFastBytes, InitFastBytes}}
	}
	var total, done int64
	for _, s := range spans {
		total += s.n
	}
	zero, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("wipe buffer: %w", err)
	}
	defer unix.Munmap(zero)
	for _, s := range spans {
		for off := s.off; off < s.off+s.n; {
			n := min(int64(len(zero)), s.off+s.n-off)
			if _, err := f.WriteAt(zero[:n], off); err != nil {
				return fmt.Errorf("initialise integrity tags at offset %d: %w", off, err)
			}
			off += n
			done += n
			if progress != nil {
				progress(done, total)
			}
		}
	}
	return f.Sync()
}
