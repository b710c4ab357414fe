package agentcmd

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/agentmetrics"
	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/internal/configfile"
	"github.com/cf-redis/redis-for-cf/src/internal/jsonhttp"
	"github.com/cf-redis/redis-for-cf/src/internal/metrics"
	"github.com/cf-redis/redis-for-cf/src/internal/serve"
)

// Agent is what a command runs and serves the agent API of:
// *sharedagent.Manager or *nodeagent.Node.
type Agent interface {
	agentapi.Service
	// Start recovers the agent's instances from its records.
	Start(ctx context.Context)
	// RunBackups runs the scheduled backups of the config until ctx ends.
	RunBackups(ctx context.Context) error
	// Shutdown stops the agent's redis-servers.
	Shutdown(ctx context.Context)
	// Metrics is the agent as its metrics see it.
	Metrics() agentmetrics.Source
}

// Command is the main of an agent's command.
type Command struct {
	// Name is the command's name, for its usage line.
	Name string
	// Config points at the config the -config file is loaded into.
	Config configfile.Validator
	// API says where the loaded config serves the agent API.
	API func() API
	// New makes the agent of the loaded config, and the attributes logged
	// with the address the API is served on.
	New func(logger *slog.Logger) (Agent, []any, error)
	// ServeDuringStart serves the API while the agent's Start recovers it;
	// otherwise recovery comes first, so no client sees an agent halfway
	// through it.
	ServeDuringStart bool
}

// Main loads the config, runs the agent and its scheduled backups, serves
// the API until SIGTERM or SIGINT, and shuts the agent down. It returns the
// exit status: 0 stopped, 1 the agent or its server failed, 2 bad usage or
// config.
func (c Command) Main() int {
	configPath := flag.String("config", "", "path of the agent's JSON config file")
	showVersion := buildinfo.Flag(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.Line(c.Name))
		return 0
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if *configPath == "" {
		fmt.Fprintf(os.Stderr, "usage: %s -config FILE\n", c.Name)
		return 2
	}
	logger.Info("starting", "version", buildinfo.Version())
	if err := configfile.Load(*configPath, c.Config); err != nil {
		logger.Error("cannot start", "error", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// go-redis logs every refused dial of the readiness probes that poll a
	// starting redis-server: debug noise, not warnings.
	redis.SetLogger(redisLogger{logger})
	agent, attrs, err := c.New(logger)
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	api := c.API()
	handler, reg, err := instrumented(agent, api, logger)
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	srv := serve.Server{Addr: api.Listen, Handler: handler, Logger: logger}
	if api.TLS != nil {
		srv.CertFile, srv.KeyFile = api.TLS.CertFile, api.TLS.KeyFile
	}
	// The metrics endpoint lives and dies with the API: either one failing
	// stops both. Its values are gathered in the background once Start
	// has recovered the agent (a node's first start ends with its first
	// reset); until then a scrape has only the API's and the process's.
	apiCtx, stopAPI := context.WithCancel(ctx)
	defer stopAPI()
	metricsDone := make(chan error, 1)
	var collector *agentmetrics.Collector
	if api.Metrics.Enabled() {
		collector = agentmetrics.New(agentmetrics.Config{Source: agent.Metrics(), Logger: logger})
		reg.MustRegister(collector)
	}
	go func() {
		err := api.Metrics.Serve(apiCtx, reg, logger, func(a net.Addr) { logger.Info("serving metrics", "address", a.String()) })
		if err != nil {
			stopAPI()
		}
		metricsDone <- err
	}()
	errc := make(chan error, 1)
	run := func() {
		errc <- srv.Run(apiCtx, func(a net.Addr) { logger.Info("serving", append([]any{"address", a.String()}, attrs...)...) })
	}
	if c.ServeDuringStart {
		go run()
	}
	agent.Start(apiCtx)
	if collector != nil {
		go collector.Run(apiCtx)
	}
	// Scheduled backups, when the config has them; the errand is the
	// on-demand path.
	go func() {
		if err := agent.RunBackups(apiCtx); err != nil {
			logger.Error("scheduled backups are off", "error", err)
		}
	}()
	if !c.ServeDuringStart {
		run()
	}

	err = <-errc
	stopAPI()
	mErr := <-metricsDone
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	agent.Shutdown(shutdownCtx)
	if mErr != nil {
		logger.Error("metrics server failed", "error", mErr)
		return 1
	}
	if err != nil {
		logger.Error("server failed", "error", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}

// API is where an agent serves the agent API: its address, the credentials
// the broker presents, and its certificate (nil: plain HTTP); and its
// metrics endpoint (off when Metrics.Listen is empty).
type API struct {
	Listen      string
	Credentials agentapi.Credentials
	TLS         *TLS
	Metrics     metrics.Config
}

// instrumented is the agent's API handler, its requests counted and timed
// by route, and the registry of the agent's metrics.
func instrumented(agent Agent, api API, logger *slog.Logger) (http.Handler, *prometheus.Registry, error) {
	reg := metrics.NewRegistry()
	requests := agentmetrics.NewAPIRequests()
	if err := requests.Register(reg); err != nil {
		return nil, nil, err
	}
	mux := agentapi.Routes(agent, logger)
	return requests.Instrument(jsonhttp.RequireBasicAuth(api.Credentials, mux), metrics.Route(mux)), reg, nil
}

// redisLogger hands go-redis's internal logs to slog at debug level.
type redisLogger struct{ logger *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.DebugContext(ctx, fmt.Sprintf(format, v...), "source", "go-redis")
}
