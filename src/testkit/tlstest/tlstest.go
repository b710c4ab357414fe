// Package tlstest makes throwaway certificate authorities and server
// certificates for tests of the project's TLS connections.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// CA is a certificate authority held in memory.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate, as a client's trust config takes it.
	PEM string
}

// NewCA makes a CA valid for a day.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}, nil
}

// Issue makes a server certificate for the given IP addresses and DNS names
// and writes it and its key as PEM files into dir, returning their paths.
func (ca *CA) Issue(dir string, hosts ...string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, hosts[0]+".crt"), filepath.Join(dir, hosts[0]+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// RedisFiles issues a certificate for hosts into dir and writes the CA
// beside it: the three files of a redis_tls config.
func (ca *CA) RedisFiles(dir string, hosts ...string) (certFile, keyFile, caFile string, err error) {
	if certFile, keyFile, err = ca.Issue(dir, hosts...); err != nil {
		return "", "", "", err
	}
	caFile = filepath.Join(dir, "ca-"+hosts[0]+".pem")
	return certFile, keyFile, caFile, os.WriteFile(caFile, []byte(ca.PEM), 0o600)
}

// T is what the helpers below need of a test; testing.TB and Ginkgo's
// GinkgoT() have it.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// RedisTLS is an agent's redis_tls config: a certificate for hosts, issued
// into dir, and the CA beside it.
func (ca *CA) RedisTLS(t T, dir string, hosts ...string) *instance.RedisTLS {
	t.Helper()
	certFile, keyFile, caFile, err := ca.RedisFiles(dir, hosts...)
	if err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	return &instance.RedisTLS{CertFile: certFile, KeyFile: keyFile, CAFile: caFile}
}

// ClientTLS is the TLS config of a client that trusts ca for the server
// and, when name is not empty, presents a certificate ca issued for name
// (written into dir): a metrics scraper's, say. An empty name presents
// none.
func (ca *CA) ClientTLS(t T, dir, name string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if name == "" {
		return conf
	}
	certFile, keyFile, err := ca.Issue(dir, name)
	if err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("tlstest: %v", err)
	}
	conf.Certificates = []tls.Certificate{pair}
	return conf
}

// RedisClient is a go-redis client of host:port over TLS that verifies the
// server against caPEM, logged in as user, as an app with a binding's
// tls_uri connects; it is closed when the test ends.
func RedisClient(t T, host string, port int, caPEM, user, password string) *redis.Client {
	t.Helper()
	pool, err := tlsca.Pool(caPEM)
	if err != nil {
		t.Fatalf("tlstest: the CA %v", err)
	}
	c := redis.NewClient(&redis.Options{
		Addr: net.JoinHostPort(host, strconv.Itoa(port)), Username: user, Password: password,
		TLSConfig:  &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12},
		MaxRetries: -1, DialTimeout: 2 * time.Second,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
