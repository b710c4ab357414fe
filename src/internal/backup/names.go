package backup

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/store"
)

// TimeLayout is the time in a backup's name: UTC, to the millisecond, in a
// form that sorts as text in time order.
const TimeLayout = "20060102T150405.000Z"

// suffix ends every backup's name.
const suffix = ".tar.gz"

// Errors of Resolve; their messages are fit for an app developer.
var (
	// ErrNoBackup means no backup of the instance has the name asked for.
	ErrNoBackup = errors.New("no such backup")
	// ErrOtherInstance means the name is outside the instance's backups.
	ErrOtherInstance = errors.New("not a backup of this instance")
	// ErrAmbiguous means a partial time matches several backups.
	ErrAmbiguous = errors.New("more than one backup matches")
)

// ObjectName is the name of a backup of instance id taken at t.
func ObjectName(prefix, id string, t time.Time) string {
	return join(prefix, id, t.UTC().Format(TimeLayout)+suffix)
}

// InstancePrefix is what the names of instance id's backups start with.
func InstancePrefix(prefix, id string) string {
	return join(prefix, id) + "/"
}

// Backup is one stored backup of an instance.
type Backup struct {
	// Name is the object name.
	Name string
	// Stamp is the time part of the name, e.g. "20260121T030000.000Z".
	Stamp string
	Time  time.Time
	Size  int64
}

// List returns the backups of instance id, newest first. Objects under the
// instance's prefix whose names are not backup names are left out.
func List(ctx context.Context, st store.Store, prefix, id string) ([]Backup, error) {
	ip := InstancePrefix(prefix, id)
	objs, err := st.List(ctx, ip)
	if err != nil {
		return nil, err
	}
	var out []Backup
	for _, o := range objs {
		if b, ok := parse(o, ip); ok {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b Backup) int { return strings.Compare(b.Name, a.Name) })
	return out, nil
}

// parse reads o as a backup under the instance prefix ip.
func parse(o store.Object, ip string) (Backup, bool) {
	rest, ok := strings.CutPrefix(o.Name, ip)
	if !ok {
		return Backup{}, false
	}
	stamp, ok := strings.CutSuffix(rest, suffix)
	if !ok || strings.Contains(stamp, "/") {
		return Backup{}, false
	}
	t, err := time.Parse(TimeLayout, stamp)
	if err != nil {
		return Backup{}, false
	}
	return Backup{Name: o.Name, Stamp: stamp, Time: t, Size: o.Size}, true
}

// Newest returns the newest backup of every instance that has one under
// prefix, by instance id: one listing of the whole prefix, however many
// instances it holds.
func Newest(ctx context.Context, st store.Store, prefix string) (map[string]Backup, error) {
	all := join(prefix) + "/"
	if all == "/" {
		all = ""
	}
	objs, err := st.List(ctx, all)
	if err != nil {
		return nil, err
	}
	out := map[string]Backup{}
	for _, o := range objs {
		id, _, ok := strings.Cut(strings.TrimPrefix(o.Name, all), "/")
		if !ok || id == "" {
			continue
		}
		b, ok := parse(o, InstancePrefix(prefix, id))
		if !ok {
			continue
		}
		if cur, seen := out[id]; !seen || b.Name > cur.Name {
			out[id] = b
		}
	}
	return out, nil
}

// Prune deletes the backups of instance id that r does not keep and returns
// their names. Call it only after a new backup of the instance succeeded.
func Prune(ctx context.Context, st store.Store, prefix, id string, r Retention, now time.Time) ([]string, error) {
	backups, err := List(ctx, st, prefix, id)
	if err != nil {
		return nil, err
	}
	keepNewest := max(r.KeepNewest, 1)
	cutoff := now.AddDate(0, 0, -r.KeepDays)
	var deleted []string
	var errs []error
	for i, b := range backups {
		if i < keepNewest || (r.KeepDays > 0 && b.Time.After(cutoff)) {
			continue
		}
		if err := st.Delete(ctx, b.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, b.Name)
	}
	return deleted, errors.Join(errs...)
}

// Resolve finds the backup of instance id that ref names: "latest", a full
// object name (which must lie under the instance's prefix), a file name
// ("20260121T030000.000Z.tar.gz"), or a time or the start of one
// ("20260121T030000.000Z", "20260121T0300", "2026-01-21T03:00:00Z") that
// matches exactly one backup.
func Resolve(ctx context.Context, st store.Store, prefix, id, ref string) (Backup, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return Backup{}, fmt.Errorf("%w: name a backup by its time, its file name or \"latest\"", ErrNoBackup)
	}
	ip := InstancePrefix(prefix, id)
	if strings.Contains(ref, "/") {
		base, ok := strings.CutPrefix(ref, ip)
		if !ok || strings.Contains(base, "/") || path.Clean(ref) != ref {
			return Backup{}, fmt.Errorf("%w: %q is not under %s", ErrOtherInstance, ref, ip)
		}
		ref = base
	}
	backups, err := List(ctx, st, prefix, id)
	if err != nil {
		return Backup{}, err
	}
	if len(backups) == 0 {
		return Backup{}, fmt.Errorf("%w: instance %s has no backups yet", ErrNoBackup, id)
	}
	if ref == "latest" {
		return backups[0], nil
	}
	want := normalise(strings.TrimSuffix(ref, suffix))
	var matches []Backup
	for _, b := range backups {
		if b.Stamp == want {
			return b, nil
		}
		if want != "" && strings.HasPrefix(b.Stamp, want) {
			matches = append(matches, b)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return Backup{}, fmt.Errorf("%w: no backup of instance %s matches %q; the newest are %s", ErrNoBackup, id, ref, stamps(backups, 5))
	default:
		return Backup{}, fmt.Errorf("%w: %q matches %s; give more of the time", ErrAmbiguous, ref, stamps(matches, 5))
	}
}

// normalise turns the ways people write a time into the name's form:
// "2026-01-21T03:00:00Z" and "2026-01-21 03:00" become "20260121T030000"
// and "20260121T0300"; a trailing Z without milliseconds is dropped, so it
// matches the name's ".000Z".
func normalise(ref string) string {
	r := strings.NewReplacer("-", "", ":", "", " ", "T")
	s := r.Replace(ref)
	if strings.HasSuffix(s, "Z") && !strings.Contains(s, ".") {
		s = strings.TrimSuffix(s, "Z")
	}
	return s
}

func stamps(bs []Backup, n int) string {
	var out []string
	for i, b := range bs {
		if i == n {
			out = append(out, "...")
			break
		}
		out = append(out, b.Stamp)
	}
	return strings.Join(out, ", ")
}
