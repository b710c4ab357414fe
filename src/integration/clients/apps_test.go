package clients_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

// The apps of this file do in Go what testdata's scripts do in their
// languages: find the service tagged redis in VCAP_SERVICES, connect as the
// mode says, run the operations and print one JSON result line for each.

// evalScript sets KEYS[1] to ARGV[1] and answers its value and length, as
// the scripts' EVAL does.
const evalScript = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1]) .. ':' .. redis.call('STRLEN', KEYS[1])"

var laddrPort = regexp.MustCompile(`laddr=\S+:(\d+)`)

// findRedis reads the credentials of the service tagged redis in
// VCAP_SERVICES, as an app reads them.
func findRedis(vcap string) (creds, error) {
	var services map[string][]struct {
		Tags        []string `json:"tags"`
		Credentials creds    `json:"credentials"`
	}
	if err := json.Unmarshal([]byte(vcap), &services); err != nil {
		return creds{}, fmt.Errorf("VCAP_SERVICES: %w", err)
	}
	for _, instances := range services {
		for _, s := range instances {
			if slices.Contains(s.Tags, "redis") {
				return s.Credentials, nil
			}
		}
	}
	return creds{}, errors.New("no service tagged redis in VCAP_SERVICES")
}

// results collects an app's result lines.
type results struct {
	strings.Builder
	failed bool
}

// run runs one operation and writes its result line.
func (r *results) run(op string, fn func() (string, error)) bool {
	v, err := fn()
	line := map[string]any{"op": op, "value": v}
	if err != nil {
		r.failed = true
		line = map[string]any{"op": op, "error": err.Error()}
	}
	data, _ := json.Marshal(line)
	r.Write(append(data, '\n'))
	return err == nil
}

func (r *results) result() (string, error) {
	if r.failed {
		return r.String(), errors.New("an operation failed")
	}
	return r.String(), nil
}

// goRedisApp is an app using go-redis with its defaults, reading the URI as
// Go apps do:
//
//	plain:         uri
//	tls:           tls_uri, verifying tls_ca
//	tls-only:      uri (rediss://), verifying tls_ca
//	password-only: uri redis://:password@host:port
func goRedisApp(ctx context.Context, vcap, mode, id string) (string, error) {
	var out results
	c, err := findRedis(vcap)
	if err != nil {
		out.run("main", func() (string, error) { return "", err })
		return out.result()
	}
	uri := c.URI
	if mode == modeTLS {
		uri = c.TLSURI
	}
	opts, err := redis.ParseURL(uri)
	if err != nil {
		out.run("main", func() (string, error) { return "", err })
		return out.result()
	}
	if mode == modeTLS || mode == modeTLSOnly {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(c.TLSCA)) {
			out.run("main", func() (string, error) { return "", errors.New("tls_ca holds no PEM certificate") })
			return out.result()
		}
		if opts.TLSConfig == nil {
			opts.TLSConfig = &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}
		}
		opts.TLSConfig.RootCAs = pool
	}
	rc := redis.NewClient(opts)
	defer rc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !out.run("connect", func() (string, error) { return "ok", rc.Ping(ctx).Err() }) {
		return out.result()
	}
	out.run("whoami", func() (string, error) { return rc.Do(ctx, "ACL", "WHOAMI").Text() })
	out.run("port", func() (string, error) {
		info, err := rc.Do(ctx, "CLIENT", "INFO").Text()
		if m := laddrPort.FindStringSubmatch(info); err == nil && m != nil {
			return m[1], nil
		}
		return "", fmt.Errorf("CLIENT INFO: %q, %v", info, err)
	})
	out.run("set_get", func() (string, error) {
		if err := rc.Set(ctx, id+":str", id, 0).Err(); err != nil {
			return "", err
		}
		return rc.Get(ctx, id+":str").Result()
	})
	out.run("pipeline", func() (string, error) {
		var incr *redis.IntCmd
		var get *redis.StringCmd
		_, err := rc.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, id+":p", id, 0)
			p.IncrBy(ctx, id+":n", 20)
			incr = p.IncrBy(ctx, id+":n", 22)
			get = p.Get(ctx, id+":p")
			return nil
		})
		return fmt.Sprintf("%d %s", incr.Val(), get.Val()), err
	})
	out.run("multi", func() (string, error) {
		var incr *redis.IntCmd
		var get *redis.StringCmd
		_, err := rc.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, id+":m", id, 0)
			p.Incr(ctx, id+":mn")
			incr = p.Incr(ctx, id+":mn")
			get = p.Get(ctx, id+":m")
			return nil
		})
		return fmt.Sprintf("%d %s", incr.Val(), get.Val()), err
	})
	out.run("eval", func() (string, error) { return rc.Eval(ctx, evalScript, []string{id + ":e"}, id).Text() })
	out.run("pubsub", func() (string, error) {
		sub := rc.Subscribe(ctx, id+":c")
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil {
			return "", fmt.Errorf("subscribe: %w", err)
		}
		receivers, err := rc.Publish(ctx, id+":c", id).Result()
		if err != nil {
			return "", err
		}
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d %s", receivers, msg.Payload), nil
	})
	return out.result()
}

// redisCLIApp runs the release's redis-cli as a shell script would, one
// process per command (and one connection for MULTI/EXEC and the pipeline):
//
//	plain:         -u uri
//	tls:           -u tls_uri --tls --cacert FILE
//	tls-only:      -u uri (rediss://) --cacert FILE
//	password-only: -h host -p port -a password
func redisCLIApp(ctx context.Context, vcap, mode, id, tempDir string) (string, error) {
	var out results
	c, err := findRedis(vcap)
	if err != nil {
		out.run("main", func() (string, error) { return "", err })
		return out.result()
	}
	cli, err := redistest.Program("redis-cli")
	if err != nil {
		out.run("main", func() (string, error) { return "", err })
		return out.result()
	}
	base := []string{"--no-auth-warning"}
	switch mode {
	case modePlain:
		base = append(base, "-u", c.URI)
	case modePasswordOnly:
		base = append(base, "-h", c.Host, "-p", strconv.Itoa(c.Port), "-a", c.Password)
	case modeTLS, modeTLSOnly:
		caFile := filepath.Join(tempDir, "ca.pem")
		if err := os.WriteFile(caFile, []byte(c.TLSCA), 0o600); err != nil {
			out.run("main", func() (string, error) { return "", err })
			return out.result()
		}
		if mode == modeTLS {
			base = append(base, "-u", c.TLSURI, "--tls")
		} else {
			base = append(base, "-u", c.URI)
		}
		base = append(base, "--cacert", caFile)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	command := func(stdin string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, cli, append(append([]string{}, base...), args...)...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		cmd.WaitDelay = 5 * time.Second
		return cmd
	}
	// run answers redis-cli's output; an error reply or a failed connection
	// is an error.
	run := func(stdin string, args ...string) (string, error) {
		b, err := command(stdin, args...).CombinedOutput()
		s := strings.TrimSpace(string(b))
		if err != nil {
			return "", fmt.Errorf("redis-cli %s: %w: %s", strings.Join(args, " "), err, s)
		}
		for _, prefix := range []string{"ERR", "WRONGPASS", "NOAUTH", "NOPERM", "AUTH failed", "Could not connect", "Error:"} {
			if strings.Contains(s, prefix) {
				return "", fmt.Errorf("redis-cli %s: %s", strings.Join(args, " "), s)
			}
		}
		return s, nil
	}
	if !out.run("connect", func() (string, error) {
		pong, err := run("", "PING")
		if err == nil && pong != "PONG" {
			err = fmt.Errorf("PING answered %q", pong)
		}
		return "ok", err
	}) {
		return out.result()
	}
	out.run("whoami", func() (string, error) { return run("", "ACL", "WHOAMI") })
	out.run("port", func() (string, error) {
		info, err := run("", "CLIENT", "INFO")
		if m := laddrPort.FindStringSubmatch(info); err == nil && m != nil {
			return m[1], nil
		}
		return "", fmt.Errorf("CLIENT INFO: %q, %v", info, err)
	})
	out.run("set_get", func() (string, error) {
		if _, err := run("", "SET", id+":str", id); err != nil {
			return "", err
		}
		return run("", "GET", id+":str")
	})
	out.run("pipeline", func() (string, error) {
		// --pipe sends the commands in the protocol without waiting for
		// replies, then counts them.
		var proto strings.Builder
		for _, args := range [][]string{{"SET", id + ":p", id}, {"INCRBY", id + ":n", "20"}, {"INCRBY", id + ":n", "22"}} {
			fmt.Fprintf(&proto, "*%d\r\n", len(args))
			for _, a := range args {
				fmt.Fprintf(&proto, "$%d\r\n%s\r\n", len(a), a)
			}
		}
		summary, err := run(proto.String(), "--pipe")
		if err != nil {
			return "", err
		}
		if !strings.Contains(summary, "errors: 0, replies: 3") {
			return "", fmt.Errorf("redis-cli --pipe: %s", summary)
		}
		n, err := run("", "GET", id+":n")
		if err != nil {
			return "", err
		}
		v, err := run("", "GET", id+":p")
		return n + " " + v, err
	})
	out.run("multi", func() (string, error) {
		// Commands on stdin run on one connection, one after the other.
		replies, err := run(fmt.Sprintf("MULTI\nSET %[1]s:m %[1]s\nINCR %[1]s:mn\nINCR %[1]s:mn\nGET %[1]s:m\nEXEC\n", id))
		lines := strings.Split(replies, "\n")
		if err != nil || len(lines) < 2 {
			return "", fmt.Errorf("MULTI/EXEC: %q, %v", replies, err)
		}
		return lines[len(lines)-2] + " " + lines[len(lines)-1], nil
	})
	out.run("eval", func() (string, error) { return run("", "EVAL", evalScript, "1", id+":e", id) })
	out.run("pubsub", func() (string, error) {
		sub := command("", "SUBSCRIBE", id+":c")
		stdout, err := sub.StdoutPipe()
		if err != nil {
			return "", err
		}
		sub.Stderr = sub.Stdout
		if err := sub.Start(); err != nil {
			return "", err
		}
		defer func() { _ = sub.Process.Kill(); _ = sub.Wait() }()
		lines := bufio.NewScanner(stdout)
		// next reads one reply of three lines: kind, channel, payload.
		next := func() (string, error) {
			var reply []string
			for len(reply) < 3 && lines.Scan() {
				reply = append(reply, lines.Text())
			}
			if len(reply) < 3 {
				return "", fmt.Errorf("redis-cli SUBSCRIBE ended: %q %v", reply, lines.Err())
			}
			return strings.Join(reply, " "), nil
		}
		if confirmed, err := next(); err != nil || confirmed != "subscribe "+id+":c 1" {
			return "", fmt.Errorf("no subscribe confirmation: %q %v", confirmed, err)
		}
		receivers, err := run("", "PUBLISH", id+":c", id)
		if err != nil {
			return "", err
		}
		msg, err := next()
		if err != nil {
			return "", err
		}
		kind, rest, _ := strings.Cut(msg, " ")
		_, payload, _ := strings.Cut(rest, " ")
		if kind != "message" {
			return "", fmt.Errorf("SUBSCRIBE got %q", msg)
		}
		return receivers + " " + payload, nil
	})
	return out.result()
}
