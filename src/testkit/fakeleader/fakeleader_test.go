package fakeleader_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/fakeleader"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

// TestFollowerRunsTheStream has a real redis-server follow the fake leader
// and checks that the leader's commands ran on it with admin rights: its
// configuration changed and a key appeared.
func TestFollowerRunsTheStream(t *testing.T) {
	l, err := fakeleader.Start(
		[]string{"CONFIG", "SET", "maxmemory", "12345678"},
		[]string{"SET", "from-leader", "1"},
	)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv, err := redistest.Start(t.TempDir(), "maxmemory 1000000")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	if err := rc.Do(ctx, "REPLICAOF", l.Host(), fmt.Sprint(l.Port())).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for rc.Get(ctx, "from-leader").Val() != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("the follower never ran the leader's stream (syncs %d)", l.Syncs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := rc.ConfigGet(ctx, "maxmemory").Val()["maxmemory"]; got != "12345678" {
		t.Fatalf("maxmemory = %q after the stream, want 12345678", got)
	}
	if l.Connections() < 1 || l.Syncs() < 1 || l.Open() != 1 {
		t.Fatalf("connections %d, syncs %d, open %d", l.Connections(), l.Syncs(), l.Open())
	}
	l.Repeat(20 * time.Millisecond)
	if err := rc.ConfigSet(ctx, "maxmemory", "1000000").Err(); err != nil {
		t.Fatal(err)
	}
	for rc.ConfigGet(ctx, "maxmemory").Val()["maxmemory"] != "12345678" {
		if time.Now().After(deadline) {
			t.Fatal("the repeated stream never set maxmemory again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := rc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	for l.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the follower's connection stayed open after REPLICAOF NO ONE")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
