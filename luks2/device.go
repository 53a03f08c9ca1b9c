package luks2

import "io"

// SyncWriterAt is what a header write needs: positioned writes, and Sync to
// make them durable (a barrier: what was written before Sync reaches the
// disk before anything written after it). *os.File has both.
type SyncWriterAt interface {
	io.WriterAt
	Sync() error
}

// Device is a LUKS2 device open for reading and writing.
type Device interface {
	io.ReaderAt
	SyncWriterAt
}

// syncer gives a plain io.WriterAt a Sync: its own if it has one, else one
// that does nothing (for writers with no cache, such as a buffer in memory).
func syncer(w io.WriterAt) SyncWriterAt {
	if s, ok := w.(SyncWriterAt); ok {
		return s
	}
	return noSync{w}
}

type noSync struct{ io.WriterAt }

func (noSync) Sync() error { return nil }
