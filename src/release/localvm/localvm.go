// Package localvm is what runs inside a VM of a local deployment
// (src/release/localbosh) in place of what a BOSH stemcell has there: an
// init that holds the VM's namespaces and reaps orphans (pid 1), a monit that
// reads the jobs' monit files and runs their start and stop programs, and a
// bpm that starts a job's processes as its bpm.yml says.
//
// The VM is a set of namespaces on this machine, not a machine: a PID
// namespace (this package's Init is its pid 1, and killing it ends the VM),
// a mount namespace in which /var/vcap, /var/vcap/store (the persistent
// disk), /tmp, /etc/hosts (BOSH DNS's stand-in), /etc/resolv.conf,
// /etc/sysctl.d and /proc/sys/vm/overcommit_memory are folders and files of
// the VM's own, a network namespace of its own, and a UTS namespace for its
// hostname. Everything else (the root file system, /usr, the kernel) is the
// machine's.
package localvm

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	state, _, err := procStat(pid)
	return err == nil && state != "Z" && state != "X"
}

// procStat returns the state and session id of process pid from
// /proc/PID/stat.
func procStat(pid int) (state string, session int, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	// The command name, in parentheses, may hold spaces: fields start after
	// its last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// state ppid pgrp session ...
	if len(f) < 4 {
		return "", 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	session, err = strconv.Atoi(f[3])
	return f[0], session, err
}

// sessionMembers lists the live processes of session sid, as /proc shows
// them.
func sessionMembers(sid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, s, err := procStat(pid)
		if err == nil && s == sid && state != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

// waitGone waits until pid has exited (or is a zombie) or d has passed, and
// reports whether it has exited.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// readPid reads a pid file; a missing file is pid 0 and no error.
func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return pid, nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a reader never sees half of it.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGQUIT:
		return "QUIT"
	}
	return s.String()
}
