package nodeagent

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/nodeapi"
)

// leaderTimeout bounds the status's question to a follower's leader: a
// leader that does not answer leaves the lag unknown, not the status late.
const leaderTimeout = time.Second

// owns reports whether the redis-server answering on the node's port with
// the admin password is process pid reading the node's config.
func (n *Node) owns(ctx context.Context, pid int) bool {
	c := n.adminClient(n.current())
	defer c.Close()
	info, err := c.InfoMap(ctx, "server").Result()
	if err != nil {
		return false
	}
	srv := info["Server"]
	return srv["process_id"] == strconv.Itoa(pid) && srv["config_file"] == n.paths.conf
}

func (n *Node) addr() string {
	return net.JoinHostPort(n.cfg.Bind, strconv.Itoa(n.cfg.Port))
}

func (n *Node) adminClient(s state) *redis.Client {
	return newClient(n.addr(), AdminUser, s.AdminPassword, 10*time.Second)
}

func newClient(addr, user, password string, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		Username:        user,
		Password:        password,
		Protocol:        2,
		DisableIdentity: true,
		MaxRetries:      -1,
		// One dial attempt: readiness is polled every few milliseconds, and
		// go-redis would otherwise retry a refused dial 5 times, 100ms apart.
		DialerRetries: 1,
		PoolSize:      1,
		DialTimeout:   min(2*time.Second, timeout),
		ReadTimeout:   timeout,
		WriteTimeout:  timeout,
	})
}

// adminDo runs one command as the admin user on a fresh connection, as the
// shared agent does: admin commands are rare, an idle pool is not worth it.
func (n *Node) adminDo(ctx context.Context, s state, args ...any) error {
	c := n.adminClient(s)
	defer c.Close()
	return c.Do(ctx, args...).Err()
}

// status describes the node in state s, with the live figures of its
// redis-server when it answers.
func (n *Node) status(ctx context.Context, s state) nodeapi.Status {
	st := nodeapi.Status{
		NodeID:         n.cfg.NodeID,
		State:          s.State,
		InstanceID:     s.InstanceID,
		ResetError:     s.ResetError,
		MaxMemoryBytes: n.maxmemory,
		Host:           n.cfg.Host,
		Port:           n.cfg.Port,
		Parameters:     s.Parameters,
		Bindings:       sortedKeys(s.Bindings),
	}
	if st.Bindings == nil {
		st.Bindings = []string{}
	}
	if st.State == "" {
		st.State = nodeapi.StateResetting // the first start's reset is under way
	}
	c := n.adminClient(s)
	defer c.Close()
	info, err := c.InfoMap(ctx, "server", "memory", "keyspace", "replication").Result()
	if err != nil {
		st.RedisError = err.Error()
		return st
	}
	st.RedisRunning = true
	st.RedisVersion = info["Server"]["redis_version"]
	st.UsedMemoryBytes = atoi(info["Memory"]["used_memory"])
	for _, v := range info["Keyspace"] {
		st.Keys += keyspaceField(v, "keys")
	}
	st.Replication = n.replication(ctx, s, info["Replication"])
	return st
}

// replication reads a node's INFO replication and, for a follower, asks its
// leader for the leader's offset, to measure the lag.
func (n *Node) replication(ctx context.Context, s state, info map[string]string) nodeapi.Replication {
	r := nodeapi.Replication{}
	if info["role"] != "slave" {
		r.Role = nodeapi.RoleLeader
		r.Offset = atoi(info["master_repl_offset"])
		r.Followers = int(atoi(info["connected_slaves"]))
		for i := range r.Followers {
			if off, ok := replicaOffset(info[fmt.Sprintf("slave%d", i)]); ok {
				r.LagBytes = max(r.LagBytes, r.Offset-off)
			}
		}
		return r
	}
	r.Role = nodeapi.RoleFollower
	r.LeaderHost = info["master_host"]
	r.LeaderPort = int(atoi(info["master_port"]))
	r.Link = "down"
	if info["master_link_status"] == "up" {
		r.Link = "up"
	}
	r.Offset = atoi(info["slave_repl_offset"])
	r.LagBytes = -1
	if l := s.Leader; l != nil {
		lctx, cancel := context.WithTimeout(ctx, leaderTimeout)
		defer cancel()
		c := newClient(net.JoinHostPort(l.Host, strconv.Itoa(l.Port)), l.Username, l.Password, leaderTimeout)
		defer c.Close()
		if v, err := c.InfoMap(lctx, "replication").Result(); err == nil {
			if leaderOffset, ok := v["Replication"]["master_repl_offset"]; ok {
				r.LagBytes = max(atoi(leaderOffset)-r.Offset, 0)
			}
		}
	}
	return r
}

// replicaOffset reads the offset of a leader's "slaveN" INFO line
// ("ip=...,port=...,state=online,offset=123,lag=0"); only an online follower
// counts.
func replicaOffset(line string) (int64, bool) {
	var off int64
	online := false
	for _, kv := range strings.Split(line, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "state":
			online = v == "online"
		case "offset":
			off = atoi(v)
		}
	}
	return off, online
}

// keyspaceField reads one field of an INFO keyspace line
// ("keys=1,expires=0,avg_ttl=0").
func keyspaceField(line, field string) int64 {
	for _, kv := range strings.Split(line, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == field {
			return atoi(v)
		}
	}
	return 0
}

func atoi(s string) int64 {
	v, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return v
}
