// Package metrics serves a job's Prometheus metrics the way Cloud Foundry's
// Loggregator prom scraper collects them: HTTPS with the job's certificate,
// and only to a scraper that presents a client certificate signed by the
// metrics CA (Loggregator's metric_scraper_ca in a real deployment). A plain
// Prometheus scrapes the same endpoint with such a certificate.
//
// A request without a verified client certificate gets 403 and no data; a
// client certificate from another CA fails the TLS handshake.
package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cf-redis/redis-for-cf/src/internal/serve"
	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// Path is where the metrics are served.
const Path = "/metrics"

// Config is a job's metrics endpoint, as its config file holds it.
type Config struct {
	// Listen is host:port; empty turns metrics off.
	Listen string `json:"listen,omitempty"`
	// CertFile and KeyFile are the server's certificate and key (PEM).
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// CAFile is the CA (PEM) of the scrapers' client certificates.
	CAFile string `json:"ca_file,omitempty"`
}

// Enabled says whether the config serves metrics.
func (c Config) Enabled() bool { return c.Listen != "" }

// Validate checks an enabled config: an address and all three files.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen %q: %w", c.Listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("metrics.listen %q: not host:port", c.Listen)
	}
	for name, f := range map[string]string{"cert_file": c.CertFile, "key_file": c.KeyFile, "ca_file": c.CAFile} {
		if f == "" {
			return fmt.Errorf("metrics.%s is required when metrics.listen is set (metrics are served over HTTPS to scrapers with a client certificate only)", name)
		}
	}
	return nil
}

// NewRegistry is a registry holding the Go runtime's and the process's
// collectors (go_*, process_*), to which a job adds its own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves g's metrics at Path to requests whose client certificate
// the TLS handshake verified, and 403 to any other.
func Handler(g prometheus.Gatherer, logger *slog.Logger) http.Handler {
	prom := promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintln(w, "metrics are served only to scrapers with a client certificate signed by the metrics CA")
			return
		}
		prom.ServeHTTP(w, r)
	})
	return mux
}

// ServerTLS is the TLS config of a metrics server: the config's
// certificate, and client certificates verified against its CA when given
// (a request without one reaches Handler, which answers 403).
func (c Config) ServerTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("metrics certificate: %w", err)
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("metrics CA: %w", err)
	}
	pool, err := tlsca.Pool(string(caPEM))
	if err != nil {
		return nil, errors.New("metrics CA: no PEM certificate in " + c.CAFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}, nil
}

// Serve serves g's metrics as the config says until ctx ends, reporting the
// bound address through ready (when not nil). A disabled config returns nil
// at once.
func (c Config) Serve(ctx context.Context, g prometheus.Gatherer, logger *slog.Logger, ready func(net.Addr)) error {
	if !c.Enabled() {
		return nil
	}
	tlsConf, err := c.ServerTLS()
	if err != nil {
		return err
	}
	return serve.Server{Addr: c.Listen, Handler: Handler(g, logger), TLSConfig: tlsConf, Logger: logger}.Run(ctx, ready)
}
