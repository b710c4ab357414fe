package localbosh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/testkit/miniotest"
)

// The deployment's stand-in of S3 (Options.S3): a MinIO server in a network
// namespace of its own, NAME-s3, on the deployment's bridge, where the
// agents' backups and the redis-backup errand upload to and the broker's
// restores read from.
const (
	// S3IP is MinIO's address: below the first VM address, so no instance
	// can be given it, and not AppsIP.
	S3IP = Subnet + ".3"
	// S3Port is the port of its S3 API.
	S3Port = 9000
	// S3Bucket is the bucket the backups go to, created at every deploy.
	S3Bucket = "redis-backups"
	// S3Region is the region the deployment is told.
	S3Region = "us-east-1"
	// BackupsOpsFile is the ops file, in the release, that turns backups to
	// S3 on (and adds the redis-backup errand).
	BackupsOpsFile = "manifests/operations/backups-s3.yml"
	// s3Console is MinIO's console port (the browser is off).
	s3Console = 9001
)

// S3Endpoint is the URL of the stand-in's S3 API.
var S3Endpoint = "http://" + net.JoinHostPort(S3IP, strconv.Itoa(S3Port))

// ErrNoS3 is returned by S3 when the deployment's MinIO is not running.
var ErrNoS3 = errors.New("the deployment's S3 stand-in (MinIO) is not running")

// s3Vars are the variables backups-s3.yml asks for.
var s3Vars = []string{"backup_s3_endpoint", "backup_s3_region", "backup_s3_bucket", "backup_s3_access_key_id", "backup_s3_secret_access_key"}

func (d *Director) s3NS() string      { return d.opts.Name + "-s3" }
func (d *Director) s3Dir() string     { return filepath.Join(d.opts.StateDir, "s3") }
func (d *Director) s3DataDir() string { return filepath.Join(d.s3Dir(), "data") }

// S3CredentialsFile is where the stand-in's access key id and secret are
// kept (mode 0600), across stops and redeploys, until Down.
func (d *Director) S3CredentialsFile() string { return filepath.Join(d.s3Dir(), "credentials.json") }

// s3VarsFile holds the backup_s3_* variables given to bosh interpolate:
// a file (0600), so that the secret is on no command line.
func (d *Director) s3VarsFile() string { return filepath.Join(d.s3Dir(), "vars.yml") }

// s3Plan is what Options.S3 means for one deploy.
type s3Plan struct {
	// opsFile is the ops file to add to the user's, or "" when they
	// include it already (or S3 is off).
	opsFile string
	// minio is set when the stand-in runs and gives the variables: the
	// user gave no backup_s3_endpoint.
	minio bool
}

// planS3 decides, from the options alone, what Options.S3 adds to a
// deploy: backups-s3.yml unless the user's ops files include it (the same
// file, or one of the same name), and MinIO with its variables unless the
// user's variables name an endpoint of their own, in which case they must
// give all of backups-s3.yml's variables themselves. Giving some of them
// without an endpoint is refused: they would not be used.
func planS3(opts Options) (s3Plan, error) {
	if !opts.S3 {
		return s3Plan{}, nil
	}
	var p s3Plan
	ops := filepath.Join(opts.ReleaseDir, BackupsOpsFile)
	p.opsFile = ops
	for _, o := range opts.OpsFiles {
		if sameFile(o, ops) || filepath.Base(o) == filepath.Base(ops) {
			p.opsFile = ""
		}
	}
	given, err := givenVars(opts.Vars, opts.VarsFiles)
	if err != nil {
		return s3Plan{}, err
	}
	if given["backup_s3_endpoint"] {
		return p, nil
	}
	var partial []string
	for _, v := range s3Vars {
		if given[v] {
			partial = append(partial, v)
		}
	}
	if len(partial) > 0 {
		return s3Plan{}, fmt.Errorf("%s given without backup_s3_endpoint: give all of %s for an S3 of your own, or none of them for deploy-local's MinIO", strings.Join(partial, ", "), strings.Join(s3Vars, ", "))
	}
	p.minio = true
	return p, nil
}

// givenVars names the variables that -v NAME=VALUE and -l FILE give.
func givenVars(vars, varsFiles []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, v := range vars {
		name, _, _ := strings.Cut(v, "=")
		out[name] = true
	}
	for _, f := range varsFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("vars file: %w", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("vars file %s: %w", f, err)
		}
		for name := range m {
			out[name] = true
		}
	}
	return out, nil
}

func sameFile(a, b string) bool {
	ia, err := os.Stat(a)
	if err != nil {
		return false
	}
	ib, err := os.Stat(b)
	return err == nil && os.SameFile(ia, ib)
}

// s3Credentials are the stand-in's root user. Secret is never printed.
type s3Credentials struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
}

// s3Credentials returns the credentials kept in S3CredentialsFile,
// generating them the first time.
func (d *Director) s3Credentials() (s3Credentials, error) {
	path := d.S3CredentialsFile()
	var c s3Credentials
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &c); err != nil {
			return c, fmt.Errorf("%s: %w", path, err)
		}
		if c.AccessKeyID == "" || c.SecretAccessKey == "" {
			return c, fmt.Errorf("%s: no access key id or secret (delete it to generate new ones)", path)
		}
		return c, nil
	case !errors.Is(err, os.ErrNotExist):
		return c, err
	}
	c = s3Credentials{AccessKeyID: "rcf-" + randomHex(8), SecretAccessKey: randomHex(20)}
	data, err = json.MarshalIndent(c, "", "  ")
	if err != nil {
		return c, err
	}
	return c, writeAtomic(path, append(data, '\n'), 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeS3Vars writes the variables backups-s3.yml needs, pointing at the
// stand-in, into s3VarsFile.
func (d *Director) writeS3Vars(c s3Credentials) error {
	data, err := yaml.Marshal(map[string]string{
		"backup_s3_endpoint":          S3Endpoint,
		"backup_s3_region":            S3Region,
		"backup_s3_bucket":            S3Bucket,
		"backup_s3_access_key_id":     c.AccessKeyID,
		"backup_s3_secret_access_key": c.SecretAccessKey,
	})
	if err != nil {
		return err
	}
	return writeAtomic(d.s3VarsFile(), data, 0o600)
}

// prepareS3 plans Options.S3 for a deploy and readies what interpolation
// needs: the ops file to add and, for the stand-in, its credentials and
// variables. It fails when the stand-in is needed and MinIO is missing.
func (d *Director) prepareS3() error {
	p, err := planS3(d.opts)
	if err != nil {
		return err
	}
	d.s3 = p
	d.extraOps, d.extraVarsFiles = nil, nil
	if p.opsFile != "" {
		d.extraOps = []string{p.opsFile}
	}
	if !p.minio {
		return nil
	}
	const missing = "backups go to a MinIO server that deploy-local runs, and %s: run scripts/setup (or set MINIO to a minio binary, or deploy without backups: --no-s3)"
	bin, err := miniotest.Binary()
	if err != nil {
		return fmt.Errorf(missing, "there is no minio binary")
	}
	// $MINIO is taken as it is: it must name a program.
	if d.minioBin, err = exec.LookPath(bin); err != nil {
		return fmt.Errorf(missing, err)
	}
	c, err := d.s3Credentials()
	if err != nil {
		return err
	}
	if err := d.writeS3Vars(c); err != nil {
		return err
	}
	d.extraVarsFiles = []string{d.s3VarsFile()}
	return nil
}

// minioServer is one MinIO server process.
type minioServer struct {
	bin, dataDir, logFile, pidFile string
	// addr and console are the listen addresses of the API and console.
	addr, console string
	// netns is the network namespace to run it in; "" means this
	// process's.
	netns string
	creds s3Credentials
}

// start runs the server in the background, in a session of its own (it
// outlives this program), and returns its pid, recorded in pidFile. The
// server may not be ready yet.
func (m minioServer) start() (int, error) {
	if err := os.MkdirAll(m.dataDir, 0o700); err != nil {
		return 0, err
	}
	log, err := os.OpenFile(m.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	args := []string{"server", m.dataDir, "--address", m.addr, "--console-address", m.console, "--quiet"}
	cmd := exec.Command(m.bin, args...)
	if m.netns != "" {
		// nsenter execs minio: the pid is the server's.
		cmd = exec.Command("nsenter", append([]string{"--net=" + filepath.Join(netnsDir, m.netns), "--", m.bin}, args...)...)
	}
	// The secret goes in the environment, which only root can read.
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.creds.AccessKeyID, "MINIO_ROOT_PASSWORD="+m.creds.SecretAccessKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", m.bin, err)
	}
	// Reaped when it ends while this program runs.
	go func() { _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	if err := os.WriteFile(m.pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		_ = stopProcess(pid, 0)
		return 0, err
	}
	return pid, nil
}

// s3Client is a minio-go client of endpoint (host:port) with creds whose
// connections dial does.
func s3Client(addr string, c s3Credentials, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*minio.Client, error) {
	return minio.New(addr, &minio.Options{
		Creds:        credentials.NewStaticV4(c.AccessKeyID, c.SecretAccessKey, ""),
		Region:       S3Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    &http.Transport{DialContext: dial, DisableKeepAlives: true, ResponseHeaderTimeout: time.Minute},
		MaxRetries:   1,
	})
}

// awaitS3 waits until the server at addr serves (its health check passes
// and it answers for the bucket, which it creates if it is missing) or
// alive reports it gone, for up to wait.
func awaitS3(ctx context.Context, addr, bucket string, c s3Credentials, dial func(ctx context.Context, network, addr string) (net.Conn, error), alive func() bool, wait time.Duration) error {
	client, err := s3Client(addr, c, dial)
	if err != nil {
		return err
	}
	health := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last error
	for {
		if !alive() {
			return errors.New("minio exited")
		}
		// The health check can pass before the object layer serves
		// ("Server not initialized yet"): the bucket must answer too.
		last = func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/minio/health/ready", nil)
			if err != nil {
				return err
			}
			resp, err := health.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("health check: %s", resp.Status)
			}
			exists, err := client.BucketExists(ctx, bucket)
			if err != nil || exists {
				return err
			}
			return client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: S3Region})
		}()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not serving after %s: %w", wait, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopProcess sends SIGTERM to pid and waits up to grace for it to end,
// then kills it and waits until it is gone.
func stopProcess(pid int, grace time.Duration) error {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for processAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !processAlive(pid) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	deadline = time.Now().Add(10 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d does not die", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// s3Pid returns the pid of the stand-in's MinIO, or 0 when it is not
// running: no pid file, or a pid now used by another program (one whose
// command line does not name the stand-in's data folder).
func (d *Director) s3Pid() int {
	data, err := os.ReadFile(filepath.Join(d.s3Dir(), "minio.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || !processAlive(pid) {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !slices.Contains(strings.Split(string(cmdline), "\x00"), d.s3DataDir()) {
		return 0
	}
	return pid
}

// s3Serving reports whether the stand-in runs in its namespace.
func (d *Director) s3Serving(pid int) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, d.s3NS()), &st); err != nil {
		return false
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	return err == nil && link == fmt.Sprintf("net:[%d]", st.Ino)
}

// startS3 makes sure the stand-in runs and serves the bucket: it starts
// MinIO in NAME-s3 unless it runs, and waits until it serves. It runs
// after ensureNetwork. On failure it leaves no MinIO and no NAME-s3.
func (d *Director) startS3(ctx context.Context) error {
	t := time.Now()
	c, err := d.s3Credentials()
	if err != nil {
		return err
	}
	pid := d.s3Pid()
	what := "running"
	if pid > 0 && !d.s3Serving(pid) {
		// Its namespace was deleted under it.
		if err := d.stopS3(ctx); err != nil {
			return err
		}
		pid = 0
	}
	if pid == 0 {
		what = "started"
		if err := deleteNetns(ctx, d.s3NS()); err != nil {
			return err
		}
		if err := d.plug(ctx, d.s3NS(), "s3", S3IP); err != nil {
			return errors.Join(err, deleteNetns(ctx, d.s3NS()))
		}
		m := minioServer{
			bin: d.minioBin, dataDir: d.s3DataDir(), logFile: filepath.Join(d.s3Dir(), "minio.log"),
			pidFile: filepath.Join(d.s3Dir(), "minio.pid"),
			addr:    net.JoinHostPort(S3IP, strconv.Itoa(S3Port)), console: net.JoinHostPort(S3IP, strconv.Itoa(s3Console)),
			netns: d.s3NS(), creds: c,
		}
		if pid, err = m.start(); err != nil {
			return errors.Join(err, deleteNetns(ctx, d.s3NS()))
		}
	}
	alive := func() bool { return processAlive(pid) }
	if err := awaitS3(ctx, net.JoinHostPort(S3IP, strconv.Itoa(S3Port)), S3Bucket, c, d.Dial, alive, time.Minute); err != nil {
		return errors.Join(fmt.Errorf("the S3 stand-in (MinIO, netns %s): %w; see %s", d.s3NS(), err, filepath.Join(d.s3Dir(), "minio.log")), d.stopS3(ctx))
	}
	d.printf("  S3 stand-in %s: MinIO at %s (netns %s), bucket %s, data in %s (%.1fs)\n",
		what, S3Endpoint, d.s3NS(), S3Bucket, d.s3DataDir(), time.Since(t).Seconds())
	return nil
}

// stopS3 stops the stand-in's MinIO, if it runs, and deletes its
// namespace; its data and credentials stay.
func (d *Director) stopS3(ctx context.Context) error {
	var errs []error
	if pid := d.s3Pid(); pid > 0 {
		d.printf("  stopping the S3 stand-in (MinIO)\n")
		errs = append(errs, stopProcess(pid, 10*time.Second))
	}
	errs = append(errs, deleteNetns(ctx, d.s3NS()))
	_ = ipCmd(ctx, "-n", d.lanNS(), "link", "del", "s3")
	if err := os.Remove(filepath.Join(d.s3Dir(), "minio.pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// S3 is the deployment's S3 stand-in, as the apps' namespace reaches it.
type S3 struct {
	// Endpoint is the URL of its S3 API, S3Endpoint.
	Endpoint string
	Region   string
	Bucket   string
	// AccessKeyID names the credentials; the secret is in
	// CredentialsFile, never printed.
	AccessKeyID     string
	CredentialsFile string
	// Namespace is MinIO's network namespace.
	Namespace string

	creds s3Credentials
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
}

// S3 returns the running S3 stand-in, or ErrNoS3.
func (d *Director) S3() (*S3, error) {
	if pid := d.s3Pid(); pid == 0 || !d.s3Serving(pid) {
		return nil, ErrNoS3
	}
	c, err := d.s3Credentials()
	if err != nil {
		return nil, err
	}
	return &S3{
		Endpoint: S3Endpoint, Region: S3Region, Bucket: S3Bucket, AccessKeyID: c.AccessKeyID,
		CredentialsFile: d.S3CredentialsFile(), Namespace: d.s3NS(), creds: c, dial: d.Dial,
	}, nil
}

// Client returns a minio-go client of the stand-in with its credentials,
// connecting from the apps' namespace.
func (s *S3) Client() (*minio.Client, error) {
	return s3Client(strings.TrimPrefix(s.Endpoint, "http://"), s.creds, s.dial)
}

// S3Object is an object of the bucket.
type S3Object struct {
	Name         string
	Size         int64
	LastModified time.Time
}

// Objects lists every object of the bucket, by name.
func (s *S3) Objects(ctx context.Context) ([]S3Object, error) {
	c, err := s.Client()
	if err != nil {
		return nil, err
	}
	return listObjects(ctx, c, s.Bucket)
}

func listObjects(ctx context.Context, c *minio.Client, bucket string) ([]S3Object, error) {
	var out []S3Object
	for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			return nil, o.Err
		}
		out = append(out, S3Object{Name: o.Key, Size: o.Size, LastModified: o.LastModified})
	}
	slices.SortFunc(out, func(a, b S3Object) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
