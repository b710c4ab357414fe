package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redisTag is the tag Redis for Cloud Foundry's catalog (and most other
// Redis services) gives its service; the app looks for it rather than for a
// service name, which operators may change.
const redisTag = "redis"

// service is one entry of VCAP_SERVICES, which Cloud Foundry writes as an
// object keyed by the service's label (its name in the marketplace), each
// holding a list of the bound instances of that service.
type service struct {
	Name        string      `json:"name"`
	Label       string      `json:"label"`
	Tags        []string    `json:"tags"`
	Credentials credentials `json:"credentials"`
}

// credentials are the fields of a binding the app reads. Redis for Cloud
// Foundry gives all of them (tls_* only when the instance serves TLS); a
// user-provided service (cf cups) may give only host, port and password,
// and may give the port as a string.
type credentials struct {
	Host     string `json:"host"`
	Hostname string `json:"hostname"`
	Port     port   `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	URI      string `json:"uri"`
	TLSPort  port   `json:"tls_port"`
	TLSURI   string `json:"tls_uri"`
	TLSCA    string `json:"tls_ca"`
}

// port is a TCP port written as a JSON number or string; zero means absent.
type port int

func (p *port) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*p = 0
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %s is not a number from 1 to 65535", b)
	}
	*p = port(n)
	return nil
}

// findService returns the service in vcapServices (the JSON of
// VCAP_SERVICES) tagged "redis"; name, when not empty, picks one of several
// by its instance name. The errors say what is bound instead and what to do.
func findService(vcapServices, name string) (service, error) {
	if strings.TrimSpace(vcapServices) == "" {
		return service{}, errors.New("VCAP_SERVICES is not set: bind a Redis service instance to this app " +
			"(cf create-service p-redis shared-vm redis && cf bind-service redis-example-app redis && cf restage redis-example-app)")
	}
	var byLabel map[string][]json.RawMessage
	if err := json.Unmarshal([]byte(vcapServices), &byLabel); err != nil {
		return service{}, fmt.Errorf("VCAP_SERVICES is not a JSON object of service lists: %w", err)
	}
	labels := make([]string, 0, len(byLabel))
	for label := range byLabel {
		labels = append(labels, label)
	}
	sort.Strings(labels)
	var found []service
	var others []string
	for _, label := range labels {
		for i, raw := range byLabel[label] {
			var probe struct {
				Name string   `json:"name"`
				Tags []string `json:"tags"`
			}
			if err := json.Unmarshal(raw, &probe); err != nil {
				return service{}, fmt.Errorf("VCAP_SERVICES[%q][%d] is not a service object: %w", label, i, err)
			}
			if !slices.Contains(probe.Tags, redisTag) || (name != "" && probe.Name != name) {
				others = append(others, fmt.Sprintf("%s (%s)", probe.Name, label))
				continue
			}
			var s service
			if err := json.Unmarshal(raw, &s); err != nil {
				return service{}, fmt.Errorf("service %q (%s): credentials: %w", probe.Name, label, err)
			}
			found = append(found, s)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		names := make([]string, len(found))
		for i, s := range found {
			names[i] = s.Name
		}
		return service{}, fmt.Errorf("%d services tagged %q are bound (%s): set REDIS_SERVICE_NAME to the one to use",
			len(found), redisTag, strings.Join(names, ", "))
	}
	want := fmt.Sprintf("service tagged %q", redisTag)
	if name != "" {
		want = fmt.Sprintf("service named %q (REDIS_SERVICE_NAME) tagged %q", name, redisTag)
	}
	bound := "no services are bound"
	if len(others) > 0 {
		bound = "bound: " + strings.Join(others, ", ")
	}
	return service{}, fmt.Errorf("VCAP_SERVICES has no %s (%s): bind a Redis service instance to this app "+
		"(cf bind-service redis-example-app SERVICE_INSTANCE && cf restage redis-example-app)", want, bound)
}

// clientOptions turns a binding's credentials into go-redis options,
// preferring TLS when the binding offers it (tls_uri or tls_port, or a
// rediss:// uri) and verifying the server with tls_ca when it is given
// (with the system's roots otherwise). It also returns a description of the
// connection for the log, which holds no password.
func clientOptions(c credentials) (*redis.Options, string, error) {
	host := c.Host
	if host == "" {
		host = c.Hostname
	}
	var opts *redis.Options
	var err error
	switch {
	case c.TLSURI != "":
		if opts, err = redis.ParseURL(c.TLSURI); err != nil {
			return nil, "", fmt.Errorf("credentials.tls_uri: %w", redactURLError(err))
		}
		if opts.TLSConfig == nil {
			return nil, "", errors.New("credentials.tls_uri: scheme must be rediss")
		}
	case c.TLSPort != 0:
		if host == "" {
			return nil, "", errors.New("credentials: tls_port is given without host or hostname")
		}
		opts = &redis.Options{
			Addr:      net.JoinHostPort(host, strconv.Itoa(int(c.TLSPort))),
			Username:  c.Username,
			Password:  c.Password,
			TLSConfig: &tls.Config{ServerName: host},
		}
	case c.URI != "":
		if opts, err = redis.ParseURL(c.URI); err != nil {
			return nil, "", fmt.Errorf("credentials.uri: %w", redactURLError(err))
		}
	case host != "" && c.Port != 0:
		opts = &redis.Options{
			Addr:     net.JoinHostPort(host, strconv.Itoa(int(c.Port))),
			Username: c.Username,
			Password: c.Password,
		}
	default:
		return nil, "", errors.New("credentials: none of tls_uri, tls_port, uri, or host and port is given")
	}
	desc := "plain TCP to " + opts.Addr
	if opts.TLSConfig != nil {
		opts.TLSConfig.MinVersion = tls.VersionTLS12
		desc = "TLS to " + opts.Addr + ", server verified with the system's CAs"
		if c.TLSCA != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(c.TLSCA)) {
				return nil, "", errors.New("credentials.tls_ca: no PEM certificate in it")
			}
			opts.TLSConfig.RootCAs = pool
			desc = "TLS to " + opts.Addr + ", server verified with tls_ca"
		}
	}
	if opts.Username != "" {
		desc += " as user " + opts.Username
	}
	return opts, desc, nil
}

// redactURLError keeps the parser's complaint but not the URL that
// url.Parse quotes in it, which holds the password.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New("not a valid URL: " + ue.Err.Error())
	}
	return err
}
