// Package activate turns on-disk volumes into device-mapper devices: it builds
// the tables that cryptsetup's tools build for the same volume, attaches image
// files to loop devices, checks the result, and leaves nothing mapped when a
// step fails.
package activate

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/confidisk/confidisk/dm"
	"github.com/confidisk/confidisk/verity"
)

// Mapper is the part of a device-mapper client that activation uses;
// *dm.Client implements it.
type Mapper interface {
	CreateAndLoad(name, uuid string, targets []dm.Target, readOnly bool) (string, error)
	Status(name string) ([]dm.Target, error)
	Remove(name string) error
}

// CorruptionMode says what the kernel does on a block that does not verify
// (veritysetup's --ignore-corruption, --restart-on-corruption, --panic-on-corruption).
type CorruptionMode int

const (
	// CorruptionEIO fails the read with EIO (the kernel's default).
	CorruptionEIO CorruptionMode = iota
	// CorruptionIgnore logs the corruption and returns the data anyway.
	CorruptionIgnore
	// CorruptionRestart restarts the machine.
	CorruptionRestart
	// CorruptionPanic panics the kernel.
	CorruptionPanic
)

// VerityOptions are veritysetup's activation options.
type VerityOptions struct {
	Corruption       CorruptionMode
	IgnoreZeroBlocks bool
	CheckAtMostOnce  bool
	// UseTasklets asks the kernel to verify in tasklets (try_verify_in_tasklet).
	UseTasklets bool
}

// VerityTable returns the dm-verity table line that veritysetup loads for a
// tree with parameters p on dataDev and hashDev
// (cryptsetup lib/libdevmapper.c:get_dm_verity_params).
func VerityTable(dataDev, hashDev string, p verity.Params, root []byte, o VerityOptions) (dm.Target, error) {
	g, err := p.Geometry()
	if err != nil {
		return dm.Target{}, err
	}
	if len(root) != g.DigestSize {
		return dm.Target{}, fmt.Errorf("root hash has %d bytes, want %d for %s", len(root), g.DigestSize, p.HashName)
	}
	vp := dm.VerityParams{
		HashType:            p.HashType,
		DataDevice:          dataDev,
		HashDevice:          hashDev,
		DataBlockSize:       p.DataBlockSize,
		HashBlockSize:       p.HashBlockSize,
		DataBlocks:          p.DataBlocks,
		HashStartBlock:      g.HashStartBlock,
		Algorithm:           p.HashName,
		RootDigest:          hex.EncodeToString(root),
		Salt:                hex.EncodeToString(p.Salt),
		IgnoreCorruption:    o.Corruption == CorruptionIgnore,
		RestartOnCorruption: o.Corruption == CorruptionRestart,
		PanicOnCorruption:   o.Corruption == CorruptionPanic,
		IgnoreZeroBlocks:    o.IgnoreZeroBlocks,
		CheckAtMostOnce:     o.CheckAtMostOnce,
		TryVerifyInTasklet:  o.UseTasklets,
	}
	return vp.Target()
}

// VerityUUID is the device-mapper UUID veritysetup gives a verity device
// (cryptsetup lib/libdevmapper.c:dm_prepare_uuid): "CRYPT-VERITY-<uuid
// without dashes>-<name>".
func VerityUUID(p verity.Params, name string) string {
	return "CRYPT-VERITY-" + strings.ReplaceAll(verity.FormatUUID(p.UUID), "-", "") + "-" + name
}

// ErrRootHashMismatch is returned when the root hash does not match the hash
// device: nothing is mapped then.
var ErrRootHashMismatch = errors.New("root hash does not match the hash device")

// checkRoot checks, in userspace and before anything is mapped, that the
// top of the tree matches root: a wrong root hash or a wrong hash device is
// refused plainly instead of surfacing later as I/O errors.
func checkRoot(data, hashDev io.ReaderAt, p verity.Params, root []byte) error {
	r, err := verity.NewReader(data, hashDev, p, root, 1)
	if err != nil {
		return err
	}
	if _, err := r.ReadAt(make([]byte, 1), 0); err != nil {
		if errors.Is(err, verity.ErrCorrupted) {
			return fmt.Errorf("%w (%v)", ErrRootHashMismatch, err)
		}
		return err
	}
	return nil
}

// verityStatusOK reports whether a verity target's status says "V"
// (verified) rather than "C" (corruption detected).
func verityStatusOK(status []dm.Target) bool {
	for _, t := range status {
		if t.Type == "verity" && strings.HasPrefix(strings.TrimSpace(t.Params), "C") {
			return false
		}
	}
	return true
}

// readFirstBlock reads the first block of a mapped device, so that the kernel
// checks it against the tree.
func readFirstBlock(path string, size int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.ReadFull(f, make([]byte, size))
	return err
}
