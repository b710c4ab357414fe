// Package redistest starts throwaway redis-server processes for tests, the
// way net/http/httptest starts HTTP servers: each Server listens on its own
// free loopback port, keeps its files in a directory the caller owns, and is
// killed by Stop. Every server is the redis-server of the Redis build the
// release ships, which scripts/setup builds from the release's blobs (see
// Program); tests never run another Redis on the machine.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long Start waits for a new server to answer PING.
const startTimeout = 10 * time.Second

// startAttempts is how often Start picks a new port when the one FreePort
// returned was taken by someone else before redis-server could bind it.
const startAttempts = 3

// Server is a bare redis-server started for a test by Start. Its fields
// describe the running server and must not be changed; the zero value is not
// a running server, and Stop on it does nothing.
type Server struct {
	// Addr is the host:port the server listens on, e.g. "127.0.0.1:6379".
	Addr string
	// Port is the TCP port of Addr.
	Port int
	// Dir is the server's working directory; it holds ConfFile, LogFile and
	// any data the server writes.
	Dir string
	// ConfFile is the absolute path of the redis.conf the server was started with.
	ConfFile string
	// LogFile is the file the server's stdout and stderr are appended to.
	LogFile string
	// Cmd is the running redis-server process.
	Cmd *exec.Cmd

	exited  chan struct{} // closed once Cmd.Wait has returned
	waitErr error         // Cmd.Wait's result; read only after exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Test ports come from below the kernel's ephemeral range (32768-60999 by
// default), which every outgoing connection and every listen on port 0 draws
// from: a port the kernel handed out as free a moment ago could be taken by
// any client connection before the caller binds it. Picked at random here,
// a port collides only with another test's random pick.
const (
	testPortMin = 20000
	testPortMax = 32000
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago (see
// FreePortOn).
func FreePort() (int, error) { return FreePortOn("127.0.0.1") }

// FreePortOn returns a TCP port on host that was free a moment ago: a random
// port below the ephemeral range that a probe listener could bind. Another
// test may still take it before the caller binds it, which is unlikely.
func FreePortOn(host string) (int, error) {
	var lastErr error
	for range 200 {
		port := testPortMin + rand.IntN(testPortMax-testPortMin)
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			lastErr = err
			continue
		}
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("closing probe listener on port %d: %w", port, err)
		}
		return port, nil
	}
	return 0, fmt.Errorf("no free port on %s in %d-%d: %w", host, testPortMin, testPortMax, lastErr)
}

// Start writes a minimal redis.conf into dir (which must exist), followed by
// extraConf, one directive per element (a later directive overrides an
// earlier one; port and bind must not be overridden), starts the tests' redis-server (Program) on a free loopback port with that file,
// and returns once the server answers PING (a NOAUTH reply counts, so
// extraConf may set requirepass). The server runs without persistence unless
// extraConf enables it, and dies with the test process. If redis-server exits
// first, the error includes its exit status and the tail of its log. Callers
// must Stop the Server.
func Start(dir string, extraConf ...string) (*Server, error) {
	if dir == "" {
		return nil, errors.New("redistest: dir must name an existing directory")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("redistest: resolving dir: %w", err)
	}
	if _, err := Program("redis-server"); err != nil {
		return nil, err
	}
	var lastErr error
	for range startAttempts {
		s, err := start(dir, extraConf)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	return nil, fmt.Errorf("redistest: %w", lastErr)
}

var errPortTaken = errors.New("port already in use")

func start(dir string, extraConf []string) (*Server, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Port:     port,
		Dir:      dir,
		ConfFile: filepath.Join(dir, "redis.conf"),
		LogFile:  filepath.Join(dir, "redis.log"),
		exited:   make(chan struct{}),
	}
	conf := []string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"daemonize no",
		`logfile ""`,
		"dir " + dir,
		`save ""`,
		"appendonly no",
	}
	conf = append(conf, extraConf...)
	if err := os.WriteFile(s.ConfFile, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", s.ConfFile, err)
	}
	logf, err := os.OpenFile(s.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	defer logf.Close()

	path, err := Program("redis-server")
	if err != nil {
		return nil, err
	}
	s.Cmd = exec.Command(path, s.ConfFile)
	s.Cmd.Dir = dir
	s.Cmd.Stdout = logf
	s.Cmd.Stderr = logf
	// A test binary that dies must not leave servers behind.
	s.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	go func() {
		s.waitErr = s.Cmd.Wait()
		close(s.exited)
	}()

	if err := s.waitReady(); err != nil {
		_ = s.Stop()
		tail := logTail(s.LogFile, 5)
		if strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return nil, fmt.Errorf("%w; log tail:\n%s", err, tail)
	}
	return s, nil
}

// waitReady polls the server with PING until it answers, exits or
// startTimeout passes.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if ping(s.Addr) {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("redis-server exited before answering PING: %v", s.waitErr)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING on %s within %v", s.Addr, startTimeout)
		}
	}
}

// ping reports whether a server at addr answers PING with PONG or NOAUTH,
// both of which mean it serves commands.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return false
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return false
	}
	return strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH")
}

// Stop kills the server with SIGKILL and waits until it has exited. It
// returns nil when the server is gone; calling it again does nothing.
func (s *Server) Stop() error {
	if s == nil || s.Cmd == nil || s.exited == nil {
		return nil
	}
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
			return
		default:
		}
		if err := s.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			s.stopErr = fmt.Errorf("redistest: killing redis-server pid %d: %w", s.Cmd.Process.Pid, err)
			return
		}
		<-s.exited
	})
	return s.stopErr
}

// logTail returns at most the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// logScript writes ARGV[1] to the server's log ARGV[2] times, at warning
// level (which every verbosity keeps). Redis cuts a line at 1,024 bytes.
const logScript = `for i = 1, tonumber(ARGV[2]) do redis.log(redis.LOG_WARNING, ARGV[1]) end return 0`

// WriteLog makes the server c is connected to write line into its log n
// times, through Lua's redis.log, which any user that may run EVAL (a
// tenant too) can call: the way a test fills a server's log.
func WriteLog(ctx context.Context, c redis.Scripter, line string, n int) error {
	return c.Eval(ctx, logScript, nil, line, n).Err()
}
