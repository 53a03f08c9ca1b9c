package broker

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const kekSize = 32

// LoadOrCreateKEK reads the 32-byte key-encryption key at path, creating it
// (mode 0600, from crypto/rand) if it does not exist.
func LoadOrCreateKEK(path string) ([]byte, error) {
	k, err := os.ReadFile(path)
	if err == nil {
		if len(k) != kekSize {
			return nil, fmt.Errorf("key-encryption key %s is %d bytes, want %d", path, len(k), kekSize)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read key-encryption key: %w", err)
	}
	k = make([]byte, kekSize)
	rand.Read(k)
	if err := writeFileAtomic(path, k, 0o600); err != nil {
		return nil, fmt.Errorf("create key-encryption key: %w", err)
	}
	return k, nil
}

// writeFileAtomic writes data to a temporary file, fsyncs it and renames it
// to path, refusing to replace an existing file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Link fails if path exists, unlike Rename.
	if err := os.Link(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func kekAAD(uuid, keyID string) []byte {
	return []byte("confidisk kek v1\x00" + uuid + "\x00" + keyID)
}

// sealAtRest encrypts a volume key under the KEK, bound to uuid and keyID.
func sealAtRest(kek []byte, uuid, keyID string, key []byte) ([]byte, error) {
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, key, kekAAD(uuid, keyID)), nil
}

// openAtRest reverses sealAtRest.
func openAtRest(kek []byte, uuid, keyID string, sealed []byte) ([]byte, error) {
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("sealed key is too short")
	}
	n := aead.NonceSize()
	key, err := aead.Open(nil, sealed[:n], sealed[n:], kekAAD(uuid, keyID))
	if err != nil {
		return nil, fmt.Errorf("open sealed key of %s (wrong key-encryption key?): %w", uuid, err)
	}
	return key, nil
}

func newGCM(kek []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	return cipher.NewGCM(b)
}
