package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/ids"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

// ErrandConfig is the config file of redis-backup, the backup errand: the
// agents of the VM it runs on (a shared VM's agent, or a dedicated node's),
// where backups go and how many are kept.
type ErrandConfig struct {
	// Agents are shared-VM agents whose instances are all backed up.
	Agents []AgentSource `json:"agents,omitempty"`
	// Nodes are dedicated nodes; the instance holding each is backed up.
	Nodes       []NodeSource `json:"nodes,omitempty"`
	Destination Destination  `json:"destination"`
	Retention   Retention    `json:"retention"`
	// SnapshotTimeoutSeconds bounds each instance's snapshot; zero means an
	// hour.
	SnapshotTimeoutSeconds int `json:"snapshot_timeout_seconds,omitempty"`
}

// AgentSource is how the errand reaches a shared-VM agent.
type AgentSource struct {
	ID string `json:"id"`
	agentapi.ClientConfig
}

// NodeSource is how the errand reaches a dedicated node's agent: the same
// API, always over HTTPS with a CA.
type NodeSource struct {
	ID string `json:"id"`
	agentapi.ClientConfig
}

// Validate checks the config and fills in defaults, naming the field at
// fault.
func (c *ErrandConfig) Validate() error {
	var errs []error
	if len(c.Agents) == 0 && len(c.Nodes) == 0 {
		errs = append(errs, errors.New("agents or nodes must name at least one agent to back up"))
	}
	for i, a := range c.Agents {
		if !ids.Valid(a.ID) {
			errs = append(errs, fmt.Errorf("agents[%d].id must be %s", i, ids.Rule))
		}
		if a.URL == "" || a.Username == "" || a.Password == "" {
			errs = append(errs, fmt.Errorf("agents[%d]: url, username and password are required", i))
		}
	}
	for i, n := range c.Nodes {
		if !ids.Valid(n.ID) {
			errs = append(errs, fmt.Errorf("nodes[%d].id must be %s", i, ids.Rule))
		}
		if !strings.HasPrefix(n.URL, "https://") || n.Username == "" || n.Password == "" || n.CACert == "" {
			errs = append(errs, fmt.Errorf("nodes[%d]: an https url, username, password and ca_cert are required", i))
		}
	}
	errs = append(errs, c.Destination.Validate("destination"), c.Retention.Validate("retention"))
	if c.SnapshotTimeoutSeconds < 0 {
		errs = append(errs, errors.New("snapshot_timeout_seconds must not be negative"))
	}
	return errors.Join(errs...)
}

// snapshotTimeout is the snapshot timeout asked of the agents.
func (c *ErrandConfig) snapshotTimeout() time.Duration {
	return time.Duration(c.SnapshotTimeoutSeconds) * time.Second
}

// Target is where an instance lives, for a restore.
type Target struct {
	// Name says where, for messages: "agent shared-0".
	Name string
	// Restore sends an archive to replace the instance's data.
	Restore func(ctx context.Context, req agentapi.RestoreRequest, archive io.Reader) (agentapi.RestoreResult, error)
}

// agent is one agent or node of the config and its client.
type agent struct {
	name   string
	client *agentapi.Client
}

// clients connects the config's agents and nodes, agents first.
func (c *ErrandConfig) clients() ([]agent, error) {
	var out []agent
	for _, a := range c.Agents {
		client, err := agentapi.NewClient(a.ClientConfig)
		if err != nil {
			return nil, fmt.Errorf("agents %s: %w", a.ID, err)
		}
		out = append(out, agent{name: "agent " + a.ID, client: client})
	}
	for _, n := range c.Nodes {
		client, err := agentapi.NewNodeClient(n.ClientConfig)
		if err != nil {
			return nil, fmt.Errorf("nodes %s: %w", n.ID, err)
		}
		out = append(out, agent{name: "node " + n.ID, client: client})
	}
	return out, nil
}

// Sources returns the config's agents and nodes as backup sources.
func (c *ErrandConfig) Sources() ([]Source, error) {
	agents, err := c.clients()
	if err != nil {
		return nil, err
	}
	var out []Source
	for _, a := range agents {
		out = append(out, SourceOf(a.name, a.client, c.snapshotTimeout()))
	}
	return out, nil
}

// Lister lists an agent's instances: a client of its API or the agent
// itself.
type Lister interface {
	List(ctx context.Context) ([]agentapi.Instance, error)
}

// instanceIDs are the ids of the instances of l but those being deleted
// (a node lists only the instance holding it), whichever member of an HA
// group backs them up.
func instanceIDs(ctx context.Context, l Lister) ([]string, error) {
	list, err := l.List(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, inst := range list {
		if inst.State != agentapi.StateDeleting {
			ids = append(ids, inst.ID)
		}
	}
	return ids, nil
}

// SourceOf backs up every instance of an agent or node through its API.
// The archive streams while the snapshot is written (a late head, which
// the store writes over its start: store.LateHead).
func SourceOf(name string, c *agentapi.Client, timeout time.Duration) Source {
	return Source{
		Name:      name,
		Instances: c.List,
		Snapshot: func(ctx context.Context, id string) (io.ReadCloser, error) {
			return c.Snapshot(ctx, id, agentapi.SnapshotRequest{Timeout: timeout, LateHead: true})
		},
	}
}

// Target finds the agent or node holding instance id. The three nodes of
// an HA group all hold it: the target is the one whose server leads, as a
// restored follower would be resynced from its leader.
func (c *ErrandConfig) Target(ctx context.Context, id string) (Target, error) {
	agents, err := c.clients()
	if err != nil {
		return Target{}, err
	}
	var errs []error
	var holders []agent
	var leaders []agent
	for _, a := range agents {
		inst, err := a.client.Get(ctx, id)
		if err == nil {
			holders = append(holders, a)
			if inst.Live != nil && inst.Live.Replication.Role == replication.RoleLeader {
				leaders = append(leaders, a)
			}
			continue
		}
		// A node held by another instance answers ErrConflict: not here.
		if !errors.Is(err, agentapi.ErrNotFound) && !errors.Is(err, agentapi.ErrConflict) {
			errs = append(errs, fmt.Errorf("%s: %w", a.name, err))
		}
	}
	target := func(a agent) Target {
		return Target{Name: a.name, Restore: func(ctx context.Context, req agentapi.RestoreRequest, r io.Reader) (agentapi.RestoreResult, error) {
			return a.client.Restore(ctx, id, req, r)
		}}
	}
	switch {
	case len(holders) == 1:
		return target(holders[0]), nil
	case len(holders) > 1 && len(leaders) == 1:
		return target(leaders[0]), nil
	case len(holders) > 1:
		names := make([]string, len(holders))
		for i, h := range holders {
			names[i] = h.name
		}
		return Target{}, fmt.Errorf("instance %s is on %s (an HA group), and not exactly one of them leads now: try again once Sentinel has a leader", id, strings.Join(names, ", "))
	}
	return Target{}, errors.Join(append([]error{fmt.Errorf("no agent or node of this config holds instance %s", id)}, errs...)...)
}

// OpenBackup opens the backup that from names for a restore of instance id:
// a local file, or a backup in the destination (see Resolve). A backup of
// another instance is refused unless allowOther. It returns the backup and
// where it is, for messages.
func (c *ErrandConfig) OpenBackup(ctx context.Context, id, from string, allowOther bool) (io.ReadCloser, string, error) {
	if info, err := os.Stat(from); err == nil && info.Mode().IsRegular() {
		f, err := os.Open(from)
		return f, from, err
	}
	st, err := c.Destination.Open()
	if err != nil {
		return nil, "", err
	}
	name := from
	b, err := Resolve(ctx, st, c.Destination.PathPrefix, id, from)
	switch {
	case err == nil:
		name = b.Name
	case errors.Is(err, ErrOtherInstance) && allowOther:
		// An operator moving another instance's backup, by its full name.
	case errors.Is(err, ErrOtherInstance):
		return nil, "", fmt.Errorf("%w (pass --allow-other-instance to restore another instance's backup)", err)
	default:
		return nil, "", err
	}
	r, err := st.Get(ctx, name)
	if err != nil {
		return nil, "", err
	}
	return r, st.Where(name), nil
}
