package metrics_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// server serves a registry holding one counter over the metrics endpoint
// with certificates of ca, and returns its URL.
func server(t *testing.T, ca *tlstest.CA) string {
	t.Helper()
	dir := t.TempDir()
	cert, key, caFile, err := ca.RedisFiles(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "redis_test_things_total", Help: "Things."})
	c.Add(3)
	reg.MustRegister(c)
	cfg := metrics.Config{Listen: "127.0.0.1:0", CertFile: cert, KeyFile: key, CAFile: caFile}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- cfg.Serve(ctx, reg, slog.New(slog.DiscardHandler), func(a net.Addr) { addr <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case a := <-addr:
		return "https://" + a.String() + metrics.Path
	case err := <-done:
		t.Fatal(err)
	}
	return ""
}

// clientTLS trusts ca for the server and, when client is not nil, presents
// a certificate client issued.
func clientTLS(t *testing.T, ca, client *tlstest.CA) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca.PEM))
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if client != nil {
		certFile, keyFile, err := client.Issue(t.TempDir(), "scraper")
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf
}

func TestScrapeWithTheMetricsCAsClientCertificate(t *testing.T) {
	ca, err := tlstest.NewCA("metrics")
	if err != nil {
		t.Fatal(err)
	}
	url := server(t, ca)
	families, err := metrics.Scrape(context.Background(), url, clientTLS(t, ca, ca))
	if err != nil {
		t.Fatal(err)
	}
	f := families["redis_test_things_total"]
	if f == nil || len(f.Metric) != 1 || f.Metric[0].GetCounter().GetValue() != 3 {
		t.Fatalf("redis_test_things_total = %v, want one counter at 3", f)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if families[name] == nil {
			t.Errorf("no %s in the scrape", name)
		}
	}
}

func TestNoClientCertificateGets403AndNoData(t *testing.T) {
	ca, err := tlstest.NewCA("metrics")
	if err != nil {
		t.Fatal(err)
	}
	url := server(t, ca)
	code, body, err := metrics.Get(context.Background(), url, clientTLS(t, ca, nil))
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusForbidden {
		t.Errorf("status %d, want 403", code)
	}
	if strings.Contains(string(body), "redis_test_things_total") || strings.Contains(string(body), "go_") {
		t.Errorf("the 403 carries metrics: %q", body)
	}
	if _, err := metrics.Scrape(context.Background(), url, clientTLS(t, ca, nil)); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Scrape without a client certificate: %v, want a 403 error", err)
	}
}

func TestClientCertificateOfAnotherCAIsRefused(t *testing.T) {
	ca, err := tlstest.NewCA("metrics")
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlstest.NewCA("someone else")
	if err != nil {
		t.Fatal(err)
	}
	url := server(t, ca)
	if fams, err := metrics.Scrape(context.Background(), url, clientTLS(t, ca, other)); err == nil {
		t.Fatalf("a certificate of another CA scraped %d families", len(fams))
	}
}

func TestPlainHTTPGetsNoData(t *testing.T) {
	ca, err := tlstest.NewCA("metrics")
	if err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(server(t, ca), "https://", "http://", 1)
	resp, err := http.Get(url)
	if err != nil {
		return // refused outright: no data
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "go_") {
		t.Errorf("plain HTTP got %d %q", resp.StatusCode, body)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  metrics.Config
		want string
	}{
		{metrics.Config{}, ""},
		{metrics.Config{Listen: "0.0.0.0:9091", CertFile: "c", KeyFile: "k", CAFile: "ca"}, ""},
		{metrics.Config{Listen: "0.0.0.0:9091", CertFile: "c", KeyFile: "k"}, "metrics.ca_file is required"},
		{metrics.Config{Listen: "9091", CertFile: "c", KeyFile: "k", CAFile: "ca"}, "metrics.listen"},
		{metrics.Config{Listen: "0.0.0.0:http", CertFile: "c", KeyFile: "k", CAFile: "ca"}, "not host:port"},
	} {
		err := c.cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}
