package jsonhttp_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

var (
	errNotFound    = errors.New("no such thing")
	errUnavailable = errors.New("server unavailable")
	codes          = jsonhttp.Codes{{Err: errNotFound, Code: "not_found", Status: http.StatusNotFound}}
)

// server is a real HTTPS server that checks basic auth and answers by path.
func server(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "broker" || p != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/v1/echo":
			var in map[string]string
			if err := json.NewDecoder(r.Body).Decode(&in); err != nil || r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"echo": in["say"]})
		case "/v1/missing":
			code, status := codes.Classify(errNotFound)
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(jsonhttp.ErrorBody{Error: code, Description: "instance x"})
		case "/v1/odd":
			w.WriteHeader(http.StatusTeapot)
			json.NewEncoder(w).Encode(jsonhttp.ErrorBody{Error: "made_up", Description: "what"})
		case "/v1/stream":
			w.Write([]byte(`{"echo":"streamed"}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv, certPEM(srv)
}

// certPEM is the test server's certificate, as a CA to trust.
func certPEM(srv *httptest.Server) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
}

func client(t *testing.T, srv *httptest.Server, ca, password string) *jsonhttp.Client {
	t.Helper()
	base, err := url.Parse(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	c, err := jsonhttp.New(jsonhttp.Config{Noun: "agent", Base: base, Username: "broker", Password: password, CACert: ca,
		Timeout: 5 * time.Second, Codes: codes.Map(), Unavailable: errUnavailable})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDoSendsJSONWithCredentialsAndDecodesTheAnswer(t *testing.T) {
	srv, ca := server(t)
	c := client(t, srv, ca, "s3cret")
	var out map[string]string
	if err := c.Do(context.Background(), http.MethodPost, "/v1/echo", map[string]string{"say": "hi"}, &out); err != nil {
		t.Fatal(err)
	}
	if out["echo"] != "hi" {
		t.Fatalf("answer %v", out)
	}
	if err := c.StreamJSON(context.Background(), http.MethodGet, "/v1/stream", nil, &out, "echo"); err != nil || out["echo"] != "streamed" {
		t.Fatalf("StreamJSON: %v, %v", out, err)
	}
}

func TestErrorAnswersComeBackAsTheirSentinels(t *testing.T) {
	srv, ca := server(t)
	c := client(t, srv, ca, "s3cret")
	host := strings.TrimPrefix(srv.URL, "https://")

	err := c.Do(context.Background(), http.MethodGet, "/v1/missing", nil, nil)
	if !errors.Is(err, errNotFound) || err.Error() != "no such thing: agent "+host+": instance x" {
		t.Fatalf("a known code: %v", err)
	}
	_, err = c.Stream(context.Background(), http.MethodGet, "/v1/missing", nil)
	if !errors.Is(err, errNotFound) {
		t.Fatalf("a known code, streaming: %v", err)
	}
	if err := c.Do(context.Background(), http.MethodGet, "/v1/odd", nil, nil); !errors.Is(err, errUnavailable) {
		t.Fatalf("an unknown code: %v", err)
	}

	wrong := client(t, srv, ca, "not-it")
	for _, err := range []error{
		wrong.Do(context.Background(), http.MethodGet, "/v1/echo", nil, nil),
		func() error {
			_, err := wrong.Stream(context.Background(), http.MethodGet, "/v1/stream", nil)
			return err
		}(),
	} {
		if err == nil || err.Error() != "agent "+host+" rejected the credentials it was given (HTTP 401)" {
			t.Fatalf("wrong password: %v", err)
		}
		if strings.Contains(err.Error(), "not-it") {
			t.Fatal("the error shows the password")
		}
	}
}

func TestTheServerIsVerifiedAgainstTheCA(t *testing.T) {
	srv, _ := server(t)
	other, err := tlstest.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, srv, other.PEM, "s3cret")
	err = c.Do(context.Background(), http.MethodGet, "/v1/echo", nil, nil)
	if !errors.Is(err, errUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a server the CA did not sign: %v", err)
	}

	base, _ := url.Parse(srv.URL)
	if _, err := jsonhttp.New(jsonhttp.Config{Noun: "node", Base: base, CACert: "not PEM"}); err == nil ||
		err.Error() != "node ca_cert holds no PEM certificate" {
		t.Fatalf("a CA that is not PEM: %v", err)
	}
}
