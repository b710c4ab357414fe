package instance

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// UnauthenticatedGrace is how long a connection may stay open without
// logging in while the server is nearly full.
const UnauthenticatedGrace = 10 * time.Second

// nearlyFull is the share of maxclients from which the guard looks for
// connections that never logged in.
const nearlyFull = 0.9

// clientInfo is one line of CLIENT LIST.
type clientInfo struct {
	id, user, flags, laddr string
	age                    time.Duration
}

// unauthenticated is the one place that says which connections have not
// logged in: while the default user is off, every connection starts as it
// and stays so until AUTH or HELLO succeeds. The master link of a follower
// (flag M) is the leader's, not a stranger's. A password-only login (the
// release's Redis patch, src/redis/patches) logs in as the binding's own
// user, so it is not default here. Should the default user ever be switched
// on, this must tell its connections apart another way.
func unauthenticated(c clientInfo) bool {
	return c.user == "default" && !strings.Contains(c.flags, "M") && c.age >= UnauthenticatedGrace
}

// reapUnauthenticated closes the connections that have not logged in for
// UnauthenticatedGrace or more, once the server holds nearly maxclients
// connections: no credentials are needed to open one, so otherwise anyone
// who reaches the port could keep every app out. Cheap while the server
// is not nearly full: one INFO clients.
func (s *Server) reapUnauthenticated(ctx context.Context, g *Guard) {
	// The process's open files bound its connections from above, and
	// counting them costs no round trip.
	limit := int(s.maxClients.Load())
	if n, err := openFiles(s.guard.pid); err == nil && float64(n) < nearlyFull*float64(limit) {
		return
	}
	info, err := s.Admin().InfoMap(ctx, "clients").Result()
	if err != nil {
		return
	}
	connected, _ := strconv.Atoi(info["Clients"]["connected_clients"])
	limit, _ = strconv.Atoi(info["Clients"]["maxclients"])
	if limit == 0 || float64(connected) < nearlyFull*float64(limit) {
		return
	}
	list, err := s.Admin().Do(ctx, "CLIENT", "LIST", "TYPE", "normal").Text()
	if err != nil {
		return
	}
	pipe := s.Admin().Pipeline()
	n := 0
	for _, line := range strings.Split(list, "\n") {
		if c := parseClient(line); unauthenticated(c) {
			pipe.Do(ctx, "CLIENT", "KILL", "ID", c.id)
			n++
		}
	}
	if n == 0 {
		return
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.logger.Warn("closing connections that did not log in failed", "instance", s.cfg.Name, "error", err)
		return
	}
	s.logger.Warn("closed connections that did not log in", "instance", s.cfg.Name, "connections", n, "connected", connected, "maxclients", limit)
}

// closeClientsOn closes every connection made to addr (the plaintext port
// of a server just turned TLS-only) but the agent's own, which the caller
// renews. A failure is logged: the port is closed either way, and a tenant
// connection left open on it ends at its next reconnect.
func (s *Server) closeClientsOn(ctx context.Context, addr string) {
	_, port, _ := net.SplitHostPort(addr)
	// The admin client has one connection: its CLIENT ID is the one to
	// spare (a name would not do: a tenant may take any name).
	self, err := s.Admin().ClientID(ctx).Result()
	var list string
	if err == nil {
		list, err = s.Admin().ClientList(ctx).Result()
	}
	if err != nil {
		s.logger.Warn("listing the connections to the closed plaintext port failed", "instance", s.cfg.Name, "error", err)
		return
	}
	pipe := s.Admin().Pipeline()
	n := 0
	for _, line := range strings.Split(list, "\n") {
		c := parseClient(line)
		if _, p, err := net.SplitHostPort(c.laddr); err == nil && p == port && c.id != strconv.FormatInt(self, 10) {
			pipe.Do(ctx, "CLIENT", "KILL", "ID", c.id)
			n++
		}
	}
	if n == 0 {
		return
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.logger.Warn("closing the connections to the closed plaintext port failed", "instance", s.cfg.Name, "error", err)
		return
	}
	s.logger.Info("the instance is TLS-only: closed the connections to its plaintext port", "instance", s.cfg.Name, "connections", n)
}

// openFiles counts the files process pid has open.
func openFiles(pid int) (int, error) {
	d, err := os.Open("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	return len(names), err
}

// parseClient reads one line of CLIENT LIST ("id=3 addr=... age=12 ...
// flags=N ... user=default ...").
func parseClient(line string) clientInfo {
	var c clientInfo
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "id":
			c.id = v
		case "user":
			c.user = v
		case "laddr":
			c.laddr = v
		case "flags":
			c.flags = v
		case "age":
			secs, _ := strconv.Atoi(v)
			c.age = time.Duration(secs) * time.Second
		}
	}
	return c
}
