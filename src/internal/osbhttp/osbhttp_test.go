package osbhttp_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/broker"
	"github.com/cf-redis/redis-for-cf/src/internal/osbhttp"
)

// startBroker serves the real broker in-process; its one agent does not
// answer, so it knows no instance.
func startBroker(t *testing.T) string {
	t.Helper()
	cfg := broker.Config{
		Listen:      "127.0.0.1:0",
		Credentials: agentapi.Credentials{Username: "cc", Password: "broker-secret"},
		StateDir:    t.TempDir(),
		Catalog:     broker.Catalog{ServiceID: "svc-1"},
		SharedVM: &broker.SharedVMPlan{PlanID: "plan-1", MaxInstances: 1, MaxMemoryMB: 16,
			Agents: []broker.AgentConfig{{ID: "a", ClientConfig: agentapi.ClientConfig{URL: "http://127.0.0.1:1", Credentials: agentapi.Credentials{Username: "u", Password: "p"}}}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	agent, err := agentapi.NewClient(cfg.SharedVM.Agents[0].ClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(cfg, map[string]broker.Agent{"a": agent}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestRequestsCarryTheCredentialsAndVersion(t *testing.T) {
	url := startBroker(t)
	ctx := context.Background()
	c := osbhttp.Client{URL: url + "/", Username: "cc", Password: "broker-secret"}
	r, err := c.Do(ctx, http.MethodGet, "/v2/catalog", nil, nil)
	// brokerapi answers 412 without the version header, 401 without the
	// credentials.
	if err != nil || r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"plan-1"`) {
		t.Fatalf("%d %s, %v", r.Status, r.Body, err)
	}

	wrong := osbhttp.Client{URL: url, Username: "cc", Password: "not-the-password"}
	r, err = wrong.Do(ctx, http.MethodGet, "/v2/catalog", nil, nil)
	if err != nil || r.Status != http.StatusUnauthorized {
		t.Fatalf("%d, %v", r.Status, err)
	}
	msg := osbhttp.Unexpected(http.MethodGet, "/v2/catalog", r).Error()
	// The broker's 401 carries an OSB error body, whose words are shown.
	if msg != "the broker answered GET /v2/catalog with 401 Unauthorized (unauthorized): missing or wrong credentials" {
		t.Fatalf("%q", msg)
	}
}

func TestAnswersAndFailuresAreWordedWithoutTheirBodies(t *testing.T) {
	url := startBroker(t)
	ctx := context.Background()
	c := osbhttp.Client{URL: url, Username: "cc", Password: "broker-secret"}

	_, err := c.Bind(ctx, osbhttp.BindRequest{InstanceID: "no-such-instance", BindingID: "b", ServiceID: "svc-1", PlanID: "plan-1", AppGUID: "app"})
	var oe *osbhttp.Error
	if !errors.As(err, &oe) || oe.Method != http.MethodPut || oe.Path != "/v2/service_instances/no-such-instance/service_bindings/b" || oe.Status < 400 || oe.Status >= 500 {
		t.Fatalf("bind to an unknown instance: %#v", err)
	}

	// A delete's poll takes 410 as the end; any other poll does not.
	path := osbhttp.InstancePath("no-such-instance")
	if err := c.WaitLastOperation(ctx, path, "svc-1", "plan-1", "", true); err != nil {
		t.Fatalf("deleting: %v", err)
	}
	err = c.WaitLastOperation(ctx, path, "svc-1", "plan-1", "", false)
	if !errors.As(err, &oe) || oe.Status != http.StatusGone {
		t.Fatalf("creating: %v", err)
	}

	down := osbhttp.Client{URL: "http://127.0.0.1:1", HTTP: &http.Client{Timeout: 5 * time.Second}}
	if _, err := down.Do(ctx, http.MethodGet, "/v2/catalog", nil, nil); err == nil || !strings.HasPrefix(err.Error(), "cannot reach the broker at http://127.0.0.1:1: ") {
		t.Fatalf("%v", err)
	}
}
