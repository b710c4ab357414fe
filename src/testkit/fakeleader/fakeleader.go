// Package fakeleader is a hostile Redis leader for tests: a TCP server on
// 127.0.0.1 that speaks enough of the replication protocol for a real
// redis-server to follow it, and then streams whatever commands the test
// chose. A leader's stream runs with admin rights on its follower, so this is
// how a tenant who runs the leader attacks a follower the platform runs.
//
// It answers PING with +PONG, AUTH and REPLCONF with +OK, and PSYNC or SYNC
// with a full resync of an empty data set; after that it sends its commands
// once, or again and again after Repeat. It counts the connections it was
// offered and keeps the open ones, so a test can see a follower reconnect or
// give up.
package fakeleader

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// emptyRDB is an RDB file of an empty data set: what redis-server 7.0.15
// wrote for SAVE on an empty database (dump.rdb, RDB version 10, with its
// aux fields and CRC64). A follower loads it as the leader's data.
var emptyRDB = []byte("REDIS0010\xfa\x09redis-ver\x067.0.15\xfa\x0aredis-bits\xc0\x40" +
	"\xfa\x05ctime\xc2\xdd\xb2\x11\x6b\xfa\x08used-mem\xc2\x00\xf4\x0d\x00" +
	"\xfa\x08aof-base\xc0\x00\xff\x03\xfa\xb3\xc9\x93\x21\x95\xbf")

// replID is the replication id the leader announces: 40 hex digits.
const replID = "f00dfacef00dfacef00dfacef00dfacef00dface"

// Leader is a running fake leader. The zero value is not usable; call Start.
type Leader struct {
	ln       net.Listener
	commands [][]string

	mu          sync.Mutex
	every       time.Duration
	connections int
	syncs       int
	open        map[net.Conn]struct{}
	// synced are the connections past their full resync: the stream.
	// wmu orders the writes to them.
	synced map[net.Conn]struct{}
	wmu    sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// Start listens on a free port of 127.0.0.1 and serves every follower that
// connects: after its full resync, each gets commands (each a command and
// its arguments) once.
func Start(commands ...[]string) (*Leader, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &Leader{ln: ln, commands: commands, open: map[net.Conn]struct{}{}, synced: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Host is the address the leader listens on.
func (l *Leader) Host() string { return l.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the port the leader listens on.
func (l *Leader) Port() int { return l.ln.Addr().(*net.TCPAddr).Port }

// Repeat makes the leader send its commands again every interval to every
// follower in sync, now and after every later resync, until Close.
func (l *Leader) Repeat(every time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.every = every
}

// Connections counts the connections accepted since Start.
func (l *Leader) Connections() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connections
}

// Syncs counts the full resyncs served since Start.
func (l *Leader) Syncs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncs
}

// Synced counts the followers in sync now: their connections are open and
// past the full resync.
func (l *Leader) Synced() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.synced)
}

// Send streams one more command to every follower in sync now.
func (l *Leader) Send(args ...string) error {
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.synced))
	for c := range l.synced {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	if len(conns) == 0 {
		return fmt.Errorf("fakeleader: no follower in sync to send %s to", args[0])
	}
	batch := encode([][]string{args})
	l.wmu.Lock()
	defer l.wmu.Unlock()
	for _, c := range conns {
		if _, err := c.Write(batch); err != nil {
			return err
		}
	}
	return nil
}

// Open counts the connections open now.
func (l *Leader) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}

// Close stops listening, closes every connection and waits for the leader's
// goroutines to end.
func (l *Leader) Close() error {
	l.mu.Lock()
	l.closed = true
	for c := range l.open {
		c.Close()
	}
	l.mu.Unlock()
	err := l.ln.Close()
	l.wg.Wait()
	return err
}

func (l *Leader) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.connections++
		l.open[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			defer func() {
				l.mu.Lock()
				delete(l.open, c)
				l.mu.Unlock()
				c.Close()
			}()
			_ = l.serve(c)
		}()
	}
}

// serve answers a follower's handshake and then streams the commands.
func (l *Leader) serve(c net.Conn) error {
	r := bufio.NewReader(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return err
		}
		if len(args) == 0 {
			continue
		}
		switch strings.ToUpper(args[0]) {
		case "PING":
			_, err = io.WriteString(c, "+PONG\r\n")
		case "AUTH", "REPLCONF", "SELECT":
			_, err = io.WriteString(c, "+OK\r\n")
		case "PSYNC", "SYNC":
			return l.stream(c, r)
		default:
			_, err = fmt.Fprintf(c, "-ERR unknown command '%s'\r\n", args[0])
		}
		if err != nil {
			return err
		}
	}
}

// stream sends the full resync and the commands, and drains what the
// follower sends back (its REPLCONF ACKs) until the connection ends.
func (l *Leader) stream(c net.Conn, r *bufio.Reader) error {
	if _, err := fmt.Fprintf(c, "+FULLRESYNC %s 0\r\n$%d\r\n", replID, len(emptyRDB)); err != nil {
		return err
	}
	if _, err := c.Write(emptyRDB); err != nil {
		return err
	}
	l.mu.Lock()
	l.syncs++
	l.synced[c] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.synced, c)
		l.mu.Unlock()
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, r)
	}()
	batch := encode(l.commands)
	l.wmu.Lock()
	_, err := c.Write(batch)
	l.wmu.Unlock()
	if err != nil {
		return err
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-done:
			return nil
		case <-tick.C:
		}
		l.mu.Lock()
		every := l.every
		l.mu.Unlock()
		if every > 0 && time.Since(last) >= every {
			last = time.Now()
			l.wmu.Lock()
			_, err := c.Write(batch)
			l.wmu.Unlock()
			if err != nil {
				return err
			}
		}
	}
}

// encode writes commands as RESP arrays of bulk strings.
func encode(commands [][]string) []byte {
	var b strings.Builder
	for _, cmd := range commands {
		fmt.Fprintf(&b, "*%d\r\n", len(cmd))
		for _, a := range cmd {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	return []byte(b.String())
}

// readCommand reads one command in RESP (an array of bulk strings) or
// inline form.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return strings.Fields(line), nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 || n > 1024 {
		return nil, fmt.Errorf("bad array header %q", line)
	}
	args := make([]string, 0, n)
	for range n {
		h, err := readLine(r)
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(h, "$") {
			return nil, fmt.Errorf("bad bulk header %q", h)
		}
		size, err := strconv.Atoi(h[1:])
		if err != nil || size < 0 || size > 1<<20 {
			return nil, fmt.Errorf("bad bulk header %q", h)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args = append(args, string(buf[:size]))
	}
	return args, nil
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
