package disk

import (
	"fmt"
	"os"

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
	f, err := os.OpenFile(d.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	tbl, err := gpt.Read(f, st.Size(), 512)
	if err != nil {
		return nil, err
	}
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
		return nil, fmt.Errorf("usr disk: %d root partitions retyped, want 2", retyped)
	}
	if err := tbl.Write(f, st.Size()); err != nil {
		return nil, err
	}
	return d, f.Sync()
}

// UsrCmdline is the kernel command line the lab boots a [BuildUsr] disk
// with.
func (d *Disk) UsrCmdline() []string {
	return []string{"usrhash=" + d.RootHash, "confidisk.switch-root=0"}
}
