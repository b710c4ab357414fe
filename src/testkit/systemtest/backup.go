package systemtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
)

// ErrandConfig returns the config of a backup errand that backs up every
// agent and node of the system to dest, as the BOSH job renders it on each
// VM (here one errand sees them all).
func (s *System) ErrandConfig(dest backup.Destination) (backup.ErrandConfig, error) {
	cfg := backup.ErrandConfig{Destination: dest}
	for i, p := range s.Agents {
		var ac sharedagent.Config
		if err := readJSON(p.Config, &ac); err != nil {
			return cfg, err
		}
		cfg.Agents = append(cfg.Agents, backup.AgentSource{ID: fmt.Sprintf("shared-%d", i), ClientConfig: agentapi.ClientConfig{
			URL: "http://" + ac.Listen, Credentials: ac.Credentials,
		}})
	}
	for _, p := range s.Nodes {
		var nc nodeagent.Config
		if err := readJSON(p.Config, &nc); err != nil {
			return cfg, err
		}
		cfg.Nodes = append(cfg.Nodes, backup.NodeSource{ID: nc.NodeID, ClientConfig: agentapi.ClientConfig{
			URL: "https://" + nc.Listen, Credentials: nc.Credentials, CACert: s.CA.PEM,
		}})
	}
	return cfg, nil
}

// Instance is where an instance's redis-server runs and how the agent
// reaches it as admin, read from the agents' state files: for tests that
// must do what only the platform may (slow a snapshot down, say).
type Instance struct {
	Addr          string
	AdminPassword string
	// Dir is the instance's folder (the data is Dir/data).
	Dir string
	// Pid is redis-server's pid from its pid file; 0 when unknown.
	Pid int
}

// Admin returns an admin client of the instance.
func (i Instance) Admin() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: i.Addr, Username: instance.AdminUser, Password: i.AdminPassword,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1, ReadTimeout: 10 * time.Second,
	})
}

// FindInstance finds instance id on the system's agents and nodes.
func (s *System) FindInstance(id string) (Instance, error) {
	for _, p := range s.Agents {
		var ac sharedagent.Config
		if err := readJSON(p.Config, &ac); err != nil {
			return Instance{}, err
		}
		var st struct {
			Instances map[string]struct {
				Port          int    `json:"port"`
				AdminPassword string `json:"admin_password"`
			} `json:"instances"`
		}
		if err := readJSON(filepath.Join(ac.DataDir, "state.json"), &st); err != nil {
			return Instance{}, err
		}
		if r, ok := st.Instances[id]; ok {
			dir := filepath.Join(ac.DataDir, "instances", id)
			return Instance{Addr: net.JoinHostPort(cmp.Or(ac.Bind, ac.Host), strconv.Itoa(r.Port)), AdminPassword: r.AdminPassword, Dir: dir, Pid: pidIn(filepath.Join(dir, "redis.pid"))}, nil
		}
	}
	for _, p := range s.Nodes {
		var nc nodeagent.Config
		if err := readJSON(p.Config, &nc); err != nil {
			return Instance{}, err
		}
		var st struct {
			InstanceID    string `json:"instance_id"`
			State         string `json:"state"`
			AdminPassword string `json:"admin_password"`
		}
		if err := readJSON(filepath.Join(nc.DataDir, "state.json"), &st); err != nil {
			return Instance{}, err
		}
		if st.InstanceID == id && st.State == agentapi.NodeClaimed {
			return Instance{Addr: net.JoinHostPort(cmp.Or(nc.Bind, nc.Host), strconv.Itoa(nc.Port)), AdminPassword: st.AdminPassword, Dir: nc.DataDir, Pid: pidIn(filepath.Join(nc.DataDir, "redis.pid"))}, nil
		}
	}
	return Instance{}, fmt.Errorf("no agent or node of the system holds instance %s", id)
}

func pidIn(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// WriteJSON writes v as an indented JSON file readable by its owner only,
// as the system's configs are.
func WriteJSON(path string, v any) error { return writeJSON(path, v) }
