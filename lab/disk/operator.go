package disk

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"

	"github.com/confidisk/confidisk/recovery"
)

// OperatorKeys makes the operator's recovery key pair in dir
// (recovery.key, recovery.pub, PEM): the private key stays on the host, the
// public key goes into the initrd (provision.DefaultRecoveryKey).
func OperatorKeys(dir string) (priv, pub string, err error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	privPEM, pubPEM, err := recovery.MarshalKeys(k)
	if err != nil {
		return "", "", err
	}
	priv, pub = filepath.Join(dir, "recovery.key"), filepath.Join(dir, "recovery.pub")
	return priv, pub, errors.Join(os.WriteFile(priv, privPEM, 0o600), os.WriteFile(pub, pubPEM, 0o644))
}
