package localbosh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// vmName is an instance's VM name: its network namespace's name and the
// name of its folder under StateDir/vms.
func (d *Director) vmName(in *instanceState) string {
	return fmt.Sprintf("%s-%s-%d", d.opts.Name, in.Group, in.Index)
}

func (d *Director) vmDir(in *instanceState) string {
	return filepath.Join(d.opts.StateDir, "vms", d.vmName(in))
}

func (d *Director) diskDir(in *instanceState) string {
	return filepath.Join(d.opts.StateDir, "disks", d.vmName(in))
}

// port is the name of the VM's veth port on the LAN bridge (at most 15
// characters): the host part of its address.
func port(in *instanceState) string {
	return "vm" + in.IP[strings.LastIndexByte(in.IP, '.')+1:]
}

// initPid returns the pid (in this machine's PID namespace) of the VM's
// init, or 0 when the VM is not running: no init, or a pid now used by a
// process outside the VM's network namespace.
func (d *Director) initPid(in *instanceState) int {
	data, err := os.ReadFile(filepath.Join(d.vmDir(in), "init.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || !processAlive(pid) {
		return 0
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, d.vmName(in)), &st); err != nil {
		return 0
	}
	if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil || link != fmt.Sprintf("net:[%d]", st.Ino) {
		return 0
	}
	return pid
}

// hasDisk reports whether the instance's group has a persistent disk.
func (d *Director) hasDisk(in *instanceState) bool {
	g, ok := d.group(in.Group)
	return ok && (g.PersistentDiskType != "" || g.PersistentDisk > 0)
}

// createVM makes the instance's VM: its folders, its network namespace on
// the LAN, and its init (localvm init) in new PID, mount and UTS
// namespaces, which mounts the VM's own folders over /var/vcap and the
// rest. It returns once the init is ready.
func (d *Director) createVM(ctx context.Context, in *instanceState, localvm string) error {
	dir := d.vmDir(in)
	vcap := filepath.Join(dir, "vcap")
	// A new VM starts with an empty /var/vcap/sys/run, as a BOSH VM's
	// (a tmpfs) does. A VM recreated on its folders (after KillVM) would
	// otherwise find its processes' old pid files, whose pids its new PID
	// namespace hands out again: monit's stand-in took whatever process
	// got such a pid for the job and skipped starting it.
	if err := os.RemoveAll(filepath.Join(vcap, "sys/run")); err != nil {
		return err
	}
	for _, sub := range []string{"bosh/bin", "data/jobs", "data/packages", "jobs", "packages", "sys/log", "sys/run", "store"} {
		if err := os.MkdirAll(filepath.Join(vcap, sub), 0o755); err != nil {
			return err
		}
	}
	for _, sub := range []string{"etc/sysctl.d", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	etc := filepath.Join(dir, "etc")
	if err := os.WriteFile(filepath.Join(etc, "hosts"), d.hostsFile(), 0o644); err != nil {
		return err
	}
	// No name server: the VM has no route to one. Names are in /etc/hosts.
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("# A local deployment's VM: BOSH DNS names are in /etc/hosts, and no name server is reachable.\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		return err
	}
	overcommit, err := os.ReadFile("/proc/sys/vm/overcommit_memory")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "overcommit_memory"), overcommit, 0o644); err != nil {
		return err
	}
	monit := "#!/bin/sh\n# monit's stand-in in a local deployment (src/release/localvm).\nexec /var/vcap/packages/bpm/bin/localvm monit \"$@\"\n"
	if err := os.WriteFile(filepath.Join(vcap, "bosh/bin/monit"), []byte(monit), 0o755); err != nil {
		return err
	}
	disk := ""
	if d.hasDisk(in) {
		disk = d.diskDir(in)
		if err := os.MkdirAll(disk, 0o755); err != nil {
			return err
		}
	}
	// The mount point of the VM's /var/vcap must exist in the machine's
	// file system: an empty folder, left in place.
	if err := os.MkdirAll("/var/vcap", 0o755); err != nil {
		return err
	}

	name := d.vmName(in)
	if err := deleteNetns(ctx, name); err != nil {
		return err
	}
	if err := d.plug(ctx, name, port(in), in.IP); err != nil {
		return err
	}

	logFile, err := os.OpenFile(filepath.Join(dir, "init.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	args := []string{"--net=" + filepath.Join(netnsDir, name), "--", localvm, "init",
		"--hostname", in.ID, "--vcap", vcap, "--etc", etc, "--tmp", filepath.Join(dir, "tmp"),
		"--overcommit", filepath.Join(dir, "overcommit_memory")}
	if disk != "" {
		args = append(args, "--disk", disk)
	}
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// nsenter is pid 1 of the new PID namespace, enters the VM's network
		// namespace and execs localvm init, which stays pid 1.
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
		Setsid:     true,
	}
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return fmt.Errorf("starting the init of VM %s: %w", name, err)
	}
	readyW.Close()
	// Reaped when it ends (a VM deleted while this program runs).
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(filepath.Join(dir, "init.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(readyR).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s != "ready" {
			log, _ := os.ReadFile(filepath.Join(dir, "init.log"))
			return fmt.Errorf("the init of VM %s did not start (%s): %s", name, s, bytes.TrimSpace(log))
		}
	case <-time.After(15 * time.Second):
		return fmt.Errorf("the init of VM %s is not ready after 15 s", name)
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// vmCommand returns a command that runs name with args inside the VM, as
// root, with env added to a minimal environment.
func (d *Director) vmCommand(ctx context.Context, pid int, env []string, name string, args ...string) *exec.Cmd {
	a := append([]string{"--target", strconv.Itoa(pid), "--mount", "--net", "--pid", "--uts", "--wd=/", "--", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", a...)
	cmd.Env = append([]string{"PATH=/var/vcap/bosh/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}, env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Exec runs a command inside the VM of instance GROUP/INDEX and returns its
// combined output.
func (d *Director) Exec(ctx context.Context, group string, index int, name string, args ...string) ([]byte, error) {
	in, err := d.recorded(group, index)
	if err != nil {
		return nil, err
	}
	pid := d.initPid(in)
	if pid == 0 {
		return nil, fmt.Errorf("VM %s is not running", d.vmName(in))
	}
	return d.vmCommand(ctx, pid, nil, name, args...).CombinedOutput()
}

// recorded returns the recorded instance GROUP/INDEX, loading the state
// when it is not loaded yet.
func (d *Director) recorded(group string, index int) (*instanceState, error) {
	if d.st == nil {
		if err := d.loadState(); err != nil {
			return nil, err
		}
	}
	if in := d.find(group, index); in != nil {
		return in, nil
	}
	return nil, fmt.Errorf("no instance %s/%d", group, index)
}

// IP is the deployment network's address of instance index of group, as
// deployed.
func (d *Director) IP(group string, index int) (string, error) {
	if d.st == nil {
		if err := d.loadState(); err != nil {
			return "", err
		}
	}
	in := d.find(group, index)
	if in == nil {
		return "", fmt.Errorf("instance %s/%d is not deployed", group, index)
	}
	return in.IP, nil
}

func (d *Director) find(group string, index int) *instanceState {
	if d.st == nil {
		return nil
	}
	for _, in := range d.st.Instances {
		if in.Group == group && in.Index == index {
			return in
		}
	}
	return nil
}

// KillVM is the loss of a VM as an IaaS failure causes it: every process of
// the VM gone at once (kill -9) and its network namespace deleted, so its
// address answers nothing. Its disk stays, and the next Deploy creates the
// VM again on it, as BOSH's resurrector does.
func (d *Director) KillVM(ctx context.Context, group string, index int) error {
	in := d.find(group, index)
	if in == nil {
		return fmt.Errorf("no VM %s/%d", group, index)
	}
	return d.killVM(ctx, in)
}

// killVM kills every process of the VM (its init first: the kernel then
// kills the rest of its PID namespace) and deletes its network namespace.
// Its folders and disk stay.
func (d *Director) killVM(ctx context.Context, in *instanceState) error {
	if pid := d.initPid(in); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	name := d.vmName(in)
	if err := deleteNetns(ctx, name); err != nil {
		return err
	}
	_ = ipCmd(ctx, "-n", d.lanNS(), "link", "del", port(in))
	if err := os.Remove(filepath.Join(d.vmDir(in), "init.pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func flock(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }

// readlinkIn reads the link at rel in folder dir.
func readlinkIn(dir, rel string) (string, error) { return os.Readlink(filepath.Join(dir, rel)) }

// Process is a process of a VM as this machine sees it.
type Process struct {
	// Pid is its pid in this machine's PID namespace: /proc/PID/exe is
	// its executable.
	Pid     int
	Cmdline []string
}

// Processes lists the processes of the VM of instance GROUP/INDEX.
func (d *Director) Processes(group string, index int) ([]Process, error) {
	in, err := d.recorded(group, index)
	if err != nil {
		return nil, err
	}
	pids, err := netnsPids(d.vmName(in))
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !processAlive(pid) {
			continue
		}
		out = append(out, Process{Pid: pid, Cmdline: strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")})
	}
	return out, nil
}

// VMDir is the folder of the VM of instance GROUP/INDEX in this machine's
// file system: vcap/ is its /var/vcap.
func (d *Director) VMDir(group string, index int) (string, error) {
	in, err := d.recorded(group, index)
	if err != nil {
		return "", err
	}
	return d.vmDir(in), nil
}
