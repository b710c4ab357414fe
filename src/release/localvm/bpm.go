package localvm

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// The paths bpm uses on a BOSH VM; variables so tests can move them.
var (
	JobsDir  = "/var/vcap/jobs"
	LogDir   = "/var/vcap/sys/log"
	RunDir   = "/var/vcap/sys/run/bpm"
	DataDir  = "/var/vcap/data"
	StoreDir = "/var/vcap/store"
)

// StopTimeout is how long bpm stop waits for a process after its shutdown
// signal before it kills it, as bpm does.
const StopTimeout = 20 * time.Second

// BPMConfig is a job's config/bpm.yml.
type BPMConfig struct {
	Processes []BPMProcess `yaml:"processes"`
}

// BPMProcess is one process of a bpm.yml, with the fields bpm knows.
type BPMProcess struct {
	Name       string            `yaml:"name"`
	Executable string            `yaml:"executable"`
	Args       []string          `yaml:"args"`
	Env        map[string]string `yaml:"env"`
	// Workdir is the process's working directory; empty means the job's
	// folder, /var/vcap/jobs/JOB.
	Workdir        string `yaml:"workdir"`
	PersistentDisk bool   `yaml:"persistent_disk"`
	EphemeralDisk  bool   `yaml:"ephemeral_disk"`
	// ShutdownSignal is TERM (the default, when empty) or INT.
	ShutdownSignal string `yaml:"shutdown_signal"`
	Limits         struct {
		Memory    string `yaml:"memory"`
		OpenFiles uint64 `yaml:"open_files"`
		Processes int    `yaml:"processes"`
	} `yaml:"limits"`
	Hooks struct {
		PreStart string `yaml:"pre_start"`
	} `yaml:"hooks"`
	Capabilities      []string `yaml:"capabilities"`
	AdditionalVolumes []struct {
		Path     string `yaml:"path"`
		Writable bool   `yaml:"writable"`
	} `yaml:"additional_volumes"`
	Unsafe struct {
		Privileged          bool `yaml:"privileged"`
		UnrestrictedVolumes []struct {
			Path string `yaml:"path"`
		} `yaml:"unrestricted_volumes"`
	} `yaml:"unsafe"`
}

// LoadBPM reads the bpm.yml of job.
func LoadBPM(job string) (*BPMConfig, error) {
	path := filepath.Join(JobsDir, job, "config", "bpm.yml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c BPMConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i, p := range c.Processes {
		if p.Name == "" || p.Executable == "" {
			return nil, fmt.Errorf("%s: processes[%d] needs a name and an executable", path, i)
		}
	}
	return &c, nil
}

// processes returns the job's processes, or only the one named proc.
func (c *BPMConfig) processes(job, proc string) ([]BPMProcess, error) {
	if proc == "" {
		return c.Processes, nil
	}
	for _, p := range c.Processes {
		if p.Name == proc {
			return []BPMProcess{p}, nil
		}
	}
	return nil, fmt.Errorf("job %s has no process %s", job, proc)
}

func pidFile(job, proc string) string { return filepath.Join(RunDir, job, proc+".pid") }

// Notes says what of a process's bpm.yml this stand-in does not do, one
// sentence each.
func (p BPMProcess) Notes() []string {
	var out []string
	if p.Limits.Memory != "" {
		out = append(out, fmt.Sprintf("limits.memory %s is not applied (no cgroup here)", p.Limits.Memory))
	}
	if p.Limits.Processes > 0 {
		out = append(out, fmt.Sprintf("limits.processes %d is not applied (no cgroup here)", p.Limits.Processes))
	}
	if len(p.Capabilities) > 0 {
		out = append(out, fmt.Sprintf("capabilities %v: the process runs as root with all of them", p.Capabilities))
	}
	if len(p.AdditionalVolumes) > 0 || len(p.Unsafe.UnrestrictedVolumes) > 0 {
		out = append(out, "additional volumes need no mounts: the process sees the whole VM")
	}
	return out
}

// BPMStart starts the job's processes (or the one named proc) that are not
// running, each as bpm would: in a session of its own (bpm: a container),
// with bpm's environment and the bpm.yml's, its open-files limit, stdout
// and stderr appended to /var/vcap/sys/log/JOB/PROC.std{out,err}.log, and
// its pid in /var/vcap/sys/run/bpm/JOB/PROC.pid. It does not wait for them;
// the VM's init adopts them. What bpm would do and this cannot is said on
// notes, once per process.
func BPMStart(job, proc string, notes io.Writer) error {
	cfg, err := LoadBPM(job)
	if err != nil {
		return err
	}
	procs, err := cfg.processes(job, proc)
	if err != nil {
		return err
	}
	for _, p := range procs {
		if err := startProcess(job, p, notes); err != nil {
			return fmt.Errorf("starting %s/%s: %w", job, p.Name, err)
		}
	}
	return nil
}

func startProcess(job string, p BPMProcess, notes io.Writer) error {
	pidPath := pidFile(job, p.Name)
	if pid, err := readPid(pidPath); err == nil && alive(pid) {
		return nil
	}
	for _, n := range p.Notes() {
		fmt.Fprintf(notes, "bpm stand-in: %s/%s: %s\n", job, p.Name, n)
	}
	data := filepath.Join(DataDir, job)
	dirs := []string{filepath.Join(LogDir, job), filepath.Dir(pidPath), filepath.Join(data, "tmp")}
	if p.PersistentDisk {
		dirs = append(dirs, filepath.Join(StoreDir, job))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + data,
		"TMPDIR=" + filepath.Join(data, "tmp"),
		"LANG=en_US.UTF-8",
	}
	for _, k := range slices.Sorted(maps.Keys(p.Env)) {
		env = append(env, k+"="+p.Env[k])
	}
	workdir := p.Workdir
	if workdir == "" {
		workdir = filepath.Join(JobsDir, job)
	}
	if p.Hooks.PreStart != "" {
		hook := exec.Command(p.Hooks.PreStart)
		hook.Env, hook.Dir = env, workdir
		hook.WaitDelay = time.Second
		if out, err := hook.CombinedOutput(); err != nil {
			return fmt.Errorf("pre_start hook %s: %w\n%s", p.Hooks.PreStart, err, out)
		}
	}
	if p.Limits.OpenFiles > 0 {
		// The child inherits the limit (os/exec then no longer restores the
		// soft limit Go started with).
		lim := syscall.Rlimit{Cur: p.Limits.OpenFiles, Max: p.Limits.OpenFiles}
		err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		if errors.Is(err, syscall.EPERM) {
			// Raising the hard limit needs CAP_SYS_RESOURCE, which a
			// container running this may lack: the most there is, said so.
			var cur syscall.Rlimit
			if err = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err == nil {
				fmt.Fprintf(notes, "bpm stand-in: %s/%s: limits.open_files %d is above this machine's hard limit (no CAP_SYS_RESOURCE here): %d applied\n",
					job, p.Name, p.Limits.OpenFiles, cur.Max)
				lim = syscall.Rlimit{Cur: cur.Max, Max: cur.Max}
				err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
			}
		}
		if err != nil {
			return fmt.Errorf("limits.open_files %d: %w", p.Limits.OpenFiles, err)
		}
	}
	logBase := filepath.Join(LogDir, job, p.Name)
	stdout, err := os.OpenFile(logBase+".stdout.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(logBase+".stderr.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer stderr.Close()
	cmd := exec.Command(p.Executable, p.Args...)
	cmd.Env, cmd.Dir = env, workdir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	// Not waited for: this command exits, and the VM's init reaps it.
	_ = cmd.Process.Release()
	return writeFileAtomic(pidPath, []byte(fmt.Sprintf("%d\n", pid)), 0o644)
}

// BPMPid returns the pid of the job's process proc (empty: the process
// named for the job), or an error if it is not running.
func BPMPid(job, proc string) (int, error) {
	if proc == "" {
		proc = job
	}
	pid, err := readPid(pidFile(job, proc))
	if err != nil {
		return 0, err
	}
	if !alive(pid) {
		return 0, fmt.Errorf("job %s process %s is not running", job, proc)
	}
	return pid, nil
}

// BPMStop stops the job's processes (or the one named proc) as bpm does:
// the shutdown signal, up to StopTimeout for the process to exit, then
// SIGKILL; then, as when a container ends, every process left in its
// session is killed.
func BPMStop(job, proc string) error {
	cfg, err := LoadBPM(job)
	if err != nil {
		return err
	}
	procs, err := cfg.processes(job, proc)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range procs {
		if err := stopProcess(job, p); err != nil {
			errs = append(errs, fmt.Errorf("stopping %s/%s: %w", job, p.Name, err))
		}
	}
	return errors.Join(errs...)
}

func stopProcess(job string, p BPMProcess) error {
	pidPath := pidFile(job, p.Name)
	pid, err := readPid(pidPath)
	if err != nil {
		return err
	}
	if pid > 0 {
		sig := syscall.SIGTERM
		if strings.EqualFold(p.ShutdownSignal, "INT") {
			sig = syscall.SIGINT
		}
		if alive(pid) {
			_ = syscall.Kill(pid, sig)
			if !waitGone(pid, StopTimeout) {
				fmt.Fprintf(os.Stderr, "bpm stand-in: %s/%s did not exit %s after SIG%s; killing it\n", job, p.Name, StopTimeout, signalName(sig))
				_ = syscall.Kill(pid, syscall.SIGKILL)
				waitGone(pid, 5*time.Second)
			}
		}
		// The session is the container: what the process left behind goes
		// with it.
		for _, member := range sessionMembers(pid) {
			_ = syscall.Kill(member, syscall.SIGKILL)
		}
	}
	if err := os.Remove(pidPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
