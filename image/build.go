package image

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// BootFiles gives the ESP's files for a verity root hash: typically a
// signed UKI and a signed addon carrying roothash= (or usrhash=). It is
// called once the root hash is known and may write what it makes into dir,
// a temporary directory that lives until [Build] returns.
type BootFiles interface {
	ESPFiles(ctx context.Context, rootHash []byte, dir string) ([]ESPFile, error)
}

// Spec is what [Build] makes a disk from.
type Spec struct {
	// Root is the root (or, with Usr, the /usr) file system.
	Root RootFS
	// Usr lays the verity pair out as /usr partitions (usrhash=).
	Usr bool
	// ESPSize and StateSize are the sizes of the ESP and of the blank
	// state partition in bytes.
	ESPSize, StateSize int64
	// StateLabel is the state partition's GPT label ("state" if empty).
	StateLabel string
	// Seed derives every identifier (see [Seed]).
	Seed Seed
	// Boot fills the ESP; nil leaves it empty.
	Boot BootFiles
	// Progress, when set, is told each step as it starts.
	Progress func(step string)
}

// Result says what [Build] wrote.
type Result struct {
	// RootHash is the verity root hash (hex).
	RootHash string `json:"root_hash"`
	// FSType is the verity data's file system.
	FSType string `json:"fs_type"`
	// Partitions are the disk's partitions in table order.
	Partitions []Partition `json:"partitions"`
	// ESPFiles are the paths written to the ESP.
	ESPFiles []string `json:"esp_files"`
}

// Build writes a bootable disk image to out: the root file system (made
// from a directory or an archive with mkfs, or an image used as it is), its
// dm-verity hash tree, the ESP with the files s.Boot gives for the root
// hash, and the blank state partition, in a GPT laid out as the
// Discoverable Partitions Specification asks (see [Layout]). No root, loop
// device or mount is needed; out appears only once complete.
func Build(ctx context.Context, s Spec, out string) (*Result, error) {
	step := func(what string) {
		if s.Progress != nil {
			s.Progress(what)
		}
	}
	work, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".build-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	step("root file system")
	data, fstype, err := rootFSImage(ctx, s.Root, s.Seed, work)
	if err != nil {
		return nil, err
	}
	step("verity hash tree")
	hash := filepath.Join(work, "root.verity")
	root, err := formatVerity(ctx, data, hash, s.Seed)
	if err != nil {
		return nil, err
	}
	var files []ESPFile
	if s.Boot != nil {
		step("boot files")
		if files, err = s.Boot.ESPFiles(ctx, root, work); err != nil {
			return nil, fmt.Errorf("boot files: %w", err)
		}
	}
	step("esp")
	esp := filepath.Join(work, "esp.img")
	if err := makeESP(ctx, esp, s.ESPSize, files, s.Seed); err != nil {
		return nil, err
	}
	step("disk")
	l := Layout{ESP: esp, Data: data, Hash: hash, RootHash: root, Usr: s.Usr, StateSize: s.StateSize, StateLabel: s.StateLabel, Seed: s.Seed,
		MoveData: strings.HasPrefix(data, work+string(filepath.Separator))}
	parts, err := l.Write(out)
	if err != nil {
		return nil, err
	}
	res := &Result{RootHash: hex.EncodeToString(root), FSType: fstype, Partitions: parts}
	for _, f := range files {
		res.ESPFiles = append(res.ESPFiles, f.Path)
	}
	return res, nil
}
