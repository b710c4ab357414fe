package agentbase

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/cron"
	"github.com/cf-redis/redis-for-cf/src/internal/snapshot"
)

// idPattern is what node, instance and binding ids may look like: they
// become directory names and ACL usernames, so no '/', no ':', no leading
// '.', no spaces.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidID reports whether id may be a node, instance or binding id.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// CheckID returns invalid, explained, when id is not a valid id; what names
// the id in the message.
func CheckID(what, id string, invalid error) error {
	if !ValidID(id) {
		return fmt.Errorf("%w: %s must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", invalid, what)
	}
	return nil
}

// RedisServerPath returns the absolute path of the redis-server binary
// named in the config (a name is looked up on PATH): adoption compares it
// with /proc/PID/exe.
func RedisServerPath(name string) (string, error) {
	server, err := exec.LookPath(name)
	if err == nil {
		server, err = filepath.Abs(server)
	}
	if err != nil {
		return "", fmt.Errorf("redis_server: %w", err)
	}
	return server, nil
}

// RedisClient returns a client of the redis-server at addr with one
// connection and no retries, for an agent's own commands.
func RedisClient(addr, user, password string, timeout time.Duration) *redis.Client {
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

// HeldArchive is a snapshot that keeps its instance busy until it is
// closed, and whose stream fails when the instance went away while it
// streamed: the last bytes never reach the client, so its upload is aborted.
type HeldArchive struct {
	*snapshot.Snapshot
	// Release ends the hold; Close calls it.
	Release func()
	// Alive returns an error once the instance is gone.
	Alive func() error
}

// WriteTo streams the archive, failing once Alive does.
func (a *HeldArchive) WriteTo(w io.Writer) (int64, error) {
	return a.Snapshot.WriteChecked(w, a.Alive)
}

// Close removes the snapshot and releases the instance.
func (a *HeldArchive) Close() error {
	defer a.Release()
	return a.Snapshot.Close()
}

// RunBackups backs up the instances of src on the schedule cfg gives, until
// ctx ends, logging each run on logger.
func RunBackups(ctx context.Context, cfg *backup.Schedule, logger *slog.Logger, src backup.Source) error {
	st, err := cfg.Destination.Open()
	if err != nil {
		return fmt.Errorf("backups.destination: %w", err)
	}
	runner := backup.Runner{Store: st, Prefix: cfg.Destination.PathPrefix, Retention: cfg.Retention, Out: backup.LogWriter(logger)}
	logger.Info("scheduled backups on", "schedule", cfg.Schedule)
	cron.Run(ctx, cfg.Cron(), func(ctx context.Context) { runner.Run(ctx, []backup.Source{src}) })
	return nil
}
