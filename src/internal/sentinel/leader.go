package sentinel

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// AskTimeout bounds the question to each Sentinel: a server waiting to
// start asks all of them at once, so it waits at most this long.
const AskTimeout = 500 * time.Millisecond

// View is one Sentinel's answer: the member it says leads, and the
// configuration epoch of that answer (each failover raises it).
type View struct {
	Host  string
	Port  int
	Epoch int64
}

// Leader asks the Sentinels of every member of g which member leads now,
// as User, and returns the answer of the highest configuration epoch: a
// Sentinel that was down during a failover still names the old leader
// until it hears of the new one, with an older epoch. ok is false when no
// Sentinel answered. tlsConf dials the Sentinels of a group over TLS.
func Leader(ctx context.Context, g Group, tlsConf *tls.Config) (v View, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, AskTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range g.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := Ask(ctx, net.JoinHostPort(m.Host, strconv.Itoa(m.SentinelPort)), g, tlsConf)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if !ok || got.Epoch > v.Epoch {
				v, ok = got, true
			}
		}()
	}
	wg.Wait()
	return v, ok
}

// Ask asks the Sentinel at addr which member of g leads.
func Ask(ctx context.Context, addr string, g Group, tlsConf *tls.Config) (View, error) {
	c := Client(addr, User, g.SentinelPassword, tlsConf)
	defer c.Close()
	m, err := c.Do(ctx, "SENTINEL", "MASTER", g.MasterName).Slice()
	if err != nil {
		return View{}, err
	}
	f := map[string]string{}
	for i := 0; i+1 < len(m); i += 2 {
		k, _ := m[i].(string)
		val, _ := m[i+1].(string)
		f[k] = val
	}
	port, err := strconv.Atoi(f["port"])
	if err != nil {
		return View{}, err
	}
	epoch, _ := strconv.ParseInt(f["config-epoch"], 10, 64)
	return View{Host: f["ip"], Port: port, Epoch: epoch}, nil
}

// Client is a connection to the Sentinel at addr as user.
func Client(addr, user, password string, tlsConf *tls.Config) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, TLSConfig: tlsConf, Username: user, Password: password,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialerRetries: 1, PoolSize: 1,
		DialTimeout: AskTimeout, ReadTimeout: AskTimeout, WriteTimeout: AskTimeout,
	})
}

// Replica is a follower of a group's leader as a Sentinel sees it.
type Replica struct {
	Host string
	Port int
	// Up is false while the Sentinel holds the follower down or
	// disconnected, which its pings (one a second) tell. Its view of the
	// follower's link to the leader comes from INFO, up to 10 s old, so
	// members asking different Sentinels would disagree on it for longer:
	// it is left out.
	Up bool
}

// Addr is the follower as host:port, as Member.Addr writes a member.
func (r Replica) Addr() string { return Member{Host: r.Host, Port: r.Port}.Addr() }

// Replicas asks the Sentinel c for the followers of g's leader.
func Replicas(ctx context.Context, c *redis.Client, g Group) ([]Replica, error) {
	rows, err := c.Do(ctx, "SENTINEL", "REPLICAS", g.MasterName).Slice()
	if err != nil {
		return nil, err
	}
	var out []Replica
	for _, row := range rows {
		kv, _ := row.([]any)
		f := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			k, _ := kv[i].(string)
			v, _ := kv[i+1].(string)
			f[k] = v
		}
		port, err := strconv.Atoi(f["port"])
		if err != nil {
			continue
		}
		up := true
		for _, flag := range strings.Split(f["flags"], ",") {
			if flag == "s_down" || flag == "o_down" || flag == "disconnected" {
				up = false
			}
		}
		out = append(out, Replica{Host: f["ip"], Port: port, Up: up})
	}
	return out, nil
}
