package tlsca_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// server starts an HTTPS server whose certificate a new CA signed, and
// returns it with that CA's PEM.
func server(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	ca, err := tlstest.NewCA("tlsca-test")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.Issue(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// The handshakes a wrong CA makes fail on purpose.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, ca.PEM
}

func get(cfg *tls.Config, url string) error {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Get(url)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

func TestClientConfigTrustsTheCAsGivenAndNoOther(t *testing.T) {
	srv, caPEM := server(t)
	_, otherPEM := server(t)

	cfg, err := tlsca.ClientConfig(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.InsecureSkipVerify {
		t.Fatalf("MinVersion %x, InsecureSkipVerify %v", cfg.MinVersion, cfg.InsecureSkipVerify)
	}
	if err := get(cfg, srv.URL); err != nil {
		t.Fatalf("the server's own CA: %v", err)
	}
	// Several PEM blocks: any of them may have signed the server's.
	both, err := tlsca.ClientConfig(otherPEM + caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(both, srv.URL); err != nil {
		t.Fatalf("a bundle with the server's CA second: %v", err)
	}
	other, err := tlsca.ClientConfig(otherPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(other, srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("another CA was trusted: %v", err)
	}
	// No CA given: the system's roots, which did not sign a test CA.
	system, err := tlsca.ClientConfig("")
	if err != nil || system.RootCAs != nil {
		t.Fatalf("%v, %v", system.RootCAs, err)
	}
	if err := get(system, srv.URL); err == nil {
		t.Fatal("the system roots trusted a test CA")
	}
}

func TestPoolRefusesWhatHoldsNoCertificate(t *testing.T) {
	for _, pem := range []string{"", "not PEM", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := tlsca.Pool(pem); !errors.Is(err, tlsca.ErrNoCertificate) {
			t.Errorf("%q: %v", pem, err)
		}
		if pem != "" {
			if _, err := tlsca.ClientConfig(pem); !errors.Is(err, tlsca.ErrNoCertificate) {
				t.Errorf("ClientConfig(%q): %v", pem, err)
			}
		}
	}
	_, caPEM := server(t)
	pool, err := tlsca.Pool(caPEM)
	if err != nil || pool == nil {
		t.Fatalf("%v, %v", pool, err)
	}
}

func TestSystemClientConfigAddsTheCAsToTheSystemRoots(t *testing.T) {
	srv, caPEM := server(t)
	_, otherPEM := server(t)
	cfg, err := tlsca.SystemClientConfig(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.InsecureSkipVerify {
		t.Fatalf("MinVersion %x, InsecureSkipVerify %v", cfg.MinVersion, cfg.InsecureSkipVerify)
	}
	if err := get(cfg, srv.URL); err != nil {
		t.Fatalf("the server's own CA: %v", err)
	}
	other, err := tlsca.SystemClientConfig(otherPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(other, srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("another CA was trusted: %v", err)
	}
	// The system's roots are still there: the pool holds more than the one
	// CA given (Debian's ca-certificates are installed on these machines).
	if system, err := x509.SystemCertPool(); err == nil && len(system.Subjects()) > 0 { //nolint:staticcheck // counting only
		if n := len(other.RootCAs.Subjects()); n != len(system.Subjects())+1 { //nolint:staticcheck // counting only
			t.Fatalf("%d roots, want the system's %d and the one given", n, len(system.Subjects()))
		}
	}
	if _, err := tlsca.SystemClientConfig("not PEM"); !errors.Is(err, tlsca.ErrNoCertificate) {
		t.Fatalf("not PEM: %v", err)
	}
}
