package secureboot

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// KeyBits is the RSA modulus size of generated keys: RSA-2048, the size
// every UEFI implementation verifies (UEFI spec 32.4.1 lists EFI_CERT_RSA2048
// and X.509 certificates of RSA-2048 keys as the baseline).
const KeyBits = 2048

// KeySet is a Secure Boot key hierarchy: the platform key (PK), the key
// exchange key (KEK) and the signature database key (db), with the owner
// GUID written as SignatureOwner in their signature lists.
type KeySet struct {
	Owner GUID
	PK    *Signer
	KEK   *Signer
	DB    *Signer
}

// GenerateKeys creates an RSA-2048 key and a self-signed X.509 v3
// certificate for each of PK, KEK and db, with the common names
// commonNamePrefix+" PK", " KEK" and " db", the validity
// [notBefore, notAfter] and a random 127-bit serial number read from rand.
//
// The RSA keys come from crypto/rsa, which since Go 1.26 ignores the rand
// argument (it always uses the system CSPRNG); rand only supplies the serial
// numbers.
func GenerateKeys(rand io.Reader, owner GUID, commonNamePrefix string, notBefore, notAfter time.Time) (*KeySet, error) {
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("generate keys: notAfter %s is not after notBefore %s", notAfter, notBefore)
	}
	ks := &KeySet{Owner: owner}
	for _, k := range []struct {
		name string
		dst  **Signer
		eku  []x509.ExtKeyUsage
	}{
		{"PK", &ks.PK, nil},
		{"KEK", &ks.KEK, nil},
		{"db", &ks.DB, []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}},
	} {
		s, err := generateSigner(rand, commonNamePrefix+" "+k.name, notBefore, notAfter, k.eku)
		if err != nil {
			return nil, fmt.Errorf("generate keys: %s: %w", k.name, err)
		}
		*k.dst = s
	}
	return ks, nil
}

func generateSigner(rand io.Reader, cn string, notBefore, notAfter time.Time, eku []x509.ExtKeyUsage) (*Signer, error) {
	key, err := rsa.GenerateKey(rand, KeyBits)
	if err != nil {
		return nil, fmt.Errorf("rsa key: %w", err)
	}
	serial, err := randomSerial(rand)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	return &Signer{key: key, cert: cert}, nil
}

// randomSerial reads a positive 127-bit serial number (RFC 5280 4.1.2.2:
// at most 20 octets, positive).
func randomSerial(rand io.Reader) (*big.Int, error) {
	var b [16]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // keep 16 octets in DER for every draw
	return new(big.Int).SetBytes(b[:]), nil
}

// Variable names and file stems of the hierarchy.
const (
	VarPK  = "PK"
	VarKEK = "KEK"
	VarDB  = "db"
	VarDBX = "dbx"
)

// OwnerFile is the name of the file WriteDir writes the owner GUID to.
const OwnerFile = "owner.txt"

// ESL returns the EFI_SIGNATURE_LIST (type EFI_CERT_X509_GUID, owner
// ks.Owner) holding the certificate of the key named name (VarPK, VarKEK
// or VarDB).
func (ks *KeySet) ESL(name string) ([]byte, error) {
	s, _, err := ks.member(name)
	if err != nil {
		return nil, err
	}
	return X509SignatureList(ks.Owner, s.cert.Raw), nil
}

// Auth returns the signed ".auth" update that enrolls the key named name:
// the EFI_VARIABLE_AUTHENTICATION_2 descriptor ([SignVariable]) with
// attributes [SecureBootVarAttributes] and the given timestamp, followed by
// the key's ESL. PK is signed by PK (self-signed, valid in setup mode), KEK
// by PK, db by KEK; PK and KEK use EFI_GLOBAL_VARIABLE as vendor GUID, db
// EFI_IMAGE_SECURITY_DATABASE_GUID. The same keys and timestamp give the
// same bytes.
func (ks *KeySet) Auth(name string, timestamp time.Time) ([]byte, error) {
	_, signer, err := ks.member(name)
	if err != nil {
		return nil, err
	}
	esl, err := ks.ESL(name)
	if err != nil {
		return nil, err
	}
	vendor := EFIGlobalVariableGUID
	if name == VarDB {
		vendor = ImageSecurityDatabaseGUID
	}
	return SignVariable(signer, name, vendor, SecureBootVarAttributes, timestamp, esl)
}

// member returns the key named name and the key that signs its update.
func (ks *KeySet) member(name string) (key, signer *Signer, err error) {
	switch name {
	case VarPK:
		key, signer = ks.PK, ks.PK
	case VarKEK:
		key, signer = ks.KEK, ks.PK
	case VarDB:
		key, signer = ks.DB, ks.KEK
	default:
		return nil, nil, fmt.Errorf("key set: no key named %q (want PK, KEK or db)", name)
	}
	if key == nil || signer == nil {
		return nil, nil, fmt.Errorf("key set: %s or its signer is missing", name)
	}
	return key, signer, nil
}

// WriteDir writes the key set into dir (which must exist):
//
//	PK.key KEK.key db.key   PKCS#8 PEM private keys, mode 0600
//	PK.crt KEK.crt db.crt   PEM certificates
//	PK.esl KEK.esl db.esl   EFI_SIGNATURE_LISTs ([KeySet.ESL])
//	PK.auth KEK.auth db.auth signed updates ([KeySet.Auth]) with authTime
//	dbx.esl                 a placeholder dbx ([PlaceholderDBX])
//	owner.txt               the owner GUID and a newline
//
// It encodes everything and refuses if any of these files exists before it
// writes the first one; each file is written to a temporary name in dir,
// synced and renamed into place.
func (ks *KeySet) WriteDir(dir string, authTime time.Time) error {
	type file struct {
		name string
		data []byte
		mode os.FileMode
	}
	var files []file
	for _, name := range []string{VarPK, VarKEK, VarDB} {
		s, _, err := ks.member(name)
		if err != nil {
			return fmt.Errorf("write key set: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(s.key)
		if err != nil {
			return fmt.Errorf("write key set: %s key: %w", name, err)
		}
		esl, err := ks.ESL(name)
		if err != nil {
			return fmt.Errorf("write key set: %w", err)
		}
		auth, err := ks.Auth(name, authTime)
		if err != nil {
			return fmt.Errorf("write key set: %w", err)
		}
		files = append(files,
			file{name + ".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600},
			file{name + ".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Raw}), 0o644},
			file{name + ".esl", esl, 0o644},
			file{name + ".auth", auth, 0o644},
		)
	}
	files = append(files,
		file{VarDBX + ".esl", PlaceholderDBX(), 0o644},
		file{OwnerFile, []byte(ks.Owner.String() + "\n"), 0o644})

	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("write key set: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("write key set: %s is not a directory", dir)
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("write key set: %s exists; refusing to overwrite keys", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write key set: %w", err)
		}
	}
	for _, f := range files {
		if err := writeFileAtomic(dir, f.name, f.data, f.mode); err != nil {
			return fmt.Errorf("write key set: %w", err)
		}
	}
	return nil
}

// writeFileAtomic writes data to dir/name through a temporary file in dir
// created with mode, synced and then renamed. It fails if dir/name appeared
// meanwhile only on systems where rename does not replace; the caller
// checked for existing files beforehand.
func writeFileAtomic(dir, name string, data []byte, mode os.FileMode) (err error) {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

// LoadKeySet reads the keys, certificates and owner GUID WriteDir wrote to
// dir and checks that each certificate belongs to its key, failing with
// "db.crt does not match db.key" otherwise. It does not read the .esl and
// .auth files (they are derived from the rest).
func LoadKeySet(dir string) (*KeySet, error) {
	ob, err := os.ReadFile(filepath.Join(dir, OwnerFile))
	if err != nil {
		return nil, fmt.Errorf("load key set: %w", err)
	}
	owner, err := ParseGUID(strings.TrimSpace(string(ob)))
	if err != nil {
		return nil, fmt.Errorf("load key set: %s: %w", OwnerFile, err)
	}
	ks := &KeySet{Owner: owner}
	for _, m := range []struct {
		name string
		dst  **Signer
	}{{VarPK, &ks.PK}, {VarKEK, &ks.KEK}, {VarDB, &ks.DB}} {
		keyPath := filepath.Join(dir, m.name+".key")
		certPath := filepath.Join(dir, m.name+".crt")
		s, err := loadPair(keyPath, certPath)
		if err != nil {
			return nil, fmt.Errorf("load key set: %w", err)
		}
		*m.dst = s
	}
	return ks, nil
}

// Equal reports whether ks and o hold the same owner, keys and certificates.
func (ks *KeySet) Equal(o *KeySet) bool {
	if ks == nil || o == nil {
		return ks == o
	}
	if ks.Owner != o.Owner {
		return false
	}
	for _, p := range [][2]*Signer{{ks.PK, o.PK}, {ks.KEK, o.KEK}, {ks.DB, o.DB}} {
		a, b := p[0], p[1]
		if a == nil || b == nil {
			if a != b {
				return false
			}
			continue
		}
		if !bytes.Equal(a.cert.Raw, b.cert.Raw) {
			return false
		}
		ak, ok := a.key.(interface{ Equal(crypto.PrivateKey) bool })
		if !ok || !ak.Equal(b.key) {
			return false
		}
	}
	return true
}
