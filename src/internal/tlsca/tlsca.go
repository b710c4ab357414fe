// Package tlsca turns the PEM CA certificates of a config into what a TLS
// client verifies servers with. Certificates are always verified: there is
// no way here to skip it (a caller that offers one sets InsecureSkipVerify
// itself, where its config says so).
package tlsca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

// ErrNoCertificate means a PEM string holds no certificate. Its text reads
// after the name of the field it came from ("s3 ca_cert holds no PEM
// certificate").
var ErrNoCertificate = errors.New("holds no PEM certificate")

// Pool returns a pool of the certificates in pemCerts (one or several PEM
// blocks), or ErrNoCertificate when there is none.
func Pool(pemCerts string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(pemCerts)) {
		return nil, ErrNoCertificate
	}
	return pool, nil
}

// ClientConfig returns the TLS config of a client that speaks TLS 1.2 or
// later and verifies servers against the CAs in pemCerts; an empty pemCerts
// means the system's roots. Its only error is ErrNoCertificate.
func ClientConfig(pemCerts string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if pemCerts == "" {
		return cfg, nil
	}
	pool, err := Pool(pemCerts)
	if err != nil {
		return nil, err
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// SystemClientConfig is ClientConfig with the system's roots (the VM's trust
// store) trusted beside the CAs in pemCerts, for servers whose certificates
// may come from a public CA, the BOSH director's trusted certificates or an
// operator's CA. An empty pemCerts means the system's roots alone; when
// they cannot be read, pemCerts alone. Its only error is ErrNoCertificate.
func SystemClientConfig(pemCerts string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if pemCerts == "" {
		return cfg, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM([]byte(pemCerts)) {
		return nil, ErrNoCertificate
	}
	cfg.RootCAs = pool
	return cfg, nil
}
