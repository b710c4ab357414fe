// Package snapshot takes consistent snapshots of a running redis-server for
// backups, and puts a backup's data in place of a server's data for a
// restore, keeping the old data until the new data has loaded and verified.
// Both agents (shared VMs and dedicated nodes) use it through the admin
// connection, so tenants' passwords never leave them.
//
// # One fork for dump.rdb and appendonlydir
//
// A snapshot is one BGREWRITEAOF. With aof-use-rdb-preamble (every instance
// has it), Redis 7 writes the rewrite's base file in RDB format from a
// forked child, so that file is the dataset at the instant of the fork: it
// is exactly what BGSAVE would write, and it loads as dump.rdb. Before
// forking, Redis opens a new, empty incremental file, and every write after
// the fork goes there. So the base file plus that incremental file cut at
// length zero is the multi-part AOF at the same instant, and the archive
// holds one snapshot twice (dump.rdb, and appendonlydir/ as a tar hard link
// to it plus the empty incremental file and a manifest naming both): the two
// can never disagree, the bytes travel once, and redis-server reads either.
//
// Writes are paused (CLIENT PAUSE WRITE, which also holds expiry and
// eviction) for the few milliseconds around the fork, so the key count
// recorded in the manifest is the count at that instant. The pause expires
// by itself should the agent die in between.
//
// A BGSAVE's output lands in dump.rdb, a name that a tenant's FLUSHALL
// (which saves synchronously) or a save rule can replace at any time; the
// rewrite's base file has a sequence number of its own, and the manifest
// tells whether it came from this snapshot's fork (its first incremental
// file is the one opened for that fork). That is why a snapshot is a
// rewrite and not a BGSAVE. The base file is hard-linked into a staging
// folder before it is streamed, so a later rewrite deleting it does not cut
// the stream short, and nothing is copied.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/archive"
)

// DefaultTimeout is the Timeout of Options that set none.
const DefaultTimeout = time.Hour

// pauseMillis bounds CLIENT PAUSE: long enough for INFO, a fork and reading
// the AOF manifest on a loaded machine, short enough to end by itself
// quickly if the agent dies holding it.
const pauseMillis = 5000

// Errors of a snapshot; the messages that wrap them say what happened.
var (
	// ErrTimeout means the snapshot did not finish in time; its child was
	// stopped.
	ErrTimeout = errors.New("snapshot timed out")
	// ErrServerGone means redis-server stopped or restarted meanwhile.
	ErrServerGone = errors.New("redis-server went away during the snapshot")
	// ErrFailed means redis-server could not write the snapshot.
	ErrFailed = errors.New("redis-server could not write the snapshot")
)

// Options say what to snapshot and where to stage it.
type Options struct {
	// InstanceID and Plan go into the manifest.
	InstanceID, Plan string
	// DataDir is redis-server's dir.
	DataDir string
	// StagingDir is created for the snapshot's hard links; it must not exist
	// and must be on DataDir's file system. Close removes it.
	StagingDir string
	// Timeout bounds the whole snapshot, waiting for another one to end
	// included; zero means DefaultTimeout.
	Timeout time.Duration
	// LogFile is redis-server's log, quoted when a snapshot fails; empty
	// means none.
	LogFile string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Snapshot is a consistent snapshot held in a staging folder, ready to be
// written as an archive. Close it when done.
type Snapshot struct {
	manifest archive.Manifest
	entries  []archive.Entry
	staging  string
}

// Manifest describes the snapshot; Files is empty until WriteTo ran.
func (s *Snapshot) Manifest() archive.Manifest { return s.manifest }

// WriteTo streams the snapshot as a tar.gz archive and reports the bytes
// written.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) { return s.WriteChecked(w, nil) }

// WriteChecked is WriteTo that calls check (when not nil) once the files
// streamed, before the manifest that completes the archive: an error there
// leaves the archive incomplete and is returned.
func (s *Snapshot) WriteChecked(w io.Writer, check func() error) (int64, error) {
	cw := &countingWriter{w: w}
	m, err := archive.WriteChecked(cw, s.manifest, s.entries, check)
	if err == nil {
		s.manifest = m
	}
	return cw.n, err
}

// Close removes the staging folder.
func (s *Snapshot) Close() error { return os.RemoveAll(s.staging) }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Take snapshots the server c is the admin connection of (see the package
// comment) and returns it staged. c should read with a timeout of a few
// seconds; Take polls, it does not block on the server.
func Take(ctx context.Context, c *redis.Client, o Options) (*Snapshot, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	t, err := newTaker(ctx, c, o)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(o.StagingDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the staging folder: %w", err)
	}
	s, err := t.take(ctx)
	if err != nil {
		_ = os.RemoveAll(o.StagingDir)
		return nil, timedOut(ctx, o, err)
	}
	return s, nil
}

// newTaker checks the server's persistence settings and learns who it is.
func newTaker(ctx context.Context, c *redis.Client, o Options) (*taker, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &taker{c: c, o: o, logger: logger}
	if err := t.start(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

// timedOut says so when err came from the snapshot's time running out.
func timedOut(ctx context.Context, o Options, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrTimeout) {
		return fmt.Errorf("%w: the snapshot did not finish within %s: %v", ErrTimeout, o.Timeout, err)
	}
	return err
}

type taker struct {
	c      *redis.Client
	o      Options
	logger *slog.Logger
	// child is the pid of the rewrite's child process once seen; 0 before.
	child int
	// runID and pid identify the server; a restart changes both.
	runID   string
	pid     int
	version string
	aofDir  string
	aofName string
}

// start checks the server's persistence settings and learns who it is.
func (t *taker) start(ctx context.Context) error {
	info, err := t.c.InfoMap(ctx, "server", "persistence").Result()
	if err != nil {
		return fmt.Errorf("%w: it did not answer before the snapshot began: %v", ErrServerGone, err)
	}
	t.runID = info["Server"]["run_id"]
	t.pid, _ = strconv.Atoi(info["Server"]["process_id"])
	t.version = info["Server"]["redis_version"]
	if info["Persistence"]["aof_enabled"] != "1" {
		return fmt.Errorf("%w: the server runs without its append-only file", ErrFailed)
	}
	cfg, err := t.c.ConfigGet(ctx, "app*").Result()
	if err != nil {
		return fmt.Errorf("CONFIG GET: %w", err)
	}
	t.aofDir = filepath.Join(t.o.DataDir, cfg["appenddirname"])
	t.aofName = cfg["appendfilename"]
	if cfg["appenddirname"] == "" || t.aofName == "" {
		return fmt.Errorf("%w: the server reports no appenddirname or appendfilename", ErrFailed)
	}
	if p, err := t.c.ConfigGet(ctx, "aof-use-rdb-preamble").Result(); err != nil || p["aof-use-rdb-preamble"] != "yes" {
		return fmt.Errorf("%w: aof-use-rdb-preamble is not on, so the rewrite's base file would not be an RDB file", ErrFailed)
	}
	return nil
}

// maxAttempts bounds how often a snapshot starts again because another
// rewrite got in the way.
const maxAttempts = 5

func (t *taker) take(ctx context.Context) (*Snapshot, error) {
	removeStaleTemp(t.o.DataDir, t.logger)
	for attempt := 1; ; attempt++ {
		if err := t.waitIdle(ctx); err != nil {
			return nil, err
		}
		f, err := t.fork(ctx)
		if errors.Is(err, errBusy) && attempt < maxAttempts {
			t.logger.Info("another snapshot started first; waiting for it", "instance", t.o.InstanceID, "reason", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		t.logger.Info("snapshot forked", "instance", t.o.InstanceID, "keys", f.keys, "incr", f.incr.Name)
		if err := t.waitRewrite(ctx); err != nil {
			if errors.Is(err, ErrServerGone) {
				t.stopOrphan()
			}
			return nil, err
		}
		s, err := t.stage(f)
		if errors.Is(err, errBusy) && attempt < maxAttempts {
			t.logger.Info("the snapshot's base file was replaced before it was linked; taking another", "instance", t.o.InstanceID, "reason", err)
			continue
		}
		return s, err
	}
}

// errBusy means another fork or rewrite got in the way: try again.
var errBusy = errors.New("another snapshot is in the way")

// poll is the pause between two INFO calls while waiting.
const poll = 20 * time.Millisecond

// waitIdle waits until the server loads nothing and runs no child.
func (t *taker) waitIdle(ctx context.Context) error {
	for {
		p, err := t.persistence(ctx)
		if err != nil {
			return err
		}
		if !busy(p) {
			return nil
		}
		if err := sleep(ctx, poll); err != nil {
			return fmt.Errorf("%w: waiting for another snapshot of the server to end (%s)", ErrTimeout, describeBusy(p))
		}
	}
}

func busy(p map[string]string) bool {
	return p["loading"] != "0" || p["rdb_bgsave_in_progress"] != "0" || p["aof_rewrite_in_progress"] != "0" ||
		p["aof_rewrite_scheduled"] != "0" || p["module_fork_in_progress"] != "0"
}

func describeBusy(p map[string]string) string {
	var parts []string
	for _, k := range []string{"loading", "rdb_bgsave_in_progress", "aof_rewrite_in_progress", "aof_rewrite_scheduled", "module_fork_in_progress"} {
		if p[k] != "0" {
			parts = append(parts, k+":"+p[k])
		}
	}
	return strings.Join(parts, " ")
}

// persistence reads INFO persistence, checking it is still the same server.
func (t *taker) persistence(ctx context.Context) (map[string]string, error) {
	info, err := t.c.InfoMap(ctx, "server", "persistence").Result()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: the snapshot did not finish within %s", ErrTimeout, t.o.Timeout)
		}
		return nil, fmt.Errorf("%w: %v", ErrServerGone, err)
	}
	if id := info["Server"]["run_id"]; id != t.runID {
		return nil, fmt.Errorf("%w: redis-server restarted (pid %s, was %d)", ErrServerGone, info["Server"]["process_id"], t.pid)
	}
	return info["Persistence"], nil
}

// forked is what the fork instant left: the key count and the new
// incremental file that every write after the fork goes to.
type forked struct {
	at            time.Time
	keys, expires int64
	incr          aofFile
}

// fork pauses writes, counts the keys, starts the rewrite and reads which
// incremental file Redis opened for it, then lets writes go on.
func (t *taker) fork(ctx context.Context) (f forked, err error) {
	if err := t.c.Do(ctx, "CLIENT", "PAUSE", pauseMillis, "WRITE").Err(); err != nil {
		return f, fmt.Errorf("%w: CLIENT PAUSE: %v", ErrServerGone, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if uerr := t.c.Do(uctx, "CLIENT", "UNPAUSE").Err(); uerr != nil {
			// The pause ends by itself within pauseMillis anyway.
			t.logger.Warn("CLIENT UNPAUSE failed", "instance", t.o.InstanceID, "error", uerr)
		}
	}()
	info, err := t.c.InfoMap(ctx, "server", "persistence", "keyspace").Result()
	if err != nil {
		return f, fmt.Errorf("%w: INFO: %v", ErrServerGone, err)
	}
	if info["Server"]["run_id"] != t.runID {
		return f, fmt.Errorf("%w: redis-server restarted", ErrServerGone)
	}
	if busy(info["Persistence"]) {
		return f, fmt.Errorf("%w: %s", errBusy, describeBusy(info["Persistence"]))
	}
	for _, line := range info["Keyspace"] {
		f.keys += keyspaceField(line, "keys")
		f.expires += keyspaceField(line, "expires")
	}
	reply, err := t.c.Do(ctx, "BGREWRITEAOF").Text()
	if err != nil {
		if strings.Contains(err.Error(), "in progress") {
			return f, fmt.Errorf("%w: %v", errBusy, err)
		}
		return f, fmt.Errorf("%w: BGREWRITEAOF: %v", ErrFailed, err)
	}
	f.at = time.Now().UTC()
	if !strings.Contains(reply, "started") {
		// "scheduled": a child was forked meanwhile; the rewrite will run at
		// some later instant, not while writes are paused.
		return f, fmt.Errorf("%w: BGREWRITEAOF answered %q", errBusy, reply)
	}
	// Redis opened the new incremental file and wrote it into the manifest
	// before it forked.
	m, err := readAOFManifest(filepath.Join(t.aofDir, t.aofName+".manifest"))
	if err != nil {
		return f, fmt.Errorf("%w: reading the AOF manifest: %v", ErrFailed, err)
	}
	incrs := m.incrs()
	if len(incrs) == 0 {
		return f, fmt.Errorf("%w: the AOF manifest names no incremental file", ErrFailed)
	}
	f.incr = incrs[len(incrs)-1]
	return f, nil
}

// waitRewrite waits for the rewrite to finish; at the deadline it stops the
// rewrite's child with SIGUSR1, which Redis treats as a cancellation and not
// as a failed write.
func (t *taker) waitRewrite(ctx context.Context) error {
	delay := poll
	for {
		if t.child == 0 {
			if kids := children(t.pid); len(kids) > 0 {
				t.child = kids[0]
			}
		}
		p, err := t.persistence(ctx)
		if errors.Is(err, ErrTimeout) {
			t.cancelChild()
			return err
		}
		if err != nil {
			return err
		}
		if p["aof_rewrite_in_progress"] == "0" {
			if st := p["aof_last_bgrewrite_status"]; st != "ok" {
				return fmt.Errorf("%w: the rewrite ended with status %q%s", ErrFailed, st, t.why())
			}
			return nil
		}
		if err := sleep(ctx, delay); err != nil {
			t.cancelChild()
			return fmt.Errorf("%w: the snapshot did not finish within %s; redis-server's snapshot child was stopped", ErrTimeout, t.o.Timeout)
		}
		delay = min(delay*2, 250*time.Millisecond)
	}
}

// why says why a rewrite failed, from the end of redis-server's log: most
// often the disk holding the data is full (the failed rewrite's file is
// deleted at once, so the free space alone does not show it).
func (t *taker) why() string {
	line := lastError(t.o.LogFile)
	var st syscall.Statfs_t
	disk := ""
	if syscall.Statfs(t.o.DataDir, &st) == nil {
		disk = fmt.Sprintf("%.1f MB of %.1f MB free", float64(int64(st.Bavail)*st.Bsize)/1e6, float64(int64(st.Blocks)*st.Bsize)/1e6)
	}
	switch {
	case strings.Contains(line, "No space left on device"):
		return fmt.Sprintf(": the disk holding the data is full (%s; the snapshot needs about as much as the dataset); redis-server's log: %q", disk, line)
	case line != "":
		return fmt.Sprintf("; redis-server's log: %q", line)
	default:
		return fmt.Sprintf("; redis-server's log says why (disk: %s)", disk)
	}
}

// lastError returns the last line of the log's tail that reports a failed
// write or rewrite.
func lastError(path string) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 16 << 10
	if info, err := f.Stat(); err == nil && info.Size() > tail {
		_, _ = f.Seek(info.Size()-tail, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	// The child's own error ("Write error ...: No space left on device")
	// says more than its parent's "terminated with error" after it.
	for _, words := range []string{"Write error", "rror"} {
		for i := len(lines) - 1; i >= 0 && i >= len(lines)-20; i-- {
			if l := lines[i]; strings.Contains(l, words) {
				if i := strings.Index(l, " # "); i >= 0 {
					l = l[i+3:] // drop "pid:role date time "
				}
				return strings.TrimSpace(l)
			}
		}
	}
	return ""
}

// cancelChild stops the server's fork children (the rewrite) with SIGUSR1.
func (t *taker) cancelChild() {
	for _, pid := range children(t.pid) {
		if err := syscall.Kill(pid, syscall.SIGUSR1); err == nil {
			t.logger.Info("stopped the snapshot's child process", "instance", t.o.InstanceID, "pid", pid)
		}
	}
}

// stopOrphan kills the rewrite's child when its server died under it: the
// child would go on writing a snapshot nobody reads and leave its temporary
// file in the data directory, which it then removes.
func (t *taker) stopOrphan() {
	if t.child == 0 || !isRewriteChild(t.child) {
		removeStaleTemp(t.o.DataDir, t.logger)
		return
	}
	_ = syscall.Kill(t.child, syscall.SIGKILL)
	for i := 0; i < 250 && isRewriteChild(t.child); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	t.logger.Info("killed the snapshot child its dead server left behind", "instance", t.o.InstanceID, "pid", t.child)
	removeStaleTemp(t.o.DataDir, t.logger)
}

// isRewriteChild reports whether pid is a live AOF rewrite child (Redis
// sets its title to "redis-aof-rewrite ...").
func isRewriteChild(pid int) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err == nil {
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 0 && f[0] == "Z" {
				return false // a zombie: dead, waiting to be reaped
			}
		}
	}
	return strings.HasPrefix(string(cmdline), "redis-aof-rewrite")
}

// staleTempPattern matches the temporary files of a rewrite child, which
// the server removes when the child ends, unless the server died first.
var staleTempPattern = regexp.MustCompile(`^temp-rewriteaof-(?:bg-)?(\d+)\.aof$`)

// removeStaleTemp removes rewrite temporary files in dir whose process is
// gone.
func removeStaleTemp(dir string, logger *slog.Logger) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		m := staleTempPattern.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if _, err := os.Stat(filepath.Join("/proc", m[1])); err == nil && isRewriteChild(pid) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
			logger.Info("removed a snapshot file a dead redis-server left behind", "file", e.Name())
		}
	}
}

// stage hard-links the base file the rewrite wrote into the staging folder
// and describes the archive's entries. errBusy means a later rewrite
// replaced it first.
func (t *taker) stage(f forked) (*Snapshot, error) {
	m, err := readAOFManifest(filepath.Join(t.aofDir, t.aofName+".manifest"))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the AOF manifest: %v", ErrFailed, err)
	}
	base, ok := m.base()
	incrs := m.incrs()
	if !ok || len(incrs) == 0 || incrs[0] != f.incr {
		return nil, fmt.Errorf("%w: the AOF manifest no longer starts from this snapshot's rewrite", errBusy)
	}
	if !strings.HasSuffix(base.Name, ".rdb") {
		return nil, fmt.Errorf("%w: the rewrite's base file %s is not an RDB file", ErrFailed, base.Name)
	}
	linked := filepath.Join(t.o.StagingDir, base.Name)
	if err := os.Link(filepath.Join(t.aofDir, base.Name), linked); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %v", errBusy, err)
		}
		return nil, fmt.Errorf("linking the snapshot into the staging folder: %w", err)
	}
	st, err := os.Stat(linked)
	if err != nil {
		return nil, err
	}
	aofDir := archive.AOFDir
	return &Snapshot{
		staging:  t.o.StagingDir,
		manifest: t.manifest(f),
		entries: []archive.Entry{
			{Name: archive.RDBName, Path: linked, Size: st.Size()},
			{Name: aofDir + "/" + base.Name, LinkTo: archive.RDBName},
			{Name: aofDir + "/" + f.incr.Name, Data: []byte{}},
			{Name: aofDir + "/" + t.aofName + ".manifest", Data: aofManifest{base, f.incr}.render()},
		},
	}, nil
}

// manifest describes the snapshot forked at f, with no files yet.
func (t *taker) manifest(f forked) archive.Manifest {
	return archive.Manifest{
		InstanceID:   t.o.InstanceID,
		Plan:         t.o.Plan,
		RedisVersion: t.version,
		CreatedAt:    f.at,
		Keys:         f.keys,
		Expires:      f.expires,
	}
}

// keyspaceField reads one field of an INFO keyspace line
// ("keys=1,expires=0,avg_ttl=0").
func keyspaceField(line, field string) int64 {
	for _, kv := range strings.Split(line, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == field {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
