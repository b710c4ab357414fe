package localbosh

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cf-redis/redis-for-cf/src/release/boshrender"
	"github.com/cf-redis/redis-for-cf/src/testkit/miniotest"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

// newTestDirector is a Director of a release folder holding only
// backups-s3.yml, with its state in a folder of its own.
func newTestDirector(t *testing.T, opts Options) *Director {
	t.Helper()
	release := t.TempDir()
	ops := filepath.Join(release, BackupsOpsFile)
	if err := os.MkdirAll(filepath.Dir(ops), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ops, []byte("[]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts.ReleaseDir = release
	if opts.StateDir == "" {
		opts.StateDir = filepath.Join(t.TempDir(), "state")
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPlanS3(t *testing.T) {
	dir := t.TempDir()
	ownVars := filepath.Join(dir, "own.yml")
	if err := os.WriteFile(ownVars, []byte("backup_s3_endpoint: http://10.244.0.5:9000\nbackup_s3_bucket: b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherVars := filepath.Join(dir, "other.yml")
	if err := os.WriteFile(otherVars, []byte("redis_node_instances: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	copyOfOps := filepath.Join(dir, "backups-s3.yml")
	if err := os.WriteFile(copyOfOps, []byte("[]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		opts      Options
		addsOps   bool
		minio     bool
		errSubstr string
	}{
		{name: "off", opts: Options{}},
		{name: "off, with the user's own ops file", opts: Options{OpsFiles: []string{"RELEASE/" + BackupsOpsFile}}},
		{name: "on", opts: Options{S3: true, VarsFiles: []string{otherVars}, Vars: []string{"x=1"}}, addsOps: true, minio: true},
		{name: "the user's -o has the ops file", opts: Options{S3: true, OpsFiles: []string{"RELEASE/" + BackupsOpsFile}}, minio: true},
		{name: "the user's -o has one of the same name", opts: Options{S3: true, OpsFiles: []string{copyOfOps}}, minio: true},
		{name: "the user's endpoint in -v", opts: Options{S3: true, Vars: []string{"backup_s3_endpoint=http://10.244.0.5:9000"}}, addsOps: true},
		{name: "the user's endpoint in -l, and the ops file", opts: Options{S3: true, VarsFiles: []string{ownVars}, OpsFiles: []string{"RELEASE/" + BackupsOpsFile}}},
		{name: "some variables without an endpoint", opts: Options{S3: true, Vars: []string{"backup_s3_bucket=mine", "backup_s3_region=eu-west-1"}},
			errSubstr: "backup_s3_region, backup_s3_bucket given without backup_s3_endpoint"},
		{name: "a vars file that cannot be read", opts: Options{S3: true, VarsFiles: []string{filepath.Join(dir, "missing.yml")}}, errSubstr: "missing.yml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDirector(t, Options{})
			tc.opts.ReleaseDir = d.opts.ReleaseDir
			for i, o := range tc.opts.OpsFiles {
				tc.opts.OpsFiles[i] = strings.Replace(o, "RELEASE", d.opts.ReleaseDir, 1)
			}
			p, err := planS3(tc.opts)
			if tc.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("error %v, want one containing %q", err, tc.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantOps := ""
			if tc.addsOps {
				wantOps = filepath.Join(d.opts.ReleaseDir, BackupsOpsFile)
			}
			if p.opsFile != wantOps || p.minio != tc.minio {
				t.Errorf("plan %+v, want ops file %q and minio %v", p, wantOps, tc.minio)
			}
		})
	}
}

func TestS3CredentialsAreGeneratedOnceAndKeptPrivate(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	d := newTestDirector(t, Options{S3: true, StateDir: state})
	// A minio binary is needed only to be found, not run.
	fake := filepath.Join(t.TempDir(), "minio")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MINIO", fake)
	if err := d.prepareS3(); err != nil {
		t.Fatal(err)
	}
	if len(d.extraOps) != 1 || d.extraOps[0] != filepath.Join(d.opts.ReleaseDir, BackupsOpsFile) {
		t.Errorf("extra ops files %v", d.extraOps)
	}
	if len(d.extraVarsFiles) != 1 {
		t.Fatalf("extra vars files %v", d.extraVarsFiles)
	}
	first, err := d.s3Credentials()
	if err != nil {
		t.Fatal(err)
	}
	if len(first.AccessKeyID) < 16 || len(first.SecretAccessKey) < 40 {
		t.Errorf("weak credentials: access key id of %d characters, secret of %d", len(first.AccessKeyID), len(first.SecretAccessKey))
	}
	for _, f := range []string{d.S3CredentialsFile(), d.extraVarsFiles[0]} {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %o, want 0600", f, info.Mode().Perm())
		}
	}
	vars, err := os.ReadFile(d.extraVarsFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"backup_s3_endpoint: http://10.244.0.3:9000", "backup_s3_region: us-east-1", "backup_s3_bucket: redis-backups",
		"backup_s3_access_key_id: " + first.AccessKeyID, "backup_s3_secret_access_key: " + first.SecretAccessKey,
	} {
		if !strings.Contains(string(vars), want+"\n") {
			t.Errorf("the vars file lacks %q", strings.SplitN(want, ":", 2)[0])
		}
	}

	// A later run of another Director of the same state keeps them.
	again := newTestDirector(t, Options{S3: true, StateDir: state})
	if err := again.prepareS3(); err != nil {
		t.Fatal(err)
	}
	second, err := again.s3Credentials()
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Error("the credentials changed between runs")
	}

	// Another deployment gets others.
	other := newTestDirector(t, Options{S3: true})
	if err := other.prepareS3(); err != nil {
		t.Fatal(err)
	}
	third, err := other.s3Credentials()
	if err != nil {
		t.Fatal(err)
	}
	if third.SecretAccessKey == first.SecretAccessKey || third.AccessKeyID == first.AccessKeyID {
		t.Error("two deployments have the same credentials")
	}
}

func TestPrepareS3WithoutMinIOSaysToRunSetup(t *testing.T) {
	d := newTestDirector(t, Options{S3: true})
	t.Setenv("MINIO", filepath.Join(t.TempDir(), "no-minio-here"))
	err := d.prepareS3()
	if err == nil || !strings.Contains(err.Error(), "run scripts/setup") || !strings.Contains(err.Error(), "--no-s3") {
		t.Fatalf("error %v, want one that says to run scripts/setup", err)
	}
	if _, err := os.Stat(d.S3CredentialsFile()); err == nil {
		t.Error("credentials were written for a stand-in that cannot run")
	}

	// Without S3, or with the user's own endpoint, MinIO is not needed.
	for _, opts := range []Options{{}, {S3: true, Vars: []string{"backup_s3_endpoint=http://10.244.0.5:9000"}}} {
		d := newTestDirector(t, opts)
		if err := d.prepareS3(); err != nil {
			t.Errorf("%+v: %v", opts, err)
		}
		if len(d.extraVarsFiles) != 0 || d.s3.minio {
			t.Errorf("%+v: a stand-in is planned", opts)
		}
	}
}

func TestS3AddressIsNoInstanceAddress(t *testing.T) {
	if S3IP == AppsIP {
		t.Fatal("the S3 stand-in and the apps' namespace share an address")
	}
	d := newTestDirector(t, Options{})
	d.st = &state{}
	g := boshrender.InstanceGroup{Name: "g", Instances: 200}
	for i := range g.Instances {
		in, err := d.ensureInstance(g, i)
		if err != nil {
			t.Fatal(err)
		}
		if in.IP == S3IP || in.IP == AppsIP {
			t.Fatalf("instance %d was given %s", i, in.IP)
		}
	}
}

// TestMinIOServer runs the stand-in's server as deploy-local does, but in
// this process's network namespace (namespaces need root): started in the
// background with generated credentials, awaited with its bucket made,
// listed, and stopped.
func TestMinIOServer(t *testing.T) {
	bin, err := miniotest.Binary()
	if err == nil {
		_, err = exec.LookPath(bin)
	}
	if err != nil {
		t.Skip("no minio binary: run scripts/setup")
	}
	d := newTestDirector(t, Options{})
	ports := make([]string, 2)
	for i := range ports {
		port, err := redistest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	creds := s3Credentials{AccessKeyID: "test-" + randomHex(8), SecretAccessKey: randomHex(20)}
	m := minioServer{
		bin: bin, dataDir: d.s3DataDir(), logFile: filepath.Join(d.s3Dir(), "minio.log"), pidFile: filepath.Join(d.s3Dir(), "minio.pid"),
		addr: ports[0], console: ports[1], creds: creds,
	}
	pid, err := m.start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stopProcess(pid, 5*time.Second); err != nil {
			t.Error(err)
		}
	})
	if data, err := os.ReadFile(m.pidFile); err != nil || strings.TrimSpace(string(data)) != strconv.Itoa(pid) {
		t.Fatalf("pid file: %q, %v", data, err)
	}
	// The child may not have exec'd minio yet (its command line is still
	// this test's until then).
	deadline := time.Now().Add(5 * time.Second)
	for d.s3Pid() != pid && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := d.s3Pid(); got != pid {
		t.Errorf("s3Pid() = %d, want %d", got, pid)
	}
	// Not in its namespace (there is none here): not the stand-in.
	if _, err := d.S3(); err != ErrNoS3 {
		t.Errorf("S3() without a namespace: %v", err)
	}
	ctx := context.Background()
	dial := (&net.Dialer{}).DialContext
	alive := func() bool { return processAlive(pid) }
	if err := awaitS3(ctx, m.addr, "backups", creds, dial, alive, 30*time.Second); err != nil {
		log, _ := os.ReadFile(m.logFile)
		t.Fatalf("%v\n%s", err, log)
	}
	// Ready again at once, the bucket kept.
	if err := awaitS3(ctx, m.addr, "backups", creds, dial, alive, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c, err := s3Client(m.addr, creds, dial)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"b/2.tar.gz", "a/1.tar.gz"} {
		body := strings.Repeat("x", 10*(i+1))
		if _, err := c.PutObject(ctx, "backups", name, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := listObjects(ctx, c, "backups")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(len(objs))
	for _, o := range objs {
		got += fmt.Sprintf(" %s:%d", o.Name, o.Size)
	}
	if got != "2 a/1.tar.gz:20 b/2.tar.gz:10" {
		t.Errorf("objects: %s", got)
	}
	// Other credentials are refused.
	bad, err := s3Client(m.addr, s3Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: randomHex(20)}, dial)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := listObjects(ctx, bad, "backups"); err == nil {
		t.Error("a wrong secret lists the bucket")
	}
	// Nothing of the secret in what the server logged.
	if log, err := os.ReadFile(m.logFile); err == nil && strings.Contains(string(log), creds.SecretAccessKey) {
		t.Error("the secret is in MinIO's log")
	}

	if err := d.stopS3(ctx); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) || d.s3Pid() != 0 {
		t.Fatal("minio runs after stopS3")
	}
	if _, err := os.Stat(m.pidFile); !os.IsNotExist(err) {
		t.Errorf("the pid file is left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.s3DataDir(), "backups")); err != nil {
		t.Errorf("the bucket's data is gone: %v", err)
	}
	// A pid file naming another program is not the stand-in.
	if err := os.WriteFile(m.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if d.s3Pid() != 0 {
		t.Error("s3Pid() takes this test for MinIO")
	}
	if err := awaitS3(ctx, m.addr, "backups", creds, dial, alive, time.Second); err == nil {
		t.Error("awaitS3 succeeded with the server gone")
	}
}
