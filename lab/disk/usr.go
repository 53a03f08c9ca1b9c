package disk

import (
	"fmt"

	"github.com/confidisk/confidisk/gpt"
)

// BuildUsr makes a disk for usrhash=: as [Build], but files are the /usr
// tree and its verity pair are usr and usr-verity partitions (DPS types,
// the same UUIDs from the hash). Boot it with [Disk.UsrCmdline].
func BuildUsr(dir, bin string, files map[string]string) (*Disk, error) {
	d, err := Build(dir, bin, files)
	if err != nil {
		return nil, err
	}
	err = EditTable(d.Path, func(tbl *gpt.Table) error {
		retyped := 0
		for i, p := range tbl.Partitions {
			switch p.Type {
			case gpt.TypeRootX86_64:
				tbl.Partitions[i].Type, tbl.Partitions[i].Name = gpt.TypeUsrX86_64, "usr-x86-64"
				retyped++
			case gpt.TypeRootVerityX86_64:
				tbl.Partitions[i].Type, tbl.Partitions[i].Name = gpt.TypeUsrVerityX86_64, "usr-x86-64-verity"
				retyped++
			}
		}
		if retyped != 2 {
			return fmt.Errorf("usr disk: %d root partitions retyped, want 2", retyped)
		}
		return nil
	})
	return d, err
}

// UsrCmdline is the kernel command line the lab boots a [BuildUsr] disk
// with.
func (d *Disk) UsrCmdline() []string {
	return []string{"usrhash=" + d.RootHash, "confidisk.switch-root=0"}
}
