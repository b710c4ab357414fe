package snapshot

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
)

// Folder names beside a data directory. A restore stages the backup in
// restore-*, moves the data it replaces to <data>.previous while the new
// data loads, and to <data>.discard once it verified; a snapshot stages in
// snapshot-*. Recover tidies up after a crash using these names alone.
const (
	restorePrefix  = "restore-"
	snapshotPrefix = "snapshot-"
	previousSuffix = ".previous"
	discardSuffix  = ".discard"
)

// DefaultLoadTimeout is the LoadTimeout of InstallOptions that set none.
const DefaultLoadTimeout = 30 * time.Minute

// ErrVerify means the restored data loaded but did not match its manifest.
var ErrVerify = errors.New("the restored data did not verify")

// StagingDir returns a new name for a snapshot's staging folder beside
// dataDir.
func StagingDir(dataDir string) string {
	return filepath.Join(filepath.Dir(dataDir), snapshotPrefix+strings.ToLower(randomName()))
}

func randomName() string { return rand.Text()[:12] }

// Server is the redis-server whose data a restore replaces.
type Server interface {
	// Stop stops redis-server gracefully; nothing restarts it until Start.
	Stop(ctx context.Context) error
	// Start starts redis-server on its data directory and returns once it
	// answers (it may still be loading).
	Start(ctx context.Context) error
	// Admin returns a new admin connection to the server; the caller closes
	// it.
	Admin() *redis.Client
}

// Staged is a verified backup unpacked beside a data directory, ready to
// take its place. Close it when done: after Install it is gone already.
type Staged struct {
	// Manifest is the backup's verified manifest.
	Manifest archive.Manifest
	dir      string
}

// Stage unpacks the archive r yields into a new folder in parent (which
// must be on the data directory's file system, so that Install is a rename)
// and verifies every file against the manifest. An archive holding only
// dump.rdb gets an appendonlydir made of it, as instances load the AOF.
// Errors wrap archive.ErrCorrupt for a bad archive; a full disk or a broken
// upload comes back as it is.
func Stage(r io.Reader, parent string) (*Staged, error) {
	dir, err := os.MkdirTemp(parent, restorePrefix)
	if err != nil {
		return nil, fmt.Errorf("creating the staging folder: %w", err)
	}
	m, err := archive.Extract(r, dir)
	if err == nil {
		err = completeAOF(dir)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &Staged{Manifest: m, dir: dir}, nil
}

// Close removes what is left of the staged backup.
func (s *Staged) Close() error { return os.RemoveAll(s.dir) }

// completeAOF checks the staged appendonlydir's manifest against its files,
// or makes an appendonlydir whose base is dump.rdb when there is none.
func completeAOF(dir string) error {
	aofDir := filepath.Join(dir, archive.AOFDir)
	manifest := filepath.Join(aofDir, "appendonly.aof.manifest")
	if _, err := os.Stat(aofDir); errors.Is(err, os.ErrNotExist) {
		base := aofFile{Name: "appendonly.aof.1.base.rdb", Seq: 1, Type: "b"}
		if err := os.Mkdir(aofDir, 0o700); err != nil {
			return err
		}
		if err := os.Link(filepath.Join(dir, archive.RDBName), filepath.Join(aofDir, base.Name)); err != nil {
			return err
		}
		return writeSynced(manifest, aofManifest{base}.render())
	}
	m, err := readAOFManifest(manifest)
	if err != nil {
		return fmt.Errorf("%w: appendonlydir: %v", archive.ErrCorrupt, err)
	}
	bases := 0
	for _, f := range m {
		if f.Type == "h" {
			continue
		}
		if f.Type == "b" {
			bases++
		}
		if _, err := os.Stat(filepath.Join(aofDir, f.Name)); err != nil {
			return fmt.Errorf("%w: appendonlydir's manifest names %s, which the backup does not hold", archive.ErrCorrupt, f.Name)
		}
	}
	if bases != 1 {
		return fmt.Errorf("%w: appendonlydir's manifest names %d base files", archive.ErrCorrupt, bases)
	}
	return nil
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = statefile.SyncDir(filepath.Dir(path))
	}
	return err
}

// InstallOptions tune Install; the zero value takes the defaults.
type InstallOptions struct {
	// LoadTimeout bounds the wait for redis-server to load the restored
	// data; zero means DefaultLoadTimeout.
	LoadTimeout time.Duration
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Result is what a restore put in place.
type Result struct {
	// Keys counts the keys the server holds after loading the backup.
	Keys int64
}

// Install puts the staged backup in place of dataDir: it stops the server,
// moves dataDir aside (to dataDir.previous) and the staged folder in its
// place, starts the server and waits until it has loaded the data and holds
// the manifest's keys (less at most the keys that had a TTL, which may have
// expired since). Only then is the old data deleted. On any failure the
// server is stopped, the old data moved back and the server started again,
// and the error says so. Install runs to its end even if ctx is cancelled:
// half a swap would leave the instance without its data.
func (s *Staged) Install(ctx context.Context, dataDir string, srv Server, o InstallOptions) (Result, error) {
	ctx = context.WithoutCancel(ctx)
	if o.LoadTimeout <= 0 {
		o.LoadTimeout = DefaultLoadTimeout
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	prev := dataDir + previousSuffix
	if _, err := os.Stat(prev); err == nil {
		return Result{}, fmt.Errorf("%s exists: an earlier restore was not finished", filepath.Base(prev))
	}
	// The old data's AOF is complete once the server stops (it flushes and
	// fsyncs it at shutdown): the RDB snapshot it would also write is not
	// needed to go back to it, and can take long for a large dataset.
	if c := srv.Admin(); c != nil {
		_ = c.ConfigSet(ctx, "save", "").Err()
		c.Close()
	}
	began := time.Now()
	if err := srv.Stop(ctx); err != nil {
		return Result{}, fmt.Errorf("stopping redis-server: %w", err)
	}
	stopped := time.Since(began)
	parent := filepath.Dir(dataDir)
	if err := os.Rename(dataDir, prev); err != nil {
		startErr := srv.Start(ctx)
		return Result{}, errors.Join(fmt.Errorf("moving the current data aside: %w", err), startErr)
	}
	fail := func(cause error) (Result, error) {
		logger.Error("restore failed; putting the previous data back", "data_dir", dataDir, "error", cause)
		if err := rollback(ctx, dataDir, prev, srv); err != nil {
			return Result{}, fmt.Errorf("%w; putting the previous data back failed too: %v (it is kept in %s)", cause, err, prev)
		}
		return Result{}, fmt.Errorf("%w; the instance was rolled back and serves its previous data", cause)
	}
	if err := os.Rename(s.dir, dataDir); err != nil {
		return fail(fmt.Errorf("moving the backup into place: %w", err))
	}
	if err := statefile.SyncDir(parent); err != nil {
		return fail(err)
	}
	// The restored files must be on disk before the old data is deleted,
	// not before redis-server reads them (a crash before the commit rolls
	// back anyway): fsync them while it loads.
	synced := make(chan error, 1)
	var syncTook time.Duration
	go func() {
		t := time.Now()
		err := archive.SyncTree(dataDir)
		syncTook = time.Since(t)
		synced <- err
	}()
	starting := time.Now()
	if err := srv.Start(ctx); err != nil {
		<-synced
		return fail(fmt.Errorf("redis-server did not start on the restored data: %w", err))
	}
	keys, err := waitLoaded(ctx, srv, o.LoadTimeout)
	loaded := time.Since(starting)
	if serr := <-synced; err == nil && serr != nil {
		err = fmt.Errorf("writing the restored data to disk: %w", serr)
	}
	if err != nil {
		return fail(err)
	}
	m := s.Manifest
	if keys > m.Keys || keys < m.Keys-m.Expires {
		return fail(fmt.Errorf("%w: the server holds %d keys, the backup's manifest %d (%d of them with a TTL)", ErrVerify, keys, m.Keys, m.Expires))
	}
	discard := dataDir + discardSuffix
	if err := os.Rename(prev, discard); err != nil {
		// The restore is done; the old data is left for Recover to remove.
		logger.Error("the replaced data could not be moved away", "error", err)
		return Result{Keys: keys}, nil
	}
	_ = statefile.SyncDir(parent)
	if err := os.RemoveAll(discard); err != nil {
		logger.Error("the replaced data could not be deleted", "error", err)
	}
	logger.Info("restore installed", "data_dir", dataDir, "keys", keys, "stop_s", stopped.Seconds(),
		"start_and_load_s", loaded.Seconds(), "fsync_s", syncTook.Seconds(), "total_s", time.Since(began).Seconds())
	return Result{Keys: keys}, nil
}

func rollback(ctx context.Context, dataDir, prev string, srv Server) error {
	if err := srv.Stop(ctx); err != nil {
		return fmt.Errorf("stopping redis-server: %w", err)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}
	if err := os.Rename(prev, dataDir); err != nil {
		return err
	}
	if err := statefile.SyncDir(filepath.Dir(dataDir)); err != nil {
		return err
	}
	return srv.Start(ctx)
}

// waitLoaded waits until the server has loaded its data and counts its keys.
func waitLoaded(ctx context.Context, srv Server, timeout time.Duration) (int64, error) {
	c := srv.Admin()
	defer c.Close()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		info, err := c.InfoMap(ctx, "persistence", "keyspace").Result()
		switch {
		case err != nil:
			last = err
		case info["Persistence"]["loading"] == "0":
			var keys int64
			for _, line := range info["Keyspace"] {
				keys += keyspaceField(line, "keys")
			}
			return keys, nil
		default:
			last = errors.New("still loading")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("redis-server did not load the restored data within %s (last: %v)", timeout, last)
}

// Pending reports whether a restore into dataDir was cut short before it
// finished: Recover must run, with no redis-server on dataDir, before the
// server starts again.
func Pending(dataDir string) bool {
	_, err := os.Stat(dataDir + previousSuffix)
	return err == nil
}

// Recover tidies up beside dataDir after a crash: a restore cut short is
// rolled back (the data it replaced goes back in place, as the restore
// never reported success), and staging folders and replaced data left
// behind are deleted. No redis-server may run on dataDir meanwhile, and no
// snapshot or restore of it.
func Recover(dataDir string) (rolledBack bool, err error) {
	parent := filepath.Dir(dataDir)
	prev := dataDir + previousSuffix
	if _, serr := os.Stat(prev); serr == nil {
		if err := os.RemoveAll(dataDir); err != nil {
			return false, err
		}
		if err := os.Rename(prev, dataDir); err != nil {
			return false, err
		}
		if err := statefile.SyncDir(parent); err != nil {
			return true, err
		}
		rolledBack = true
	}
	var errs []error
	errs = append(errs, os.RemoveAll(dataDir+discardSuffix))
	entries, rerr := os.ReadDir(parent)
	if rerr != nil {
		return rolledBack, rerr
	}
	for _, e := range entries {
		if e.IsDir() && (strings.HasPrefix(e.Name(), restorePrefix) || strings.HasPrefix(e.Name(), snapshotPrefix)) {
			errs = append(errs, os.RemoveAll(filepath.Join(parent, e.Name())))
		}
	}
	return rolledBack, errors.Join(errs...)
}
