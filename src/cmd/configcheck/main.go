// Command configcheck loads a config file as one of the project's programs
// does at start (configfile.Load into its Config, which validates it and
// fills in defaults; for the broker, also the agent and node clients its
// main builds) and prints the config as the program then sees it, as JSON.
//
//	configcheck redis-broker|redis-shared-agent|redis-node-agent|redis-backup|smoke-tests|broker-registrar|broker-deregistrar CONFIG_FILE
//
// The release tests in spec/ run it on the configs the job templates render:
// Go's internal rule keeps spec/, outside src/, from importing the config
// packages itself. It is a test tool, not part of the release (the
// redis-for-cf package builds src/cmd only). Exit status 1 means the program
// would refuse the config; the reason is on stderr.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/broker"
	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/internal/ccapi"
	"github.com/cf-redis/redis-for-cf/src/internal/configfile"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/registrar"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
	"github.com/cf-redis/redis-for-cf/src/internal/smoke"
)

func main() { os.Exit(run()) }

func run() int {
	if len(os.Args) == 2 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		fmt.Println(buildinfo.Line("configcheck"))
		return 0
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: configcheck redis-broker|redis-shared-agent|redis-node-agent|redis-backup|smoke-tests|broker-registrar|broker-deregistrar CONFIG_FILE")
		return 2
	}
	cfg, err := load(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func load(program, path string) (any, error) {
	switch program {
	case "redis-broker":
		var c broker.Config
		if err := configfile.Load(path, &c); err != nil {
			return nil, err
		}
		if err := brokerClients(&c); err != nil {
			return &c, err
		}
		if c.Backups != nil {
			_, err := c.Backups.Open()
			return &c, err
		}
		return &c, nil
	case "redis-shared-agent":
		var c sharedagent.Config
		if err := configfile.Load(path, &c); err != nil {
			return nil, err
		}
		return &c, openSchedule(c.Backups)
	case "redis-node-agent":
		var c nodeagent.Config
		if err := configfile.Load(path, &c); err != nil {
			return nil, err
		}
		return &c, openSchedule(c.Backups)
	case "redis-backup":
		var c backup.ErrandConfig
		if err := configfile.Load(path, &c); err != nil {
			return nil, err
		}
		return &c, backupClients(&c)
	case "smoke-tests":
		var c smoke.Config
		return &c, configfile.Load(path, &c)
	case "broker-registrar":
		var c registrar.Config
		if err := configfile.Load(path, &c); err != nil {
			return nil, err
		}
		_, err := ccapi.New(c.CloudController)
		return &c, err
	case "broker-deregistrar":
		var c registrar.DeregisterConfig
		if err := configfile.Load(path, &c); err != nil {
			return nil, err
		}
		_, err := ccapi.New(c.CloudController)
		return &c, err
	}
	return nil, fmt.Errorf("unknown program %q", program)
}

// openSchedule opens an agent's backup destination, if it has a schedule,
// as the agent does at start (no request is sent).
func openSchedule(s *backup.Schedule) error {
	if s == nil {
		return nil
	}
	_, err := s.Destination.Open()
	return err
}

// backupClients builds the errand's agent and node clients and opens its
// destination (no request is sent), as redis-backup does before it backs
// up.
func backupClients(c *backup.ErrandConfig) error {
	_, err := c.Sources()
	if err != nil {
		return err
	}
	_, err = c.Destination.Open()
	return err
}

// brokerClients builds the broker's agent and node clients, which check
// URLs and CA certificates, as redis-broker's main does before it serves.
func brokerClients(c *broker.Config) error {
	_, err := broker.NewClients(*c)
	return err
}
