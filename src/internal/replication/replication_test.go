package replication_test

import (
	"context"
	"testing"

	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

func TestReadLeader(t *testing.T) {
	st := replication.Read(context.Background(), map[string]string{
		"role": "master", "master_repl_offset": "1000", "connected_slaves": "2",
		"slave0": "ip=10.0.0.2,port=6379,state=online,offset=990,lag=0",
		"slave1": "ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0",
	}, nil)
	if st.Role != replication.RoleLeader || st.Followers != 2 || st.InSync != 1 || st.LagBytes != 10 || st.Offset != 1000 {
		t.Fatalf("leader status %+v: want role leader, 2 followers, 1 in sync, lag 10 (only online followers count)", st)
	}
}

func TestReadFollowerWithUnreachableLeader(t *testing.T) {
	st := replication.Read(context.Background(), map[string]string{
		"role": "slave", "master_host": "127.0.0.1", "master_port": "1", "master_link_status": "down", "slave_repl_offset": "5",
	}, &replication.Leader{Host: "127.0.0.1", Port: 1})
	if st.Role != replication.RoleFollower || st.Link != "down" || st.LagBytes != -1 || st.LeaderPort != 1 {
		t.Fatalf("follower status %+v: want follower, link down, lag unknown (-1)", st)
	}
}

func TestLeaderCheck(t *testing.T) {
	for _, bad := range []replication.Leader{
		{Host: "", Port: 6379},
		{Host: "a b", Port: 6379},
		{Host: "h\nslaveof x", Port: 6379},
		{Host: "h", Port: 0},
		{Host: "h", Port: 70000},
		{Host: "h", Port: 1, Username: "a b"},
	} {
		if bad.Check() == nil {
			t.Errorf("Check(%+v) accepted a leader that cannot be written into redis.conf", bad)
		}
	}
	if err := (replication.Leader{Host: "10.0.0.1", Port: 6379, Username: "replica-x", Password: "p"}).Check(); err != nil {
		t.Errorf("a valid leader was refused: %v", err)
	}
}

// A host is an IP address in its standard form or a DNS name: nothing a
// resolver could read as an IPv4 address in another base, no zone, no port.
func TestCheckHost(t *testing.T) {
	for _, bad := range []string{
		"", "a b", "2130706433", "0x7f.1", "0x7f000001", "127.1", "017700000001", "1.2.3.04", "0177.0.0.1",
		"fe80::1%eth0", "[::1]", "host:6379", "10.0.0.1:6379", "-bad.example.com", "bad-.example.com", "exa_mple.com",
		"a..b", ".", "..", "x." + string(make([]byte, 64)), "ex\u00e4mple.com", "http://x",
	} {
		if replication.CheckHost(bad) == nil {
			t.Errorf("CheckHost(%q) accepted a host that is neither an IP address nor a DNS name", bad)
		}
	}
	long := ""
	for range 63 {
		long += "a"
	}
	for _, good := range []string{
		"10.0.0.1", "::1", "2001:db8::7", "::ffff:127.0.0.1", "redis.example.com", "REDIS.example.com.", "a0", "x-1.y2.z",
		"q-0.redis-shared.default.dep.bosh", long + ".example.com",
	} {
		if err := replication.CheckHost(good); err != nil {
			t.Errorf("CheckHost(%q) refused a valid host: %v", good, err)
		}
	}
	if err := (replication.Leader{Host: "0x7f.1", Port: 6379}).Check(); err == nil {
		t.Errorf("Leader.Check accepted a hex IPv4 host")
	}
}
