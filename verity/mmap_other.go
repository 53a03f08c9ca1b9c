//go:build !linux

package verity

import (
	"errors"
	"io"
	"os"
)

// Mapping is a read-only memory map of a file; only Linux has one here.
type Mapping struct{ io.ReaderAt }

// Map is not supported on this system; callers fall back to plain reads.
func Map(f *os.File, size int64) (*Mapping, error) {
	return nil, errors.ErrUnsupported
}

func (m *Mapping) slice(off int64, n int) ([]byte, bool) { return nil, false }

func (m *Mapping) release(off int64, n int) {}

// Close does nothing.
func (m *Mapping) Close() error { return nil }
