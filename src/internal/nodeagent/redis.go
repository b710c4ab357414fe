package nodeagent

import (
	"context"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentbase"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeapi"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

// runningPid asks the server answering on the node's port with the admin
// password for its pid.
func (n *Node) runningPid(ctx context.Context, timeout time.Duration) (int, bool) {
	c := agentbase.RedisClient(n.addr(), AdminUser, n.current().AdminPassword, timeout)
	defer c.Close()
	info, err := c.InfoMap(ctx, "server").Result()
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(info["Server"]["process_id"])
	return pid, err == nil
}

// ownsWithin reports whether the redis-server answering on the node's port with
// the admin password is process pid reading the node's config.
func (n *Node) ownsWithin(ctx context.Context, pid int, timeout time.Duration) bool {
	c := agentbase.RedisClient(n.addr(), AdminUser, n.current().AdminPassword, timeout)
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
	return agentbase.RedisClient(n.addr(), AdminUser, s.AdminPassword, 10*time.Second)
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
		TLSPort:        n.cfg.TLSPort,
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
	st.Replication = replication.Read(ctx, info["Replication"], s.Leader)
	return st
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
