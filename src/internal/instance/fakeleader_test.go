package instance_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// fakeLeader is a Redis leader as a hostile tenant could run one: it
// answers a follower's handshake, sends an empty dataset and then streams
// whatever commands Send gives it, which the follower runs with admin
// rights.
type fakeLeader struct {
	ln   net.Listener
	mu   sync.Mutex
	conn net.Conn // the follower's replication link, once it synced
	wg   sync.WaitGroup
}

// emptyRDB is an RDB file with no keys, saved without a checksum.
var emptyRDB = "REDIS0009\xff\x00\x00\x00\x00\x00\x00\x00\x00"

func startFakeLeader() *fakeLeader {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	l := &fakeLeader{ln: ln}
	l.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.wg.Go(func() { l.serve(c) })
		}
	})
	DeferCleanup(l.close)
	return l
}

func (l *fakeLeader) port() int { return l.ln.Addr().(*net.TCPAddr).Port }

func (l *fakeLeader) close() {
	l.ln.Close()
	l.mu.Lock()
	if l.conn != nil {
		l.conn.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// serve answers one connection: PING, AUTH and REPLCONF with success,
// PSYNC with a full resync of the empty dataset, after which the
// connection is the stream.
func (l *fakeLeader) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		switch strings.ToUpper(args[0]) {
		case "PING":
			_, err = io.WriteString(c, "+PONG\r\n")
		case "PSYNC", "SYNC":
			_, err = fmt.Fprintf(c, "+FULLRESYNC %s 0\r\n$%d\r\n%s", strings.Repeat("ab", 20), len(emptyRDB), emptyRDB)
			if err == nil {
				l.mu.Lock()
				l.conn = c
				l.mu.Unlock()
				_, _ = io.Copy(io.Discard, r) // REPLCONF ACKs
				return
			}
		default:
			_, err = io.WriteString(c, "+OK\r\n")
		}
		if err != nil {
			return
		}
	}
}

// synced reports whether a follower took the dataset and listens to the
// stream.
func (l *fakeLeader) synced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn != nil
}

// Send streams one command to the follower.
func (l *fakeLeader) Send(args ...string) {
	l.mu.Lock()
	c := l.conn
	l.mu.Unlock()
	Expect(c).NotTo(BeNil(), "no follower synced")
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err := io.WriteString(c, b.String())
	Expect(err).NotTo(HaveOccurred())
}

// forget drops the synced follower, as a follower that reconnects makes
// a new link.
func (l *fakeLeader) forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conn = nil
}

// readCommand reads one RESP array of bulk strings, or an inline command.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "*") {
		return strings.Fields(line + " _"), nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil {
		return nil, err
	}
	args := make([]string, n)
	for i := range args {
		hdr, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimRight(hdr, "\r\n")[1:])
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}
