package localvm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// InitConfig names the VM's own folders and files, as paths of the machine,
// that Init mounts over the VM's view of the file system.
type InitConfig struct {
	// Hostname is the VM's hostname; empty keeps the machine's.
	Hostname string
	// Vcap becomes /var/vcap.
	Vcap string
	// Disk, the persistent disk, becomes /var/vcap/store; empty means the VM
	// has none.
	Disk string
	// Etc holds hosts, resolv.conf and sysctl.d, which become the files and
	// folder of those names in /etc.
	Etc string
	// Tmp becomes /tmp.
	Tmp string
	// Overcommit is a file that becomes /proc/sys/vm/overcommit_memory, so
	// a job that sets it sets it for its VM, not for the machine.
	Overcommit string
}

// Init is pid 1 of a VM: called in new PID, mount and UTS namespaces (and
// the VM's network namespace), it makes the mounts cfg names, writes
// "ready\n" to ready and closes it, then reaps every orphan of the VM until
// it gets SIGTERM or SIGINT. When it returns, the kernel kills every
// process left in the VM.
func Init(cfg InitConfig, ready io.WriteCloser) error {
	if err := setUp(cfg); err != nil {
		fmt.Fprintf(ready, "failed: %v\n", err)
		ready.Close()
		return err
	}
	if _, err := io.WriteString(ready, "ready\n"); err != nil {
		return err
	}
	ready.Close()

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	for {
		reap()
		if s := <-sigs; s == unix.SIGTERM || s == unix.SIGINT {
			return nil
		}
	}
}

// reap collects every exited child, so that no process of the VM stays a
// zombie (a drain script's liveness check counts zombies as gone, a
// supervisor's kill(pid, 0) would not).
func reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

func setUp(cfg InitConfig) error {
	// Nothing mounted here may reach the machine's mount namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private: %w", err)
	}
	// This VM's processes only, for ps, kill and the /proc/PID checks of
	// drain scripts and supervisors.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	binds := [][2]string{{cfg.Vcap, "/var/vcap"}}
	if cfg.Disk != "" {
		binds = append(binds, [2]string{cfg.Disk, "/var/vcap/store"})
	}
	if cfg.Etc != "" {
		for _, name := range []string{"hosts", "resolv.conf", "sysctl.d"} {
			binds = append(binds, [2]string{filepath.Join(cfg.Etc, name), filepath.Join("/etc", name)})
		}
	}
	if cfg.Overcommit != "" {
		binds = append(binds, [2]string{cfg.Overcommit, "/proc/sys/vm/overcommit_memory"})
	}
	// /tmp last: the other sources may lie under the machine's /tmp.
	if cfg.Tmp != "" {
		binds = append(binds, [2]string{cfg.Tmp, "/tmp"})
	}
	for _, b := range binds {
		if err := unix.Mount(b[0], b[1], "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mounting %s on %s: %w", b[0], b[1], err)
		}
	}
	// The machine's named network namespaces (ip netns) are not the VM's;
	// a copy of their mounts here would also keep them alive after
	// `ip netns delete`.
	if err := detachUnder("/run/netns"); err != nil {
		return err
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			return fmt.Errorf("setting the hostname: %w", err)
		}
	}
	return nil
}

// detachUnder lazily unmounts every mount at or under dir, deepest first.
func detachUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmounting %s: %w", p, err)
		}
	}
	return nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
