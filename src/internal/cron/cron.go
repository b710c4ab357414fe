// Package cron reads the schedules of the agents' scheduled backups and runs
// work on them, with github.com/robfig/cron/v3: the five fields of a crontab
// line ("minute hour day-of-month month day-of-week", with *, lists, ranges,
// steps and the names jan-dec and sun-sat, evaluated in UTC unless the line
// starts with CRON_TZ=ZONE), the shorthands @hourly, @daily (@midnight),
// @weekly, @monthly and @yearly (@annually), and "@every DURATION" (Go
// syntax, a second or more, e.g. "@every 6h").
//
// As in Vixie cron, when both day fields are restricted a day matches if
// either does, and Sunday is 0 or 7 (robfig/cron knows only 0: a 7 in the
// day-of-week field is rewritten before it parses).
package cron

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	robfig "github.com/robfig/cron/v3"
)

// Schedule says when something runs next.
type Schedule interface {
	// Next returns the first time after t at which the schedule fires, or
	// the zero time if it never does.
	Next(t time.Time) time.Time
	// String returns the schedule as it was written.
	String() string
}

// Parse reads a schedule. Its errors quote spec and say what is wrong in
// it; callers add the name of the field it came from.
func Parse(spec string) (Schedule, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, fmt.Errorf("schedule is empty: want five fields (minute hour day-of-month month day-of-week) or @daily, @hourly, @weekly, @monthly, @yearly, @every DURATION")
	}
	// robfig/cron v3.0.1 slices past the end of a time zone prefix with
	// nothing after it (and panics); it also raises "@every" durations
	// under a second to one second, where a typo like 10ms should be an
	// error.
	if (strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")) && !strings.Contains(spec, " ") {
		return nil, fmt.Errorf("schedule %q: a time zone needs a schedule after it", spec)
	}
	if rest, ok := strings.CutPrefix(spec, "@every "); ok {
		if d, err := time.ParseDuration(strings.TrimSpace(rest)); err != nil || d < time.Second {
			return nil, fmt.Errorf("schedule %q: @every needs a duration of a second or more, such as 6h", spec)
		}
	}
	s, err := robfig.ParseStandard(sundayAsZero(spec))
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", spec, err)
	}
	return schedule{s: s, spec: spec}, nil
}

// sundayAsZero rewrites a 7 (Sunday, as Vixie cron and our earlier parser
// read it) in the day-of-week field of a five-field line as 0, which is all
// robfig/cron accepts: "7" becomes "0", a range "5-7" becomes "5-6,0", and a
// stepped range "1-7/2" keeps 0 when the step reaches 7.
func sundayAsZero(spec string) string {
	fields := strings.Fields(spec)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "@") {
		return spec
	}
	if strings.Contains(fields[0], "=") { // CRON_TZ=ZONE or TZ=ZONE
		if len(fields) != 6 || strings.HasPrefix(fields[1], "@") {
			return spec
		}
	} else if len(fields) != 5 {
		return spec
	}
	dow := &fields[len(fields)-1]
	var items []string
	for _, item := range strings.Split(*dow, ",") {
		rng, step, stepped := strings.Cut(item, "/")
		lo, hi, isRange := strings.Cut(rng, "-")
		switch {
		case rng == "7":
			items = append(items, "0"+suffix(step, stepped))
		case isRange && hi == "7":
			items = append(items, lo+"-6"+suffix(step, stepped))
			a, errA := strconv.Atoi(lo)
			n, errN := strconv.Atoi(step)
			if !stepped || (errA == nil && errN == nil && n > 0 && (7-a)%n == 0) {
				items = append(items, "0")
			}
		default:
			items = append(items, item)
		}
	}
	*dow = strings.Join(items, ",")
	return strings.Join(fields, " ")
}

func suffix(step string, stepped bool) string {
	if stepped {
		return "/" + step
	}
	return ""
}

type schedule struct {
	s    robfig.Schedule
	spec string
}

// Next evaluates the schedule in UTC (robfig/cron evaluates a schedule
// without CRON_TZ in the zone of the time it is given).
func (s schedule) Next(t time.Time) time.Time { return s.s.Next(t.UTC()) }
func (s schedule) String() string             { return s.spec }

// Run calls fn at every time s fires until ctx ends, never two at once: a
// firing while fn still runs is skipped. It returns once ctx has ended and
// fn, if running, has returned.
func Run(ctx context.Context, s Schedule, fn func(context.Context)) {
	c := robfig.New(
		robfig.WithLocation(time.UTC),
		robfig.WithLogger(robfig.DiscardLogger),
		robfig.WithChain(robfig.SkipIfStillRunning(robfig.DiscardLogger)),
	)
	c.Schedule(s, robfig.FuncJob(func() { fn(ctx) }))
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done()
}
