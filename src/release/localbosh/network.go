package localbosh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The deployment's network: a bridge in a network namespace of its own (the
// "LAN"), and a veth pair from it into each VM's namespace and into the
// apps' namespace. Nothing is added to the machine's own network namespace,
// and no namespace has a route beyond Subnet: nothing here can reach, or be
// reached from, any other address.
const (
	// Subnet is the deployment network's /24.
	Subnet = "10.244.0"
	// AppsIP is the address of the apps' namespace, from which clients (the
	// tests, `ip netns exec NAME-apps ...`) reach the deployment as Cloud
	// Foundry apps would.
	AppsIP = Subnet + ".2"
	// firstVMHost is the host part of the first VM address.
	firstVMHost = 10
)

const netnsDir = "/run/netns"

func (d *Director) lanNS() string  { return d.opts.Name + "-lan" }
func (d *Director) appsNS() string { return d.opts.Name + "-apps" }

// AppsNamespace is the name of the apps' network namespace (ip netns).
func (d *Director) AppsNamespace() string { return d.appsNS() }

// ipCmd runs ip(8) with args and returns its error with its output.
func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, name))
	return err == nil
}

// ensureNetwork makes the LAN namespace with its bridge, and the apps'
// namespace on it, unless they exist.
func (d *Director) ensureNetwork(ctx context.Context) error {
	lan := d.lanNS()
	if !netnsExists(lan) {
		for _, args := range [][]string{
			{"netns", "add", lan},
			{"-n", lan, "link", "set", "lo", "up"},
			{"-n", lan, "link", "add", "br0", "type", "bridge"},
			{"-n", lan, "link", "set", "br0", "up"},
		} {
			if err := ipCmd(ctx, args...); err != nil {
				return err
			}
		}
	}
	if !netnsExists(d.appsNS()) {
		if err := d.plug(ctx, d.appsNS(), "apps", AppsIP); err != nil {
			return err
		}
	}
	return nil
}

// plug makes network namespace ns and connects it to the LAN's bridge
// through a veth pair (eth0 in ns, port in the LAN), with address ip.
func (d *Director) plug(ctx context.Context, ns, port, ip string) error {
	lan := d.lanNS()
	// A port left from a VM that was not deleted cleanly.
	_ = ipCmd(ctx, "-n", lan, "link", "del", port)
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", lan, "link", "set", port, "master", "br0", "up"},
		{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	} {
		if err := ipCmd(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// deleteNetns deletes network namespace ns, if it exists, after killing
// every process in it but this one.
func deleteNetns(ctx context.Context, ns string) error {
	if !netnsExists(ns) {
		return nil
	}
	if err := killNetnsProcesses(ns, 10*time.Second); err != nil {
		return err
	}
	return ipCmd(ctx, "netns", "del", ns)
}

// netnsPids lists the processes whose network namespace is the named one,
// as `ip netns pids` does.
func netnsPids(ns string) ([]int, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, ns), &st); err != nil {
		return nil, err
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && link == want {
			out = append(out, pid)
		}
	}
	return out, nil
}

// killNetnsProcesses sends SIGKILL to every process in network namespace ns
// but this one and waits until they are gone.
func killNetnsProcesses(ns string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		pids, err := netnsPids(ns)
		if err != nil {
			return err
		}
		var left []int
		for _, pid := range pids {
			if pid == os.Getpid() || !processAlive(pid) {
				continue
			}
			left = append(left, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of network namespace %s do not die", left, ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// Dial connects to addr (an IP address and port of the deployment
// network) from the apps' namespace, as an app would. It never resolves
// names: give it IP addresses.
func (d *Director) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	// A BOSH DNS name of the deployment's own (credentials name VMs so when
	// their certificates do) resolves as the VMs' /etc/hosts has it.
	if host, port, err := net.SplitHostPort(addr); err == nil && net.ParseIP(host) == nil && d.st != nil {
		if ip := d.resolve(host); ip != "" {
			addr = net.JoinHostPort(ip, port)
		}
	}
	return dialIn(ctx, filepath.Join(netnsDir, d.appsNS()), network, addr)
}

// resolve returns the address the deployment's hosts table
// (hostsFile) gives name, or "".
func (d *Director) resolve(name string) string {
	for _, in := range d.st.Instances {
		if slices.Contains(d.hostNames(in), name) {
			return in.IP
		}
	}
	return ""
}

// dialIn dials from network namespace nsPath: the socket is made by a
// thread that has entered it, and keeps its namespace after the thread
// returns to its own.
func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if net.ParseIP(host) == nil {
		return nil, fmt.Errorf("dialing %s: an IP address is needed (names would be resolved outside the namespace)", addr)
	}
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", nsPath, err)
	}
	defer unix.Close(target)
	runtime.LockOSThread()
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer unix.Close(own)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("entering %s: %w", nsPath, err)
	}
	conn, dialErr := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err := unix.Setns(own, unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so no other goroutine runs in the wrong
		// namespace; it ends with this goroutine.
		if conn != nil {
			conn.Close()
		}
		return nil, errors.Join(dialErr, fmt.Errorf("returning from %s: %w", nsPath, err))
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}
