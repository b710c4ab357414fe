package localvm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// MonitProcess is a "check process" entry of a job's monit file.
type MonitProcess struct {
	Job, Name, PidFile, Start, Stop string
}

// MonitProcesses reads the monit file of every job in JobsDir, in job name
// order, as the BOSH agent hands them to monit.
func MonitProcesses() ([]MonitProcess, error) {
	entries, err := os.ReadDir(JobsDir)
	if err != nil {
		return nil, err
	}
	var out []MonitProcess
	for _, e := range entries {
		f, err := os.Open(filepath.Join(JobsDir, e.Name(), "monit"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ps, err := parseMonit(e.Name(), f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("jobs/%s/monit: %w", e.Name(), err)
		}
		out = append(out, ps...)
	}
	return out, nil
}

// parseMonit reads the "check process" entries of a monit file: their pid
// file and start and stop programs. Other checks are not this stand-in's.
func parseMonit(job string, r io.Reader) ([]MonitProcess, error) {
	var out []MonitProcess
	var cur *MonitProcess
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "check" && f[1] == "process":
			out = append(out, MonitProcess{Job: job, Name: f[2]})
			cur = &out[len(out)-1]
		case f[0] == "check":
			cur = nil
		case cur == nil:
		case len(f) >= 3 && f[0] == "with" && f[1] == "pidfile":
			cur.PidFile = f[2]
		case len(f) >= 3 && f[0] == "start" && f[1] == "program":
			cur.Start = quoted(line)
		case len(f) >= 3 && f[0] == "stop" && f[1] == "program":
			cur.Stop = quoted(line)
		}
	}
	for _, p := range out {
		if p.PidFile == "" || p.Start == "" {
			return nil, fmt.Errorf("check process %s needs a pidfile and a start program", p.Name)
		}
	}
	return out, sc.Err()
}

// quoted returns the first double-quoted string of line.
func quoted(line string) string {
	i := strings.IndexByte(line, '"')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(line[i+1:], '"')
	if j < 0 {
		return ""
	}
	return line[i+1 : i+1+j]
}

// Running reports whether the process's pid file names a live process.
func (p MonitProcess) Running() bool {
	pid, err := readPid(p.PidFile)
	return err == nil && alive(pid)
}

// MonitStart runs the start program of every process that is not running,
// then watches them all for watch: each must be running throughout. A
// process that is not names its job and the tail of its job's logs. The
// programs' own output goes to out.
func MonitStart(ctx context.Context, watch time.Duration, out io.Writer) error {
	procs, err := MonitProcesses()
	if err != nil {
		return err
	}
	for _, p := range procs {
		if p.Running() {
			continue
		}
		if err := runProgram(ctx, p.Start, out); err != nil {
			return fmt.Errorf("%s: start program %q: %w", p.Name, p.Start, err)
		}
	}
	deadline := time.Now().Add(watch)
	for {
		for _, p := range procs {
			if !p.Running() {
				return fmt.Errorf("%s is not running%s", p.Name, logTails(p.Job))
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// MonitStop runs the stop program of every process and waits until none
// is running.
func MonitStop(ctx context.Context, out io.Writer) error {
	procs, err := MonitProcesses()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range slices.Backward(procs) {
		if p.Stop == "" {
			continue
		}
		if err := runProgram(ctx, p.Stop, out); err != nil {
			errs = append(errs, fmt.Errorf("%s: stop program %q: %w", p.Name, p.Stop, err))
		}
	}
	for _, p := range procs {
		for p.Running() {
			select {
			case <-ctx.Done():
				return errors.Join(append(errs, fmt.Errorf("%s still runs: %w", p.Name, ctx.Err()))...)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return errors.Join(errs...)
}

// MonitSummary writes one line per process, as `monit summary` does.
func MonitSummary(out io.Writer) error {
	procs, err := MonitProcesses()
	if err != nil {
		return err
	}
	for _, p := range procs {
		status := "not monitored"
		if p.Running() {
			status = "running"
		}
		fmt.Fprintf(out, "Process '%s'%s%s\n", p.Name, strings.Repeat(" ", max(1, 30-len(p.Name))), status)
	}
	return nil
}

// runProgram runs a monit program line as monit does, with a bounded time.
func runProgram(ctx context.Context, line string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", line)
	cmd.Stdout, cmd.Stderr = out, out
	// A program that leaves a process behind holding its output (rather
	// than a log file, as bpm gives its processes) must not hold monit.
	cmd.WaitDelay = time.Second
	cmd.Env = []string{"PATH=/var/vcap/bosh/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	if err := cmd.Run(); err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		return err
	}
	return nil
}

// logTails returns the last lines of every log file of job, for a process
// that failed to stay up.
func logTails(job string) string {
	files, _ := filepath.Glob(filepath.Join(LogDir, job, "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 10 {
			lines = lines[len(lines)-10:]
		}
		fmt.Fprintf(&b, "\n  %s:\n    %s", f, strings.Join(lines, "\n    "))
	}
	return b.String()
}
