// Package miniotest starts throwaway MinIO servers for tests, the way
// redistest starts redis-servers: each listens on a free loopback port,
// keeps its objects in a directory the caller owns, and dies with Stop.
// scripts/setup installs the pinned MinIO binary into $(go env GOPATH)/bin.
package miniotest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

// Credentials of every server Start runs.
const (
	AccessKey = "miniotest-access"
	SecretKey = "miniotest-secret-key-0123456789"
)

// Server is a running MinIO server. Its fields must not be changed.
type Server struct {
	// Endpoint is the S3 API's URL, http://127.0.0.1:PORT.
	Endpoint string
	// Addr is the host:port of Endpoint.
	Addr string
	// Dir holds the objects.
	Dir string
	// LogFile receives MinIO's output.
	LogFile string

	path    string
	console string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Binary finds the minio binary: $MINIO, then PATH, then $(go env GOBIN),
// then $(go env GOPATH)/bin, where scripts/setup installs it.
func Binary() (string, error) {
	if p := os.Getenv("MINIO"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	var dirs []string
	if out, err := exec.Command("go", "env", "GOBIN").Output(); err == nil && strings.TrimSpace(string(out)) != "" {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(dir, "bin"))
		}
	}
	for _, dir := range dirs {
		if p := filepath.Join(dir, "minio"); fileExists(p) {
			return p, nil
		}
	}
	return "", errors.New("miniotest: no minio binary: run scripts/setup, or set MINIO")
}

// Start runs MinIO on free loopback ports with its data in dir (which must
// exist) and returns once it is ready.
func Start(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	port, err := redistest.FreePort()
	if err != nil {
		return nil, err
	}
	console, err := redistest.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{
		Endpoint: "http://" + addr,
		Addr:     addr,
		Dir:      filepath.Join(dir, "objects"),
		LogFile:  filepath.Join(dir, "minio.log"),
		path:     bin,
		console:  net.JoinHostPort("127.0.0.1", strconv.Itoa(console)),
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	return s, s.Start()
}

// Start runs the server again on the same address and data after Stop; it
// does nothing when the server runs.
func (s *Server) Start() error {
	if s.cmd != nil {
		return nil
	}
	log, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(s.path, "server", s.Dir, "--address", s.Addr, "--console-address", s.console, "--quiet")
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	cmd.Stdout, cmd.Stderr = log, log
	// A test binary that dies must not leave MinIO behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("miniotest: starting %s: %w", s.path, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("miniotest: minio exited at start; see %s", s.LogFile)
		default:
		}
		// The health check can pass before the object layer serves
		// ("Server not initialized yet") after a restart: a listing must
		// succeed too.
		if resp, err := http.Get(s.Endpoint + "/minio/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && s.serves() {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = s.Stop()
	return fmt.Errorf("miniotest: minio was not ready on %s within 30s; see %s", s.Addr, s.LogFile)
}

// serves reports whether the server answers a bucket listing.
func (s *Server) serves() bool {
	c, err := s.Client()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = c.ListBuckets(ctx)
	return err == nil
}

// Stop kills the server and waits until it is gone; it does nothing when
// the server is not running.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	return nil
}

// Client returns a minio-go client with the server's root credentials.
func (s *Server) Client() (*minio.Client, error) {
	return minio.New(s.Addr, &minio.Options{Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), BucketLookup: minio.BucketLookupPath})
}

// MakeBucket creates a bucket.
func (s *Server) MakeBucket(name string) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	return c.MakeBucket(context.Background(), name, minio.MakeBucketOptions{})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
