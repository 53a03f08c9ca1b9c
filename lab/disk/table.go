package disk

import (
	"os"

	"github.com/confidisk/confidisk/gpt"
)

// ReadTable reads the GPT of the disk image at path (512-byte sectors).
func ReadTable(path string) (*gpt.Table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readTable(f)
}

// EditTable reads the GPT of the disk image at path, lets edit change it
// and writes it back (both headers and entry arrays) and syncs.
func EditTable(path string, edit func(*gpt.Table) error) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	tbl, err := readTable(f)
	if err != nil {
		return err
	}
	if err := edit(tbl); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tbl.Write(f, st.Size()); err != nil {
		return err
	}
	return f.Sync()
}

func readTable(f *os.File) (*gpt.Table, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return gpt.Read(f, st.Size(), 512)
}
