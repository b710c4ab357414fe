// Package cgroup puts each redis-server of an agent in a control group of its
// own, so that the kernel bounds its memory and CPU: whatever a tenant makes
// its server do, the kernel kills that server when it passes its memory
// ceiling, not a neighbour, and a busy server gets no more CPU than any other
// when they compete.
//
// The cgroups of one agent form a subtree below the agent's own cgroup (read
// from /proc/self/cgroup): <agent cgroup>/<name>/<instance>. Both kernel
// interfaces are supported, detected when the Tree is opened: cgroup v2
// (memory.max, memory.swap.max, memory.oom.group, cpu.weight; a child is
// cloned straight into its cgroup) and cgroup v1 (memory.limit_in_bytes,
// memory.memsw.limit_in_bytes where swap accounting is on, cpu.shares; a
// child starts as a shell that waits until it was moved in, then execs the
// program).
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Mode is an agent's `cgroups` setting.
type Mode string

const (
	// Auto uses cgroups when the machine allows and carries on without
	// them otherwise, saying so in the log. The zero Mode means Auto.
	Auto Mode = "auto"
	// Required refuses to start the agent without cgroups.
	Required Mode = "required"
	// Off never uses cgroups.
	Off Mode = "off"
)

// Validate checks m, naming field in the error, and makes the zero Mode Auto.
func (m *Mode) Validate(field string) error {
	switch *m {
	case "":
		*m = Auto
	case Auto, Required, Off:
	default:
		return fmt.Errorf("%s: %q is not one of auto, required, off", field, string(*m))
	}
	return nil
}

// Root is where the kernel's cgroup file systems are mounted, on BOSH
// stemcells as on most Linux machines.
const Root = "/sys/fs/cgroup"

// Tree is the subtree of cgroups holding one agent's redis-servers. A nil
// *Tree stands for no cgroups: its Group is nil, and Remove does nothing.
type Tree struct {
	v2 bool
	// dirs are the subtree's directories: one on v2; the memory then the
	// cpu hierarchy's on v1.
	dirs []string
	// sp keeps the spares (KeepSpares); nil without.
	sp *spares
}

// Open detects the machine's cgroups and prepares the subtree name below
// the agent's own cgroup. With Off it returns nil. Where cgroups cannot be
// used (not mounted, no memory or cpu controller, read-only, as in a
// container that was not delegated its cgroup), Auto logs why and returns
// nil, and Required returns the error. What is used is logged once.
func Open(mode Mode, name string, logger *slog.Logger) (*Tree, error) {
	return open(mode, Root, "/proc/self", name, logger)
}

func open(mode Mode, root, proc, name string, logger *slog.Logger) (*Tree, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if mode == Off {
		logger.Info("cgroups are off: instances are bounded by their maxmemory and redis.conf limits only")
		return nil, nil
	}
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("cgroup: invalid subtree name %q", name)
	}
	t, err := detect(root, proc, name)
	if err == nil {
		err = t.setUp()
	}
	if err != nil {
		if mode == Required {
			return nil, fmt.Errorf("cgroups are required but cannot be used: %w", err)
		}
		logger.Warn("cgroups cannot be used: instances are bounded by their maxmemory and redis.conf limits only", "reason", err.Error())
		return nil, nil
	}
	logger.Info("instances run in cgroups of their own", "version", t.Version(), "subtree", strings.Join(t.dirs, ","))
	return t, nil
}

// Version is 2 for cgroup v2, 1 for v1, 0 for a nil Tree.
func (t *Tree) Version() int {
	switch {
	case t == nil:
		return 0
	case t.v2:
		return 2
	}
	return 1
}

// Dirs are the subtree's directories, for logs and checks; nil for a nil
// Tree.
func (t *Tree) Dirs() []string {
	if t == nil {
		return nil
	}
	return slices.Clone(t.dirs)
}

// detect finds the agent's cgroup in the hierarchies holding the memory and
// cpu controllers. It prefers v2 where it has both controllers.
func detect(root, proc, name string) (*Tree, error) {
	own, err := ownCgroups(filepath.Join(proc, "cgroup"))
	if err != nil {
		return nil, err
	}
	if ctl, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		// Pure v2: the unified hierarchy is mounted at root.
		if !hasAll(strings.Fields(string(ctl)), "memory", "cpu") {
			return nil, fmt.Errorf("cgroup v2 at %s offers controllers %q, not memory and cpu", root, strings.TrimSpace(string(ctl)))
		}
		path, ok := own[""]
		if !ok {
			return nil, errors.New("the agent's cgroup v2 is not in /proc/self/cgroup")
		}
		// An agent that already moved itself into its leaf (setUp) and
		// opens the tree again builds it beside the leaf, not inside.
		if filepath.Base(path) == agentLeaf {
			path = filepath.Dir(path)
		}
		return &Tree{v2: true, dirs: []string{filepath.Join(root, path, name)}}, nil
	}
	var dirs []string
	for _, ctl := range []string{"memory", "cpu"} {
		path, ok := own[ctl]
		if !ok {
			return nil, fmt.Errorf("no cgroup v1 %s controller in /proc/self/cgroup and no cgroup v2 at %s", ctl, root)
		}
		mount := filepath.Join(root, ctl)
		if _, err := os.Stat(filepath.Join(mount, "cgroup.procs")); err != nil {
			return nil, fmt.Errorf("cgroup v1 %s controller is not mounted at %s: %w", ctl, mount, err)
		}
		// Inside a container the mount's root may be the agent's cgroup
		// itself, with /proc/self/cgroup still naming the full path.
		dir := filepath.Join(mount, path)
		if _, err := os.Stat(dir); err != nil {
			dir = mount
		}
		dirs = append(dirs, filepath.Join(dir, name))
	}
	return &Tree{dirs: dirs}, nil
}

// ownCgroups reads /proc/self/cgroup: the path of the process's cgroup per
// controller, "" for v2.
func ownCgroups(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the agent's cgroups: %w", err)
	}
	defer f.Close()
	own := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			own[""] = parts[2]
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			own[ctl] = parts[2]
		}
	}
	return own, sc.Err()
}

func hasAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// setUp makes the subtree's directories. On v2 the memory and cpu
// controllers must be enabled in the agent's cgroup's subtree_control, which
// the kernel allows only when no process sits in it (the no-internal-
// processes rule): the agent, usually alone in its cgroup (a bpm container's),
// first moves itself into a leaf beside the subtree, <agent cgroup>/agent.
// Its children started later are cloned straight into their own cgroups.
func (t *Tree) setUp() error {
	if !t.v2 {
		for _, dir := range t.dirs {
			if err := mkdir(dir); err != nil {
				return err
			}
		}
		return nil
	}
	dir := t.dirs[0]
	parent := filepath.Dir(dir)
	if err := enableControllers(parent); err != nil {
		if !errors.Is(err, errBusy) {
			return err
		}
		leaf := filepath.Join(parent, agentLeaf)
		if err := mkdir(leaf); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(leaf, "cgroup.procs"), "0"); err != nil {
			return fmt.Errorf("moving the agent into %s: %w", leaf, err)
		}
		if err := enableControllers(parent); err != nil {
			return fmt.Errorf("%w (other processes share the agent's cgroup)", err)
		}
	}
	if err := mkdir(dir); err != nil {
		return err
	}
	return enableControllers(dir)
}

// agentLeaf is the v2 cgroup the agent moves itself into, beside its
// servers' subtree.
const agentLeaf = "agent"

// errBusy is the kernel's answer to enabling controllers in a cgroup that
// holds processes.
var errBusy = errors.New("the cgroup holds processes")

// enableControllers enables memory and cpu for the children of the v2
// cgroup dir.
func enableControllers(dir string) error {
	err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+memory +cpu")
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("enabling memory and cpu in %s: %w", dir, errBusy)
	}
	return err
}

// Group returns the cgroup of the redis-server named id (an instance or node
// id); it creates nothing. A nil Tree returns nil.
func (t *Tree) Group(id string) *Group {
	if t == nil {
		return nil
	}
	g := &Group{v2: t.v2, id: id, tree: t}
	for _, d := range t.dirs {
		g.dirs = append(g.dirs, filepath.Join(d, id))
	}
	return g
}

// Remove stops the spares (KeepSpares) and removes the subtree when no
// cgroup is left in it; its groups are removed by their servers. A cgroup
// that still holds a process (a server left running for the agent's next
// start) keeps the subtree. A nil Tree does nothing.
func (t *Tree) Remove() error {
	if t == nil {
		return nil
	}
	t.sp.close()
	var errs []error
	for _, d := range t.dirs {
		if err := rmdir(d); err != nil && !errors.Is(err, errNotEmpty) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Destroy stops the spares, kills every process in the subtree and removes
// all of it, for a test's cleanup. A nil Tree does nothing.
func (t *Tree) Destroy() error {
	if t == nil {
		return nil
	}
	t.sp.close()
	var errs []error
	for _, d := range t.dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() {
				g := t.Group(e.Name())
				errs = append(errs, g.Kill(), g.Remove())
			}
		}
		if err := rmdir(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Name is the subtree name of an agent keeping its files in dataDir:
// "redis" and the path with dashes for slashes, as systemd names units, so
// an operator sees whose servers a subtree holds, and two agents (or two
// tests) on one machine never share one.
func Name(dataDir string) string {
	return "redis" + strings.ReplaceAll(filepath.Clean(dataDir), "/", "-")
}

// DestroyUnder kills the processes of, and removes, every subtree of an
// agent whose data dir is dir or lies below it, in the hierarchies of the
// calling process's cgroups (where the agents it started put theirs): for
// a test harness whose agents were killed before they could shut down.
// Where cgroups cannot be used it does nothing.
func DestroyUnder(dir string) error {
	t, err := detect(Root, "/proc/self", "x")
	if err != nil {
		return nil
	}
	own := Name(dir)
	var errs []error
	for _, d := range t.dirs {
		entries, _ := os.ReadDir(filepath.Dir(d))
		for _, e := range entries {
			if e.IsDir() && (e.Name() == own || strings.HasPrefix(e.Name(), own+"-")) {
				sub := &Tree{v2: t.v2, dirs: []string{filepath.Join(filepath.Dir(d), e.Name())}}
				errs = append(errs, sub.Destroy())
			}
		}
	}
	return errors.Join(errs...)
}
