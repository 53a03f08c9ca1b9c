package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLSFiles are the certificate and key files [EnsureTLS] keeps in
// DATA/tls. All are PEM; keys are PKCS #8 with mode 0600.
type TLSFiles struct {
	// ServerCert and ServerKey: the broker's self-signed certificate
	// (clients pin ServerCert as their only root).
	ServerCert, ServerKey string
	// OperatorCA and OperatorCAKey: the CA that issues operator client
	// certificates (keep the key offline in production).
	OperatorCA, OperatorCAKey string
	// OperatorCert and OperatorKey: a first operator client certificate.
	OperatorCert, OperatorKey string
}

// TLSPaths returns where [EnsureTLS] keeps its files under dir.
func TLSPaths(dir string) TLSFiles {
	j := func(n string) string { return filepath.Join(dir, n) }
	return TLSFiles{
		ServerCert: j("server.crt"), ServerKey: j("server.key"),
		OperatorCA: j("operator-ca.crt"), OperatorCAKey: j("operator-ca.key"),
		OperatorCert: j("operator.crt"), OperatorKey: j("operator.key"),
	}
}

const certValidity = 10 * 365 * 24 * time.Hour

// EnsureTLS makes sure dir holds a server certificate, an operator CA and
// an operator client certificate, generating all of them (ECDSA P-256, valid
// ten years) when dir does not exist. The server certificate names
// localhost, 127.0.0.1, ::1 and the given extra hosts (names or IP
// addresses). Generation is atomic: the files are written to a temporary
// directory that is then renamed to dir. It reports whether it generated.
func EnsureTLS(dir string, hosts []string, now time.Time) (TLSFiles, bool, error) {
	files := TLSPaths(dir)
	if _, err := os.Stat(dir); err == nil {
		return files, false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return files, false, fmt.Errorf("tls directory: %w", err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return files, false, fmt.Errorf("tls directory: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-tls-*")
	if err != nil {
		return files, false, fmt.Errorf("tls directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := generateTLS(TLSPaths(tmp), hosts, now); err != nil {
		return files, false, fmt.Errorf("generate tls files: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return files, false, fmt.Errorf("generate tls files: %w", err)
	}
	if d, err := os.Open(parent); err == nil {
		d.Sync()
		d.Close()
	}
	return files, true, nil
}

func generateTLS(f TLSFiles, hosts []string, now time.Time) error {
	caKey, caCert, err := issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "confidisk operator CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, nil, now)
	if err != nil {
		return err
	}
	opKey, opCert, err := issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "operator"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, caKey, now)
	if err != nil {
		return err
	}
	srv := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "confidisk broker"},
		IsCA:                  true, // self-signed: clients pin it as a root
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() && !ip.IsLoopback() {
				srv.IPAddresses = append(srv.IPAddresses, ip)
			}
		} else if h != "" && h != "localhost" {
			srv.DNSNames = append(srv.DNSNames, h)
		}
	}
	srvKey, srvCert, err := issue(srv, nil, nil, now)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		path string
		der  []byte
		typ  string
	}{
		{f.OperatorCA, caCert.Raw, "CERTIFICATE"},
		{f.OperatorCAKey, caKey, "PRIVATE KEY"},
		{f.OperatorCert, opCert.Raw, "CERTIFICATE"},
		{f.OperatorKey, opKey, "PRIVATE KEY"},
		{f.ServerCert, srvCert.Raw, "CERTIFICATE"},
		{f.ServerKey, srvKey, "PRIVATE KEY"},
	} {
		if err := writeFileAtomic(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// issue creates a key and a certificate from tmpl, signed by parent (self-
// signed when parent is nil). It returns the PKCS #8 key and the certificate.
func issue(tmpl, parent *x509.Certificate, parentKeyDER []byte, now time.Time) ([]byte, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(certValidity)
	signer, signerCert := any(key), tmpl
	if parent != nil {
		pk, err := x509.ParsePKCS8PrivateKey(parentKeyDER)
		if err != nil {
			return nil, nil, err
		}
		signer, signerCert = pk, parent
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return keyDER, cert, nil
}

// ServerTLSConfig loads the broker's certificate and the operator CA into a
// server configuration that asks clients for a certificate and verifies any
// that is given (tls.VerifyClientCertIfGiven): guests connect without one,
// operator endpoints require one.
func ServerTLSConfig(certFile, keyFile, operatorCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	caPEM, err := os.ReadFile(operatorCAFile)
	if err != nil {
		return nil, fmt.Errorf("load operator CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("load operator CA: no PEM certificate in %s", operatorCAFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}, nil
}
