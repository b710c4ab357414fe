// Package backup runs backups and finds them again: where they go
// (Destination, opened as a store.Store), what they are called
// (<prefix>/<instance-id>/<UTC time>.tar.gz, so names sort by time and a
// listing of one instance is one prefix), how many are kept (Retention),
// and the run over every instance of a VM that the backup errand and the
// agents' schedules share (Runner). The snapshots themselves come from the
// agents (package snapshot); this package only moves archives.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/cron"
	"github.com/cf-redis/redis-for-cf/src/internal/store"
	"github.com/cf-redis/redis-for-cf/src/internal/store/dirstore"
	"github.com/cf-redis/redis-for-cf/src/internal/store/s3store"
)

// Destination is where backups go: exactly one of S3 and Local.
type Destination struct {
	// S3 is an S3-compatible bucket.
	S3 *S3 `json:"s3,omitempty"`
	// Local is a folder on the VM (or a mounted volume).
	Local *Local `json:"local,omitempty"`
	// PathPrefix goes before every object name ("prod/redis" makes
	// "prod/redis/<instance-id>/<time>.tar.gz"); empty means none.
	PathPrefix string `json:"path_prefix,omitempty"`
}

// S3 is an S3-compatible bucket.
type S3 struct {
	// Endpoint is the S3 API's URL, e.g. "https://s3.eu-west-1.amazonaws.com".
	Endpoint string `json:"endpoint"`
	// Region is the bucket's region; empty lets the client ask S3.
	Region string `json:"region,omitempty"`
	// Bucket must exist; the backups never create it.
	Bucket          string `json:"bucket"`
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	// PathStyle addresses the bucket in the URL's path, as MinIO and most
	// S3-compatible stores want; false uses virtual-hosted style.
	PathStyle bool `json:"path_style,omitempty"`
	// CACert is a PEM CA for an endpoint with a private certificate.
	CACert string `json:"ca_cert,omitempty"`
	// PartSizeMB is the size of each part of an upload; zero means 16.
	PartSizeMB int `json:"part_size_mb,omitempty"`
	// Concurrency is the number of parts in flight; zero means 3.
	Concurrency int `json:"concurrency,omitempty"`
}

// Local is a folder of backups.
type Local struct {
	// Path is an absolute path; it is created if missing.
	Path string `json:"path"`
}

// Validate checks the destination, naming fields under field (e.g.
// "backups.destination").
func (d *Destination) Validate(field string) error {
	var errs []error
	switch {
	case d.S3 == nil && d.Local == nil:
		errs = append(errs, fmt.Errorf("%s: set s3 or local", field))
	case d.S3 != nil && d.Local != nil:
		errs = append(errs, fmt.Errorf("%s: set s3 or local, not both", field))
	case d.S3 != nil:
		s := d.S3
		if !strings.HasPrefix(s.Endpoint, "http://") && !strings.HasPrefix(s.Endpoint, "https://") {
			errs = append(errs, fmt.Errorf("%s.s3.endpoint must be an http or https URL", field))
		}
		if s.Bucket == "" {
			errs = append(errs, fmt.Errorf("%s.s3.bucket is required", field))
		}
		if s.AccessKeyID == "" || s.SecretAccessKey == "" {
			errs = append(errs, fmt.Errorf("%s.s3.access_key_id and secret_access_key are required", field))
		}
		if s.PartSizeMB != 0 && (s.PartSizeMB < 5 || s.PartSizeMB > 5120) {
			errs = append(errs, fmt.Errorf("%s.s3.part_size_mb must be 5-5120", field))
		}
		if s.Concurrency < 0 || s.Concurrency > 64 {
			errs = append(errs, fmt.Errorf("%s.s3.concurrency must be 0-64", field))
		}
	case d.Local != nil:
		if !filepath.IsAbs(d.Local.Path) {
			errs = append(errs, fmt.Errorf("%s.local.path must be an absolute path", field))
		}
	}
	d.PathPrefix = strings.Trim(d.PathPrefix, "/")
	if d.PathPrefix != "" {
		if err := store.CheckName(d.PathPrefix); err != nil {
			errs = append(errs, fmt.Errorf("%s.path_prefix: %w", field, err))
		}
	}
	return errors.Join(errs...)
}

// Open returns the store d describes; it sends no request.
func (d Destination) Open() (store.Store, error) {
	switch {
	case d.S3 != nil:
		return s3store.New(s3store.Config{
			Endpoint:        d.S3.Endpoint,
			Region:          d.S3.Region,
			Bucket:          d.S3.Bucket,
			AccessKeyID:     d.S3.AccessKeyID,
			SecretAccessKey: d.S3.SecretAccessKey,
			PathStyle:       d.S3.PathStyle,
			CACert:          d.S3.CACert,
			PartSize:        int64(d.S3.PartSizeMB) << 20,
			Concurrency:     d.S3.Concurrency,
		})
	case d.Local != nil:
		return dirstore.New(d.Local.Path)
	default:
		return nil, errors.New("no backup destination configured")
	}
}

// Retention says which backups of an instance to keep: the newest
// KeepNewest, and every one younger than KeepDays days. Older ones are
// deleted only after a new backup of the instance succeeded.
type Retention struct {
	// KeepNewest is the number of newest backups always kept; zero means 7.
	KeepNewest int `json:"keep_newest,omitempty"`
	// KeepDays keeps every backup younger than this many days besides;
	// zero means age keeps none.
	KeepDays int `json:"keep_days,omitempty"`
}

// DefaultKeepNewest is the KeepNewest of a Retention that sets none.
const DefaultKeepNewest = 7

// Validate checks r and fills in defaults.
func (r *Retention) Validate(field string) error {
	var errs []error
	if r.KeepNewest == 0 {
		r.KeepNewest = DefaultKeepNewest
	}
	if r.KeepNewest < 1 {
		errs = append(errs, fmt.Errorf("%s.keep_newest must be at least 1", field))
	}
	if r.KeepDays < 0 {
		errs = append(errs, fmt.Errorf("%s.keep_days must not be negative", field))
	}
	return errors.Join(errs...)
}

// Schedule is an agent's own schedule of backups of every instance it runs.
type Schedule struct {
	// Schedule is a cron line in UTC ("0 3 * * *"), @daily, @hourly or
	// "@every 6h" (package cron).
	Schedule    string      `json:"schedule"`
	Destination Destination `json:"destination"`
	Retention   Retention   `json:"retention"`
	// SnapshotTimeoutSeconds bounds each instance's snapshot; zero means an
	// hour.
	SnapshotTimeoutSeconds int `json:"snapshot_timeout_seconds,omitempty"`
}

// Validate checks s, naming fields under field (e.g. "backups").
func (s *Schedule) Validate(field string) error {
	var errs []error
	if _, err := cron.Parse(s.Schedule); err != nil {
		errs = append(errs, fmt.Errorf("%s.schedule: %w", field, err))
	}
	errs = append(errs, s.Destination.Validate(field+".destination"), s.Retention.Validate(field+".retention"))
	if s.SnapshotTimeoutSeconds < 0 {
		errs = append(errs, fmt.Errorf("%s.snapshot_timeout_seconds must not be negative", field))
	}
	return errors.Join(errs...)
}

// SnapshotTimeout returns the configured snapshot timeout.
func (s *Schedule) SnapshotTimeout() time.Duration {
	return time.Duration(s.SnapshotTimeoutSeconds) * time.Second
}

// Cron returns the parsed schedule; s must have passed Validate.
func (s *Schedule) Cron() cron.Schedule {
	c, _ := cron.Parse(s.Schedule)
	return c
}

// Interval is the gap between the schedule's next two runs after now: what
// an alert on a backup's age compares with.
func (s *Schedule) Interval(now time.Time) time.Duration {
	c := s.Cron()
	next := c.Next(now)
	return c.Next(next).Sub(next)
}

// join joins object name segments, leaving out empty ones.
func join(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return path.Join(keep...)
}

// Agent is an agent's own instances, as its schedule backs them up: an
// agentapi.Service.
type Agent interface {
	Lister
	Snapshot(ctx context.Context, id string, req agentapi.SnapshotRequest) (agentapi.Archive, error)
}

// Run backs up every instance of the agent src (named name in messages) on
// the schedule, until ctx ends, logging each run on logger and handing
// each instance's Result to record (when not nil). It fails at once when
// the destination cannot be opened.
func (s *Schedule) Run(ctx context.Context, logger *slog.Logger, name string, src Agent, record func(Result)) error {
	st, err := s.Destination.Open()
	if err != nil {
		return fmt.Errorf("backups.destination: %w", err)
	}
	runner := Runner{Store: st, Prefix: s.Destination.PathPrefix, Retention: s.Retention, Out: LogWriter(logger), Record: record}
	source := Source{
		Name:      name,
		Instances: src.List,
		Snapshot: func(ctx context.Context, id string) (io.ReadCloser, error) {
			a, err := src.Snapshot(ctx, id, agentapi.SnapshotRequest{Timeout: s.SnapshotTimeout(), LateHead: true})
			if err != nil {
				return nil, err
			}
			return Pipe(a), nil
		},
	}
	logger.Info("scheduled backups on", "schedule", s.Schedule)
	if record != nil {
		go s.reportFound(ctx, logger, st, src, record)
	}
	cron.Run(ctx, s.Cron(), func(ctx context.Context) { runner.Run(ctx, []Source{source}) })
	return nil
}

// FoundInterval is how often Schedule.Run lists the destination for the
// newest backup of each of the agent's instances.
const FoundInterval = 5 * time.Minute

// reportFound hands record the newest backup of each of src's instances
// that the destination holds, at once and every FoundInterval until ctx
// ends, so that what a backup's age is measured from survives an agent's
// restart and counts the backup errand's backups too. A listing that fails
// is logged and tried again at the next interval.
func (s *Schedule) reportFound(ctx context.Context, logger *slog.Logger, st store.Store, src Lister, record func(Result)) {
	t := time.NewTicker(FoundInterval)
	defer t.Stop()
	for {
		ids, err := instanceIDs(ctx, src)
		var newest map[string]Backup
		if err == nil {
			newest, err = Newest(ctx, st, s.Destination.PathPrefix)
		}
		if err != nil && ctx.Err() == nil {
			logger.Warn("listing the backup destination for each instance's newest backup", "error", err)
		}
		for _, id := range ids {
			if b, ok := newest[id]; ok {
				record(Result{Instance: id, Object: b.Name, Bytes: b.Size, Started: b.Time, Found: true})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
