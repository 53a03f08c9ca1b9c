package image

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/confidisk/confidisk/initrd"
)

// ESPFile is one file of the EFI System Partition: Path is absolute in the
// FAT file system ("/EFI/BOOT/BOOTX64.EFI"), Source a host file.
type ESPFile struct {
	Path, Source string
}

// MinESPSize is the smallest ESP this package makes: FAT32 needs at least
// 65525 clusters, which mkfs.fat reaches with 512-byte clusters from
// about 33 MiB.
const MinESPSize = 64 << 20

// espTime is the modification time of every ESP file, so that the image
// does not depend on when its inputs were written.
var espTime = time.Unix(315532800, 0) // 1980-01-01, FAT's epoch

// makeESP writes a FAT32 file system of size bytes to out holding files,
// rootless, with mkfs.fat and mtools: a volume ID derived from seed and
// --invariant (no time or random values in the boot sector), directories
// made in sorted order, and every file dated 1980-01-01. It checks that the
// files fit before writing.
func makeESP(ctx context.Context, out string, size int64, files []ESPFile, seed Seed) error {
	if size < MinESPSize {
		return fmt.Errorf("esp size %d: at least %d bytes (FAT32)", size, int64(MinESPSize))
	}
	if err := checkESPFiles(files, size); err != nil {
		return err
	}
	mkfs, err := initrd.LookTool("mkfs.fat", "dosfstools")
	if err != nil {
		return err
	}
	id := seed.Derive("esp volume id")
	cmd := exec.CommandContext(ctx, mkfs, "-F", "32", "-C", "--invariant", "-n", "ESP",
		"-i", fmt.Sprintf("%08x", binary.LittleEndian.Uint32(id[:4])), out, fmt.Sprint(size/1024))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.fat: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return copyESPFiles(ctx, out, files)
}

// checkESPFiles refuses relative or repeated paths and files that cannot
// fit in an ESP of size bytes.
func checkESPFiles(files []ESPFile, size int64) error {
	seen := map[string]bool{}
	var total int64
	for _, f := range files {
		p := strings.ToUpper(path.Clean(f.Path))
		if !path.IsAbs(f.Path) || p == "/" {
			return fmt.Errorf("esp path %q: want an absolute file path", f.Path)
		}
		if seen[p] {
			return fmt.Errorf("esp path %q given twice (FAT names ignore case)", f.Path)
		}
		seen[p] = true
		fi, err := os.Stat(f.Source)
		if err != nil {
			return fmt.Errorf("esp file %s: %w", f.Path, err)
		}
		total += fi.Size()
	}
	if total > size*9/10 {
		return fmt.Errorf("esp files take %d bytes, more than an esp of %d bytes holds: give a larger --esp-size", total, size)
	}
	return nil
}

// copyESPFiles makes the directories (parents first) and copies the files
// with mtools, all dated [espTime] through SOURCE_DATE_EPOCH, which mtools
// uses instead of the current time for what it creates.
func copyESPFiles(ctx context.Context, img string, files []ESPFile) error {
	mmd, err := initrd.LookTool("mmd", "mtools")
	if err != nil {
		return err
	}
	mcopy, err := initrd.LookTool("mcopy", "mtools")
	if err != nil {
		return err
	}
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(path.Clean(f.Path)); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	sorted := make([]string, 0, len(dirs))
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted) // a parent sorts before its children
	for _, d := range sorted {
		if err := mtool(ctx, mmd, "-i", img, "::"+d); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := mtool(ctx, mcopy, "-i", img, f.Source, "::"+path.Clean(f.Path)); err != nil {
			return err
		}
	}
	return nil
}

func mtool(ctx context.Context, tool string, args ...string) error {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "TZ=UTC", "MTOOLSRC=/dev/null", fmt.Sprintf("SOURCE_DATE_EPOCH=%d", espTime.Unix()))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(tool), strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return nil
}
