package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

// errUnclean marks a verification that reached redis-server and found
// something of a tenant left.
var errUnclean = errors.New("node not empty")

// Delete resets the node held by instance id and returns it to the pool
// once the wiped server verified empty; a node that does not verify is
// quarantined (NodeResetFailed, ErrDirty) until a later reset passes.
// Deleting on a free node does nothing. The reset runs to its end even if
// the caller goes away: half a reset would leave the node unusable until
// the next one.
func (n *Node) Delete(ctx context.Context, id string) error {
	if err := instance.CheckID("instance id", id); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	unlock, err := n.ops.LockContext(ctx, opKey)
	if err != nil {
		return fmt.Errorf("%w: %v", agentapi.ErrUnavailable, err)
	}
	defer unlock()
	s := n.current()
	switch {
	case s.State == agentapi.NodeFree:
		return nil
	case s.State == "":
		return fmt.Errorf("%w: node %s is starting", agentapi.ErrUnavailable, n.cfg.NodeID)
	case s.InstanceID != "" && s.InstanceID != id:
		return fmt.Errorf("%w: node %s is held by another instance", agentapi.ErrConflict, n.cfg.NodeID)
	}
	n.logger.Info("resetting", "instance", s.InstanceID, "from", s.State)
	_, err = n.reset(ctx)
	return err
}

// reset stops redis-server, deletes its whole data directory and its logs
// (what the tenant's clients did is the tenant's too), renders an ACL
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
		st.State, st.ResetError = agentapi.NodeResetting, ""
		s = *st
		return nil
	})
	if err != nil {
		return s, err
	}

	// Sentinel first, while the admin password it knows is still the
	// record's; it and its file go with the rest of the tenant's.
	began := time.Now()
	var steps []any // each step's end, in seconds from began, for the log
	step := func(name string) { steps = append(steps, name, time.Since(began).Seconds()) }
	var failure error
	if n.sentinel != nil {
		failure = n.sentinel.stop(ctx, true)
	}
	var wipeErr error
	removed := make(chan error, 1)
	if failure == nil {
		// The tenant's data is moved aside at once and removed while the
		// server is killed, and while the wiped server starts and
		// verifies: a killed redis-server holding gigabytes takes about
		// as long to vanish (the kernel frees its memory) as the removal
		// of its files, and the reset answers once all of it is done. The
		// dying server reaches its files only through its working
		// directory, which moves with them; whatever it still writes there
		// goes with the rest (wipe's second pass, once it is gone).
		wipeErr = n.wipe(removed)
		failure = n.srv.Stop(ctx, true)
	} else {
		removed <- nil
	}
	step("killed_s")
	if failure != nil {
		<-removed
	} else {
		if wipeErr != nil {
			// Go on: a server started with an ACL file holding only the
			// admin locks the tenant out, and the verification tells what
			// is left. The node stays quarantined either way.
			failure = wipeErr
		}
		for _, log := range n.logFiles() {
			if err := n.logs.Remove(log); err != nil {
				failure = errors.Join(failure, fmt.Errorf("removing %s and its rotated files: %w", filepath.Base(log), err))
			}
		}
		// Nothing of the tenant stays in the record: parameters, users,
		// leader. InstanceID stays until the reset passes.
		err := n.state.Update(func(st *state) error {
			st.Record = instance.Record{
				Port: st.Port, TLSPort: st.TLSPort, MaxMemoryBytes: st.MaxMemoryBytes,
				Parameters: params.Defaults(), AdminPassword: secret.New(),
			}
			s = *st
			return nil
		})
		if err == nil && n.srv.Closing() {
			err = errors.New("the agent is shutting down")
		}
		step("recorded_s")
		if err == nil {
			err = n.srv.Start(ctx)
		}
		step("started_s")
		if err == nil {
			err = n.verify(ctx)
		}
		step("verified_s")
		rerr := <-removed
		if wipeErr == nil {
			// The second pass, now that no process of the tenant's runs:
			// what the dying server wrote after the first pass looked.
			rerr = n.rewipe()
		}
		step("removed_s")
		failure = errors.Join(failure, err, rerr)
	}

	if failure != nil && (n.srv.Closing() || ctx.Err() != nil) {
		// Interrupted, not failed: the state stays "resetting" and the next
		// Start finishes the reset.
		return s, fmt.Errorf("%w: the reset of node %s was interrupted and resumes when the agent starts: %v", agentapi.ErrUnavailable, n.cfg.NodeID, failure)
	}
	err = n.state.Update(func(st *state) error {
		if failure != nil {
			st.State, st.ResetError = agentapi.NodeResetFailed, failure.Error()
		} else {
			st.State, st.InstanceID = agentapi.NodeFree, ""
		}
		s = *st
		return nil
	})
	if err != nil {
		return s, err
	}
	if failure != nil {
		n.logger.Error("reset failed; the node is quarantined", "error", failure)
		return s, fmt.Errorf("%w: the reset of node %s did not verify: %v", agentapi.ErrDirty, n.cfg.NodeID, failure)
	}
	n.logger.Info("reset verified; node free", append(steps, "total_s", time.Since(began).Seconds())...)
	return s, nil
}

// wipedSuffix names the folder beside the data directory that a reset
// moves the tenant's data to before removing it.
const wipedSuffix = ".wiped"

// wipe moves redis-server's data directory (dump.rdb, appendonlydir and
// anything else in it) aside, creates it again, empty, and removes what it
// moved in the background, sending the outcome on removed (once, always).
// What an interrupted reset moved aside is removed first: a crash may leave
// it, and the reset that Start finishes then removes it. The server may
// still be dying meanwhile: rewipe, once it is gone, removes what it wrote
// after the background removal looked.
func (n *Node) wipe(removed chan<- error) error {
	data := n.srv.Paths().Data
	wiped := data + wipedSuffix
	if err := os.RemoveAll(wiped); err != nil {
		removed <- nil
		return fmt.Errorf("removing the data of an interrupted reset: %w", err)
	}
	if err := os.Rename(data, wiped); err != nil && !errors.Is(err, os.ErrNotExist) {
		removed <- nil
		return fmt.Errorf("moving the data directory aside: %w", err)
	}
	go func() {
		emptyFiles(wiped)
		if err := os.RemoveAll(wiped); err != nil {
			removed <- fmt.Errorf("wiping the data directory: %w", err)
			return
		}
		removed <- nil
	}()
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("creating the data directory: %w", err)
	}
	return nil
}

// emptyFiles truncates every regular file under dir to nothing. The killed
// server may still hold its files open, and the blocks of a file removed
// while open are freed only as its last holder goes, after the kernel has
// freed the holder's memory: one after the other. A truncated file's blocks
// are freed at once, here, while the server dies. Errors are left to the
// removal that follows.
func emptyFiles(dir string) {
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			// Never through a link, should one have taken the file's place.
			if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NOFOLLOW, 0); err == nil {
				_ = f.Truncate(0)
				_ = f.Close()
			}
		}
		return nil
	})
}

// rewipe removes what is left of the data directory that wipe moved aside
// (nothing, unless the killed server wrote there after wipe's removal
// looked, or that removal failed).
func (n *Node) rewipe() error {
	if err := os.RemoveAll(n.srv.Paths().Data + wipedSuffix); err != nil {
		return fmt.Errorf("wiping the data directory: %w", err)
	}
	return nil
}

// verify checks, on the running server, that no database holds a key, that
// no ACL user but the admin (and the disabled default user) exists, that no
// function is loaded and that the server leads. A finding wraps errUnclean;
// any other error means the server could not be asked.
func (n *Node) verify(ctx context.Context) error {
	conn := n.srv.Admin().Conn()
	defer conn.Close()

	var found []string
	info, err := conn.InfoMap(ctx, "keyspace", "replication").Result()
	if err != nil {
		return fmt.Errorf("INFO: %w", err)
	}
	for db, line := range info["Keyspace"] {
		found = append(found, fmt.Sprintf("%s holds %d keys", db, instance.KeyspaceField(line, "keys")))
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
		if u != instance.AdminUser && u != "default" {
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
