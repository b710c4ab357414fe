// Package serve runs an HTTP API with the timeouts and graceful shutdown every
// one of the project's servers needs.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is an HTTP API about to be served. Zero timeouts take the defaults
// documented on each field.
type Server struct {
	// Addr is the host:port to listen on.
	Addr    string
	Handler http.Handler
	// CertFile and KeyFile, when both set, serve HTTPS (TLS 1.2 or later).
	CertFile, KeyFile string
	// TLSConfig, when set, serves HTTPS with it (its certificates, client
	// certificate checks); CertFile and KeyFile are then unused.
	TLSConfig *tls.Config
	// WriteTimeout bounds a whole request; zero means 120s, enough for the
	// slowest operation (creating an instance that loads a large AOF).
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// Run listens, reports the bound address through ready (when not nil), and
// serves until ctx ends; then it stops accepting and waits up to 30s for
// requests in flight.
func (s Server) Run(ctx context.Context, ready func(addr net.Addr)) error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.Addr, err)
	}
	if s.WriteTimeout == 0 {
		s.WriteTimeout = 120 * time.Second
	}
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() {
		if s.TLSConfig != nil {
			srv.TLSConfig = s.TLSConfig
			errc <- srv.ServeTLS(ln, "", "")
		} else if s.CertFile != "" {
			errc <- srv.ServeTLS(ln, s.CertFile, s.KeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = serveErr
	}
	return err
}
