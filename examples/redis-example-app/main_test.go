package main

// These tests run the app as Cloud Foundry would (PORT and VCAP_SERVICES in
// Cloud Foundry's shape, a real HTTP listener) against a real redis-server:
// REDIS_SERVER names the binary; without it, the one scripts/setup built for
// this checkout (.local/redis-build) is used. With neither the tests fail:
// they are not skipped.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Passwords of the servers' users. Every test checks that none of them
// reaches the app's log.
const (
	appPassword      = "app-secret-5f2c1e9a7b3d"
	operatorPassword = "operator-secret-8d4e2a6c0f1b"
	defaultPassword  = "default-secret-3a9b7c5d1e2f"
)

var secrets = []string{appPassword, operatorPassword, defaultPassword}

// users are the ACL lines of every test server: "app" is a binding as Redis
// for Cloud Foundry makes it (no CONFIG), "operator" may run everything, and
// the default user takes a password alone, as a user-provided service's.
const users = `user default on >` + defaultPassword + ` ~* &* +@all
user app on >` + appPassword + ` ~* &* +@all -config
user operator on >` + operatorPassword + ` ~* &* +@all
`

func TestKeysRoundTrip(t *testing.T) {
	port := startRedis(t, nil, "")
	base := startApp(t, vcap(bindingCredentials(port, "app", appPassword)))

	expect(t, "PUT", base+"/foo", "data=bar", 201, "success")
	if got := directGet(t, port, "foo"); got != "bar" {
		t.Fatalf("redis holds %q at foo after the PUT, want bar", got)
	}
	expect(t, "GET", base+"/foo", "", 200, "bar")
	expect(t, "PUT", base+"/foo", url.Values{"data": {"a value & more\n"}}.Encode(), 201, "success")
	expect(t, "GET", base+"/foo", "", 200, "a value & more\n")
	expect(t, "DELETE", base+"/foo", "", 200, "success")
	expect(t, "GET", base+"/foo", "", 404, "key not present")
	expect(t, "DELETE", base+"/foo", "", 404, "key not present")
	expect(t, "GET", base+"/never-set", "", 404, "key not present")

	// A key may hold characters a path must escape, a slash too.
	key := "a b/c"
	expect(t, "PUT", base+"/"+url.PathEscape(key), "data=x", 201, "success")
	if got := directGet(t, port, key); got != "x" {
		t.Fatalf("redis holds %q at %q, want x", got, key)
	}
	expect(t, "GET", base+"/"+url.PathEscape(key), "", 200, "x")
	expect(t, "GET", base+"/", "", 200, "Redis example app")
}

func TestPutWithoutData(t *testing.T) {
	port := startRedis(t, nil, "")
	base := startApp(t, vcap(bindingCredentials(port, "app", appPassword)))

	expect(t, "PUT", base+"/foo", "", 400, "data field missing")
	expect(t, "PUT", base+"/foo", "value=bar", 400, "data field missing")
	status, body := send(t, "PUT", base+"/foo", "application/json", `{"data":"bar"}`)
	if status != 400 || !strings.Contains(body, "data field missing") {
		t.Fatalf("PUT with a JSON body: %d %q, want 400 data field missing", status, body)
	}
	expect(t, "PUT", base+"/foo", "data=%zz", 400, "not a form")
	expect(t, "PUT", base+"/foo", "data="+strings.Repeat("x", maxBody), 413, "larger than")
	if n := directExists(t, port, "foo"); n != 0 {
		t.Fatalf("a refused PUT stored the key")
	}
	// An empty value is a value.
	expect(t, "PUT", base+"/foo", "data=", 201, "success")
	expect(t, "GET", base+"/foo", "", 200, "")
}

func TestConfigItem(t *testing.T) {
	port := startRedis(t, nil, "maxmemory 10mb\n")

	// A binding of Redis for Cloud Foundry may not run CONFIG: a clear 403.
	base := startApp(t, vcap(bindingCredentials(port, "app", appPassword)))
	expect(t, "GET", base+"/config/maxmemory", "", 403, "NOPERM")

	operator := startApp(t, vcap(bindingCredentials(port, "operator", operatorPassword)))
	expect(t, "GET", operator+"/config/maxmemory", "", 200, "10485760")
	expect(t, "GET", operator+"/config/MAXMEMORY", "", 200, "10485760")
	expect(t, "GET", operator+"/config/no-such-item", "", 404, "config item no-such-item not found")
}

func TestUserProvidedCredentials(t *testing.T) {
	// cf cups redis -p "host, password, port" gives strings and no username.
	port := startRedis(t, nil, "")
	creds := map[string]any{"host": "127.0.0.1", "port": strconv.Itoa(port), "password": defaultPassword}
	base := startApp(t, vcapService("user-provided", "redis", []string{"redis"}, creds))
	expect(t, "PUT", base+"/k", "data=v", 201, "success")
	expect(t, "GET", base+"/k", "", 200, "v")
}

func TestTLS(t *testing.T) {
	ca := newCA(t)
	tlsPort := startRedis(t, &ca, "")
	closed := freePort(t) // the plain port the binding names: nothing listens there

	t.Run("tls_port with tls_ca is preferred to the plain port", func(t *testing.T) {
		creds := bindingCredentials(closed, "app", appPassword)
		creds["tls_port"] = tlsPort
		creds["tls_ca"] = ca.pem
		// Only tls_port: no tls_uri, so the app builds the address itself.
		base := startApp(t, vcap(creds))
		expect(t, "PUT", base+"/t", "data=over-tls", 201, "success")
		expect(t, "GET", base+"/t", "", 200, "over-tls")
	})
	t.Run("tls_uri with tls_ca", func(t *testing.T) {
		creds := bindingCredentials(closed, "app", appPassword)
		creds["tls_port"] = tlsPort
		creds["tls_uri"] = redisURI("rediss", "app", appPassword, tlsPort)
		creds["tls_ca"] = ca.pem
		base := startApp(t, vcap(creds))
		expect(t, "GET", base+"/t", "", 200, "over-tls")
		expect(t, "DELETE", base+"/t", "", 200, "success")
	})
	t.Run("a TLS-only binding: uri is rediss:// and port the TLS port", func(t *testing.T) {
		creds := bindingCredentials(tlsPort, "app", appPassword)
		creds["uri"] = redisURI("rediss", "app", appPassword, tlsPort)
		creds["tls_ca"] = ca.pem
		base := startApp(t, vcap(creds))
		expect(t, "PUT", base+"/only", "data=tls", 201, "success")
		expect(t, "GET", base+"/only", "", 200, "tls")
	})
	t.Run("a server the CA did not sign is refused", func(t *testing.T) {
		other := newCA(t)
		creds := bindingCredentials(closed, "app", appPassword)
		creds["tls_port"] = tlsPort
		creds["tls_ca"] = other.pem
		base := startApp(t, vcap(creds))
		expect(t, "GET", base+"/t", "", 502, "certificate")
	})
}

func TestStartupErrors(t *testing.T) {
	good := vcap(bindingCredentials(6379, "app", appPassword))
	withCreds := func(change func(map[string]any)) string {
		creds := bindingCredentials(6379, "app", appPassword)
		change(creds)
		return vcap(creds)
	}
	mysql := vcapService("p.mysql", "db", []string{"mysql", "relational"}, map[string]any{"hostname": "127.0.0.1"})
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no PORT", map[string]string{"VCAP_SERVICES": good}, "PORT is not set"},
		{"no VCAP_SERVICES", map[string]string{"PORT": "0"}, "VCAP_SERVICES is not set"},
		{"VCAP_SERVICES not JSON", map[string]string{"PORT": "0", "VCAP_SERVICES": "{"}, "VCAP_SERVICES is not a JSON object"},
		{"no service tagged redis", map[string]string{"PORT": "0", "VCAP_SERVICES": mysql},
			`VCAP_SERVICES has no service tagged \"redis\" (bound: db (p.mysql))`},
		{"no services", map[string]string{"PORT": "0", "VCAP_SERVICES": "{}"}, "no services are bound"},
		{"REDIS_SERVICE_NAME names none", map[string]string{"PORT": "0", "VCAP_SERVICES": good, "REDIS_SERVICE_NAME": "other"},
			`named \"other\"`},
		{"two redis services", map[string]string{"PORT": "0", "VCAP_SERVICES": twoServices(t)}, "set REDIS_SERVICE_NAME"},
		{"tls_ca is not PEM", map[string]string{"PORT": "0", "VCAP_SERVICES": withCreds(func(c map[string]any) {
			c["tls_port"], c["tls_ca"] = 6380, "not a certificate"
		})}, "credentials.tls_ca: no PEM certificate"},
		{"no address", map[string]string{"PORT": "0", "VCAP_SERVICES": withCreds(func(c map[string]any) {
			delete(c, "uri")
			delete(c, "port")
		})}, "none of tls_uri, tls_port, uri, or host and port"},
		{"bad uri", map[string]string{"PORT": "0", "VCAP_SERVICES": withCreds(func(c map[string]any) {
			c["uri"] = "redis://app:" + appPassword + "@127.0.0.1:notaport"
		})}, "credentials.uri: not a valid URL"},
		{"bad port", map[string]string{"PORT": "0", "VCAP_SERVICES": withCreds(func(c map[string]any) {
			c["port"] = "sixty"
		})}, "is not a number from 1 to 65535"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.env["LISTEN_HOST"] = "127.0.0.1"
			var logs syncBuffer
			code := run(context.Background(), envOf(c.env), &logs, func(net.Addr) { t.Error("the app started listening") })
			if code != 1 {
				t.Fatalf("run returned %d, want 1; log:\n%s", code, logs.String())
			}
			if !strings.Contains(logs.String(), c.want) || !strings.Contains(logs.String(), "cannot start") {
				t.Fatalf("log does not say %q:\n%s", c.want, logs.String())
			}
			noSecrets(t, logs.String())
		})
	}
}

func TestFullInstanceAnswers507(t *testing.T) {
	port := startRedis(t, nil, "maxmemory-policy noeviction\n")
	base := startApp(t, vcap(bindingCredentials(port, "app", appPassword)))
	expect(t, "PUT", base+"/foo", "data=bar", 201, "success")
	if err := direct(t, port).ConfigSet(context.Background(), "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	expect(t, "PUT", base+"/more", "data=x", 507, "the Redis service instance is full")
	expect(t, "GET", base+"/foo", "", 200, "bar")
}

func TestRefusedCredentialsAnswer502(t *testing.T) {
	port := startRedis(t, nil, "")
	base := startApp(t, vcap(bindingCredentials(port, "app", "not-"+appPassword)))
	expect(t, "GET", base+"/foo", "", 502, "WRONGPASS")
}

func TestRedisGoneAnswers502(t *testing.T) {
	base := startApp(t, vcap(bindingCredentials(freePort(t), "app", appPassword)))
	expect(t, "GET", base+"/foo", "", 502, "cannot reach the Redis service instance")
	expect(t, "PUT", base+"/foo", "data=x", 502, "cannot reach the Redis service instance")
}

// bindingCredentials are credentials as Redis for Cloud Foundry's bind
// answers them for an instance without TLS (src/internal/broker/bind.go).
func bindingCredentials(port int, user, password string) map[string]any {
	return map[string]any{
		"host":     "127.0.0.1",
		"hostname": "127.0.0.1",
		"port":     port,
		"username": user,
		"password": password,
		"uri":      redisURI("redis", user, password, port),
	}
}

func redisURI(scheme, user, password string, port int) string {
	u := url.URL{Scheme: scheme, User: url.UserPassword(user, password), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	return u.String()
}

// vcap is VCAP_SERVICES with a Redis for Cloud Foundry binding, as Cloud
// Foundry writes it, beside a binding of another service.
func vcap(creds map[string]any) string {
	all := map[string][]map[string]any{}
	add := func(label, name string, tags []string, creds map[string]any) {
		all[label] = append(all[label], map[string]any{
			"label": label, "provider": nil, "plan": "shared-vm", "name": name, "tags": tags,
			"instance_guid": "0d9c3f5e-" + name, "instance_name": name,
			"binding_guid": "7f1e2d3c-" + name, "binding_name": nil,
			"credentials": creds, "syslog_drain_url": nil, "volume_mounts": []any{},
		})
	}
	add("p.mysql", "db", []string{"mysql", "relational"}, map[string]any{"hostname": "127.0.0.1", "port": 3306})
	add("p-redis", "redis", []string{"redis", "key-value", "pivotal"}, creds)
	b, _ := json.Marshal(all)
	return string(b)
}

func vcapService(label, name string, tags []string, creds map[string]any) string {
	b, _ := json.Marshal(map[string][]map[string]any{label: {{"label": label, "name": name, "tags": tags, "credentials": creds}}})
	return string(b)
}

func twoServices(t *testing.T) string {
	var all map[string][]json.RawMessage
	if err := json.Unmarshal([]byte(vcap(bindingCredentials(6379, "app", appPassword))), &all); err != nil {
		t.Fatal(err)
	}
	second := strings.Replace(string(all["p-redis"][0]), `"name":"redis"`, `"name":"cache"`, 1)
	all["p-redis"] = append(all["p-redis"], json.RawMessage(second))
	b, _ := json.Marshal(all)
	return string(b)
}

// startApp runs the app with vcapServices on a free loopback port until the
// test ends and returns its base URL. At the end the app must stop cleanly
// and its log must hold no password.
func startApp(t *testing.T, vcapServices string) string {
	t.Helper()
	env := map[string]string{"PORT": "0", "LISTEN_HOST": "127.0.0.1", "VCAP_SERVICES": vcapServices}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	addrs := make(chan net.Addr, 1)
	done := make(chan int, 1)
	go func() { done <- run(ctx, envOf(env), logs, func(a net.Addr) { addrs <- a }) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("the app exited with %d; log:\n%s", code, logs.String())
		}
		noSecrets(t, logs.String())
		if t.Failed() {
			t.Logf("app log:\n%s", logs.String())
		}
	})
	select {
	case a := <-addrs:
		return "http://" + a.String()
	case code := <-done:
		done <- code
		t.Fatalf("the app exited with %d before listening; log:\n%s", code, logs.String())
		return ""
	}
}

func envOf(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

func noSecrets(t *testing.T, log string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("the app's log holds a password:\n%s", log)
		}
	}
}

// expect sends a request (a form body when form is not empty) and checks
// the status and that the body contains want (equals it, for 200 and 201).
func expect(t *testing.T, method, target, form string, status int, want string) {
	t.Helper()
	contentType := ""
	if form != "" {
		contentType = "application/x-www-form-urlencoded"
	}
	got, body := send(t, method, target, contentType, form)
	exact := status == 200 && !strings.HasSuffix(target, "/") || status == 201
	if got != status || exact && body != want || !exact && !strings.Contains(body, want) {
		t.Fatalf("%s %s: %d %q, want %d %q", method, target, got, body, status, want)
	}
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Fatalf("%s %s: the answer holds a password: %q", method, target, body)
		}
	}
}

func send(t *testing.T, method, target, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// direct is a client of the test's own on a plain server, to check what
// the app really stored.
func direct(t *testing.T, port int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Username: "operator", Password: operatorPassword})
	t.Cleanup(func() { c.Close() })
	return c
}

func directGet(t *testing.T, port int, key string) string {
	t.Helper()
	v, err := direct(t, port).Get(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("GET %q: %v", key, err)
	}
	return v
}

func directExists(t *testing.T, port int, key string) int64 {
	t.Helper()
	n, err := direct(t, port).Exists(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// redisServer is the redis-server binary the tests run.
func redisServer(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		return p
	}
	pointer := filepath.Join("..", "..", ".local", "redis-build")
	b, err := os.ReadFile(pointer)
	if err != nil {
		t.Fatalf("no redis-server: set REDIS_SERVER to one, or run scripts/setup (which writes %s): %v", pointer, err)
	}
	return filepath.Join(strings.TrimSpace(string(b)), "bin", "redis-server")
}

// startRedis starts redis-server with the test users and extra config until
// the test ends, and returns the port it serves: plain, or, with a CA, TLS
// only (its plain port closed).
func startRedis(t *testing.T, ca *testCA, extra string) int {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf("bind 127.0.0.1\nport %d\n", port)
	if ca != nil {
		conf = fmt.Sprintf("bind 127.0.0.1\nport 0\ntls-port %d\n%s", port, ca.redisConf(t))
	}
	conf += fmt.Sprintf("dir %s\nsave \"\"\nappendonly no\n%s%s", dir, users, extra)
	confFile := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(redisServer(t), confFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logFile.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	// Wait until it accepts connections, or stop at once if it exited.
	for i := 0; ; i++ {
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("redis-server exited at start:\n%s", log)
		default:
		}
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			c.Close()
			return port
		}
		if i == 200 {
			t.Fatalf("redis-server does not accept connections on %d", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testCA is a CA made for one test, with a server certificate for
// 127.0.0.1 it signed.
type testCA struct {
	pem             string
	certPEM, keyPEM []byte
}

func newCA(t *testing.T) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example-app-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{
		pem:     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
}

// redisConf writes the CA's files and returns the redis.conf lines of a
// TLS server with them (clients authenticate by password, as on Redis
// for Cloud Foundry: tls-auth-clients no).
func (ca testCA) redisConf(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{"ca.crt": []byte(ca.pem), "server.crt": ca.certPEM, "server.key": ca.keyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients no\n",
		filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt"))
}

// syncBuffer is a bytes.Buffer the app's log and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
