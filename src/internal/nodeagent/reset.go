package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/nodeapi"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

// errUnclean marks a verification that reached redis-server and found
// something of a tenant left.
var errUnclean = errors.New("node not empty")

// Reset wipes the node held by req.InstanceID and returns it to the pool once
// the wiped server verified empty; a node that does not verify is quarantined
// (StateResetFailed, ErrDirty) until a later reset passes. Resetting a free
// node does nothing. The reset runs to its end even if the caller goes away:
// half a reset would leave the node unusable until the next one.
func (n *Node) Reset(ctx context.Context, req nodeapi.ResetRequest) (nodeapi.Status, error) {
	if err := checkID("instance_id", req.InstanceID); err != nil {
		return nodeapi.Status{}, err
	}
	ctx = context.WithoutCancel(ctx)
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return nodeapi.Status{}, fmt.Errorf("%w: %v", nodeapi.ErrUnavailable, err)
	}
	defer unlock()
	s := n.current()
	switch {
	case s.State == nodeapi.StateFree:
		return n.status(ctx, s), nil
	case s.State == "":
		return nodeapi.Status{}, fmt.Errorf("%w: node %s is starting", nodeapi.ErrUnavailable, n.cfg.NodeID)
	case s.InstanceID != "" && s.InstanceID != req.InstanceID:
		return nodeapi.Status{}, fmt.Errorf("%w: node %s is held by another instance", nodeapi.ErrConflict, n.cfg.NodeID)
	}
	n.logger.Info("resetting", "instance", s.InstanceID, "from", s.State)
	s, err = n.reset(ctx)
	if err != nil {
		return nodeapi.Status{}, err
	}
	return n.status(ctx, s), nil
}

// reset stops redis-server, deletes its whole data directory, renders an ACL
// file holding only the admin with a new password and a redis.conf without
// the tenant's parameters or leader, starts redis-server and verifies it
// holds no key, user or function. The caller holds the operations lock.
//
// The state says "resetting" from the first step to the last, so a crash
// anywhere makes the next Start run reset again; and the admin password
// changes only while redis-server is down, so that Start can always adopt
// and stop the server a crash left running.
func (n *Node) reset(ctx context.Context) (state, error) {
	var s state
	err := n.state.Update(func(st *state) error {
		st.State, st.ResetError = nodeapi.StateResetting, ""
		s = *st
		return nil
	})
	if err != nil {
		return s, err
	}

	failure := n.stopForReset(ctx, s)
	if failure == nil {
		if err := n.wipe(); err != nil {
			// Go on: a server started with an ACL file holding only the
			// admin locks the tenant out, and the verification tells what
			// is left. The node stays quarantined either way.
			failure = err
		}
		err := n.state.Update(func(st *state) error {
			*st = defaultState(*st)
			st.AdminPassword = secret.New()
			s = *st
			return nil
		})
		if err == nil {
			err = n.writeFiles(s)
		}
		if err == nil && n.isClosing() {
			err = errors.New("the agent is shutting down")
		}
		if err == nil {
			err = n.sup.Start(ctx)
		}
		if err == nil {
			err = n.verify(ctx, s)
		}
		failure = errors.Join(failure, err)
	}

	if failure != nil && (n.isClosing() || ctx.Err() != nil) {
		// Interrupted, not failed: the state stays "resetting" and the next
		// Start finishes the reset.
		return s, fmt.Errorf("%w: the reset of node %s was interrupted and resumes when the agent starts: %v", nodeapi.ErrUnavailable, n.cfg.NodeID, failure)
	}
	err = n.state.Update(func(st *state) error {
		if failure != nil {
			st.State, st.ResetError = nodeapi.StateResetFailed, failure.Error()
		} else {
			st.State, st.InstanceID = nodeapi.StateFree, ""
		}
		s = *st
		return nil
	})
	if err != nil {
		return s, err
	}
	if failure != nil {
		n.logger.Error("reset failed; the node is quarantined", "error", failure)
		return s, fmt.Errorf("%w: the reset of node %s did not verify: %v", nodeapi.ErrDirty, n.cfg.NodeID, failure)
	}
	n.logger.Info("reset verified; node free")
	return s, nil
}

// stopForReset stops redis-server: the supervised one, or the one a crashed
// agent left running (adopted, then stopped). Its RDB snapshot on shutdown is
// switched off first: the data is about to be deleted, and writing a large
// snapshot would only slow the reset down.
func (n *Node) stopForReset(ctx context.Context, s state) error {
	if !n.sup.Status().Supervising {
		_, recorded := os.Stat(n.paths.pid)
		if _, running := n.runningPid(ctx, time.Second); recorded != nil && !running {
			return nil // no server was left running
		}
		if err := n.sup.Start(ctx); err != nil {
			n.logger.Info("no running redis-server to stop", "detail", err)
		}
	}
	if n.sup.Status().Running {
		if err := n.adminDo(ctx, s, "CONFIG", "SET", "save", ""); err != nil {
			n.logger.Warn("could not switch off the shutdown snapshot", "error", err)
		}
	}
	if err := n.sup.Stop(ctx); err != nil {
		return fmt.Errorf("redis-server did not stop: %w", err)
	}
	return nil
}

// wipe deletes redis-server's data directory (dump.rdb, appendonlydir and
// anything else in it) and creates it again, empty.
func (n *Node) wipe() error {
	if err := os.RemoveAll(n.paths.data); err != nil {
		return fmt.Errorf("wiping the data directory: %w", err)
	}
	if err := os.MkdirAll(n.paths.data, 0o700); err != nil {
		return fmt.Errorf("creating the data directory: %w", err)
	}
	return nil
}

// verify checks, on the running server, that no database holds a key, that
// no ACL user but the admin (and the disabled default user) exists, that no
// function is loaded and that the server leads. A finding wraps errUnclean;
// any other error means the server could not be asked.
func (n *Node) verify(ctx context.Context, s state) error {
	c := n.adminClient(s)
	defer c.Close()
	conn := c.Conn()
	defer conn.Close()

	var found []string
	info, err := conn.InfoMap(ctx, "keyspace", "replication").Result()
	if err != nil {
		return fmt.Errorf("INFO: %w", err)
	}
	for db, line := range info["Keyspace"] {
		found = append(found, fmt.Sprintf("%s holds %d keys", db, keyspaceField(line, "keys")))
	}
	if role := info["Replication"]["role"]; role != "master" {
		found = append(found, "it replicates a leader (role "+role+")")
	}
	dbs, err := conn.ConfigGet(ctx, "databases").Result()
	if err != nil {
		return fmt.Errorf("CONFIG GET databases: %w", err)
	}
	ndb, err := strconv.Atoi(dbs["databases"])
	if err != nil {
		return fmt.Errorf("CONFIG GET databases: %q is not a number", dbs["databases"])
	}
	for db := range ndb {
		if err := conn.Select(ctx, db).Err(); err != nil {
			return fmt.Errorf("SELECT %d: %w", db, err)
		}
		size, err := conn.DBSize(ctx).Result()
		if err != nil {
			return fmt.Errorf("DBSIZE: %w", err)
		}
		if size != 0 {
			found = append(found, fmt.Sprintf("DBSIZE of db%d is %d", db, size))
		}
	}
	users, err := conn.Do(ctx, "ACL", "USERS").StringSlice()
	if err != nil {
		return fmt.Errorf("ACL USERS: %w", err)
	}
	for _, u := range users {
		if u != AdminUser && u != "default" {
			found = append(found, "ACL user "+u+" exists")
		}
	}
	def, err := conn.Do(ctx, "ACL", "GETUSER", "default").Slice()
	if err != nil {
		return fmt.Errorf("ACL GETUSER default: %w", err)
	}
	if !defaultUserOff(def) {
		found = append(found, "the default user is enabled")
	}
	libs, err := conn.FunctionList(ctx, redis.FunctionListQuery{}).Result()
	if err != nil {
		return fmt.Errorf("FUNCTION LIST: %w", err)
	}
	for _, l := range libs {
		found = append(found, "function library "+l.Name+" is loaded")
	}
	if len(found) > 0 {
		slices.Sort(found)
		return fmt.Errorf("%w: %s", errUnclean, strings.Join(found, "; "))
	}
	return nil
}

// defaultUserOff reads the flags of an ACL GETUSER reply (a flat list of
// field names and values).
func defaultUserOff(reply []any) bool {
	for i := 0; i+1 < len(reply); i += 2 {
		if reply[i] == "flags" {
			flags, _ := reply[i+1].([]any)
			return slices.Contains(flags, any("off"))
		}
	}
	return false
}
