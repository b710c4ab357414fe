// Package cron reads the schedules of the agents' scheduled backups: the
// five fields of a crontab line ("minute hour day-of-month month
// day-of-week", with *, lists, ranges and steps, evaluated in UTC), the
// shorthands @hourly, @daily (@midnight), @weekly, @monthly and @yearly
// (@annually), and "@every DURATION" (Go syntax, e.g. "@every 6h").
//
// As in Vixie cron, when both day fields are restricted a day matches if
// either does.
package cron

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule says when something runs next.
type Schedule interface {
	// Next returns the first time after t at which the schedule fires.
	Next(t time.Time) time.Time
	// String returns the schedule as it was written.
	String() string
}

// Parse reads a schedule.
func Parse(spec string) (Schedule, error) {
	spec = strings.TrimSpace(spec)
	if rest, ok := strings.CutPrefix(spec, "@every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d < time.Second {
			return nil, fmt.Errorf("schedule %q: @every needs a duration of a second or more, such as 6h", spec)
		}
		return every{d: d, spec: spec}, nil
	}
	line := spec
	switch spec {
	case "@yearly", "@annually":
		line = "0 0 1 1 *"
	case "@monthly":
		line = "0 0 1 * *"
	case "@weekly":
		line = "0 0 * * 0"
	case "@daily", "@midnight":
		line = "0 0 * * *"
	case "@hourly":
		line = "0 * * * *"
	}
	fields := strings.Fields(line)
	if len(fields) != 5 {
		return nil, fmt.Errorf("schedule %q: want five fields (minute hour day-of-month month day-of-week) or @daily, @hourly, @weekly, @monthly, @yearly, @every DURATION", spec)
	}
	s := &cronSchedule{spec: spec}
	var err error
	specs := []struct {
		dst      *uint64
		min, max int
		name     string
	}{
		{&s.minute, 0, 59, "minute"},
		{&s.hour, 0, 23, "hour"},
		{&s.dom, 1, 31, "day of month"},
		{&s.month, 1, 12, "month"},
		{&s.dow, 0, 7, "day of week"},
	}
	for i, f := range specs {
		if *f.dst, err = parseField(fields[i], f.min, f.max); err != nil {
			return nil, fmt.Errorf("schedule %q: %s: %w", spec, f.name, err)
		}
	}
	if s.dow&(1<<7) != 0 { // 7 is Sunday too
		s.dow |= 1
	}
	s.domStar, s.dowStar = fields[2] == "*", fields[4] == "*"
	return s, nil
}

// parseField reads one field into a bit set of the values it allows.
func parseField(field string, lo, hi int) (uint64, error) {
	var bits uint64
	for _, part := range strings.Split(field, ",") {
		rangePart, stepPart, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepPart)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("bad step %q", stepPart)
			}
			step = n
		}
		from, to := lo, hi
		switch {
		case rangePart == "*":
		case strings.Contains(rangePart, "-"):
			a, b, _ := strings.Cut(rangePart, "-")
			var err error
			if from, err = strconv.Atoi(a); err != nil {
				return 0, fmt.Errorf("bad value %q", a)
			}
			if to, err = strconv.Atoi(b); err != nil {
				return 0, fmt.Errorf("bad value %q", b)
			}
		default:
			n, err := strconv.Atoi(rangePart)
			if err != nil {
				return 0, fmt.Errorf("bad value %q", rangePart)
			}
			from, to = n, n
			if hasStep {
				to = hi
			}
		}
		if from < lo || to > hi || from > to {
			return 0, fmt.Errorf("%q is outside %d-%d", part, lo, hi)
		}
		for v := from; v <= to; v += step {
			bits |= 1 << v
		}
	}
	return bits, nil
}

type cronSchedule struct {
	spec                          string
	minute, hour, dom, month, dow uint64
	domStar, dowStar              bool
}

func (s *cronSchedule) String() string { return s.spec }

// Next searches forward field by field, in UTC; five years without a match
// (a 31st of February) ends the search with the zero time.
func (s *cronSchedule) Next(t time.Time) time.Time {
	t = t.UTC().Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(5, 0, 0)
	for t.Before(limit) {
		if s.month&(1<<int(t.Month())) == 0 {
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if s.hour&(1<<t.Hour()) == 0 {
			t = t.Truncate(time.Hour).Add(time.Hour)
			continue
		}
		if s.minute&(1<<t.Minute()) == 0 {
			t = t.Add(time.Minute)
			continue
		}
		return t
	}
	return time.Time{}
}

func (s *cronSchedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<t.Day()) != 0
	dow := s.dow&(1<<int(t.Weekday())) != 0
	switch {
	case s.domStar && s.dowStar:
		return true
	case s.domStar:
		return dow
	case s.dowStar:
		return dom
	default:
		return dom || dow
	}
}

type every struct {
	d    time.Duration
	spec string
}

func (e every) Next(t time.Time) time.Time { return t.Add(e.d) }
func (e every) String() string             { return e.spec }

// Run calls fn at every time s fires until ctx ends, never two at once: a
// run that overlaps the next firing time skips it.
func Run(ctx context.Context, s Schedule, fn func(context.Context)) {
	for {
		next := s.Next(time.Now())
		if next.IsZero() {
			return
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		fn(ctx)
	}
}
