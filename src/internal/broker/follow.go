package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
)

// ReplicaOfParam is the update parameter that makes an instance a read-only
// follower: the id of another instance of this broker, or a leader's host,
// port and credentials as an object; null promotes the instance back to a
// leader.
const ReplicaOfParam = "replica_of"

// replicaUserPrefix begins the name of every replication user the broker
// makes on a leader; no binding id may begin with it (checkBindingID).
const replicaUserPrefix = "replica-"

// follow is the leader an instance follows: another instance of this broker
// (Instance set; the broker made a replication-only user on it) or a leader
// elsewhere (Instance empty; the tenant gave its address and credentials).
type follow struct {
	Instance string `json:"instance,omitempty"`
	// Name is the host name a tenant gave for a leader elsewhere, shown in
	// GET instance; Leader.Host is then the address it resolved to and
	// passed the checks, which is what the agent connects to.
	Name string `json:"name,omitempty"`
	replication.Leader
}

// updateSchema is the catalog's update schema: the tenant parameters plus
// replica_of and restore.
func updateSchema() map[string]any {
	s := params.Schema()
	props := maps.Clone(s["properties"].(map[string]any))
	props[ReplicaOfParam] = map[string]any{
		"description": "Makes the instance a read-only follower of a leader: the id of another instance in the same space, " +
			"or {\"host\", \"port\", \"username\", \"password\"} of a Redis elsewhere; null makes it a leader again.",
		"oneOf": []any{
			map[string]any{"type": "string"},
			map[string]any{
				"type":                 "object",
				"required":             []string{"host", "port"},
				"additionalProperties": false,
				"properties": map[string]any{
					"host":     map[string]any{"type": "string"},
					"port":     map[string]any{"type": "integer", "minimum": 1, "maximum": 65535},
					"username": map[string]any{"type": "string"},
					"password": map[string]any{"type": "string"},
				},
			},
			map[string]any{"type": "null"},
		},
	}
	props[RestoreParam] = restoreSchema()
	s["properties"] = props
	return s
}

// replicaChange is what an update asked of replica_of.
type replicaChange struct {
	// set is true when the update named replica_of at all.
	set bool
	// leader is nil for a promotion.
	leader *follow
}

// splitReplicaOf takes replica_of out of raw update parameters and parses it;
// the rest is for params.Apply.
func splitReplicaOf(raw json.RawMessage) (json.RawMessage, replicaChange, error) {
	obj, err := params.Object(raw)
	if err != nil {
		return nil, replicaChange{}, err
	}
	v, ok := obj[ReplicaOfParam]
	if !ok {
		return raw, replicaChange{}, nil
	}
	delete(obj, ReplicaOfParam)
	rest, err := json.Marshal(obj)
	if err != nil {
		return nil, replicaChange{}, err
	}
	change := replicaChange{set: true}
	trimmed := strings.TrimSpace(string(v))
	switch {
	case trimmed == "null":
	case strings.HasPrefix(trimmed, `"`):
		var id string
		if json.Unmarshal(v, &id) != nil || id == "" {
			return nil, change, fmt.Errorf("%w: parameter %q must name an instance", params.ErrInvalid, ReplicaOfParam)
		}
		change.leader = &follow{Instance: id}
	default:
		var l replication.Leader
		d := json.NewDecoder(strings.NewReader(trimmed))
		d.DisallowUnknownFields()
		if err := d.Decode(&l); err != nil {
			return nil, change, fmt.Errorf("%w: parameter %q must be an instance id, an object with host, port, username and password, or null", params.ErrInvalid, ReplicaOfParam)
		}
		if l.TLS {
			// Its certificate would have to chain to the platform's CA.
			return nil, change, fmt.Errorf("%w: parameter %q: tls is not offered for leaders outside this service", params.ErrInvalid, ReplicaOfParam)
		}
		if err := l.Check(); err != nil {
			return nil, change, fmt.Errorf("%w: parameter %q: %v", params.ErrInvalid, ReplicaOfParam, err)
		}
		change.leader = &follow{Leader: l}
	}
	return rest, change, nil
}

// changeReplication applies a replica_of change to inst (whose lock the
// caller holds). The follower's record stores the replication user's
// credentials before any agent is asked, so a retry reuses them.
func (b *Broker) changeReplication(ctx context.Context, inst *instance, change replicaChange) error {
	v, err := b.vmOf(inst)
	if err != nil {
		return err
	}
	old := inst.ReplicaOf
	next := change.leader
	if next != nil && next.Instance != "" {
		if old != nil && old.Instance == next.Instance {
			next = old // already following it: apply again with the same user
		} else if next, err = b.internalLeader(inst, next.Instance); err != nil {
			return err
		}
		leader, err := b.find(next.Instance)
		if err != nil {
			return err
		}
		lv, err := b.vmOf(leader)
		if err != nil {
			return err
		}
		if err := b.transport(ctx, inst, v, leader, lv, next); err != nil {
			return err
		}
		if err := b.setFollow(inst.ID, next); err != nil {
			return err
		}
		if err := lv.bindReplicator(ctx, leader.ID, next.Username, next.Password); err != nil {
			return fmt.Errorf("creating the replication user on leader %s: %w", leader.ID, err)
		}
	} else if err := b.setFollow(inst.ID, next); err != nil {
		return err
	}
	var leader *replication.Leader
	if next != nil {
		leader = &next.Leader
	}
	if err := v.setReplication(ctx, inst.ID, leader); err != nil {
		return fmt.Errorf("changing replication of instance %s on %s: %w", inst.ID, v.where(), err)
	}
	if old != nil && old.Instance != "" && (next == nil || next.Instance != old.Instance) {
		b.dropReplicator(ctx, old)
	}
	return nil
}

// transport makes an instance follow its leader (an instance of this
// service) over TLS when both serve TLS, to the leader's TLS port; over
// plaintext otherwise, which a TLS-only leader refuses. It asks both agents
// for their TLS ports, so a VM that turned TLS on since is used.
func (b *Broker) transport(ctx context.Context, follower *instance, fv vm, leader *instance, lv vm, f *follow) error {
	leaderTLS, err := lv.tlsPort(ctx, leader.ID)
	if err != nil {
		return fmt.Errorf("reading leader %s's TLS port on %s: %w", leader.ID, lv.where(), err)
	}
	followerTLS, err := fv.tlsPort(ctx, follower.ID)
	if err != nil {
		return fmt.Errorf("reading instance %s's TLS port on %s: %w", follower.ID, fv.where(), err)
	}
	switch {
	case leaderTLS != 0 && followerTLS != 0:
		f.Host, f.Port, f.TLS = leader.Host, leaderTLS, true
	case leader.Parameters.TLSOnly:
		return badRequest("parameter %q: instance %s is TLS-only, and this instance's VM serves no TLS to replicate with", ReplicaOfParam, leader.ID)
	default:
		f.Host, f.Port, f.TLS = leader.Host, leader.Port, false
	}
	return nil
}

// plainFollowers refuses to make instance id TLS-only while instances
// follow it over plaintext, which would cut them off.
func (b *Broker) plainFollowers(id string) error {
	var plain []string
	_ = b.state.View(func(s state) {
		for _, r := range s.Instances.All() {
			if r.ReplicaOf != nil && r.ReplicaOf.Instance == id && !r.ReplicaOf.TLS {
				plain = append(plain, r.ID)
			}
		}
	})
	if len(plain) == 0 {
		return nil
	}
	slices.Sort(plain)
	return badRequest("parameter %q: instances %s follow this one over plaintext, which a TLS-only instance does not serve; "+
		"update each with replica_of this instance again (it then replicates over TLS where its VM serves TLS), then retry", tlsOnlyParam, strings.Join(plain, ", "))
}

// internalLeader checks that leaderID can lead follower and returns the
// follow record with a new replication user.
func (b *Broker) internalLeader(follower *instance, leaderID string) (*follow, error) {
	var out *follow
	var reason error
	err := b.state.View(func(s state) {
		leader := s.Instances.At(leaderID)
		switch {
		case leaderID == follower.ID:
			reason = errors.New("an instance cannot follow itself")
		case leader == nil || leader.State != stateReady:
			reason = fmt.Errorf("no instance %s of this service is ready to lead", leaderID)
		case leader.HA != nil:
			// Its leader moves at a failover, and a follower outside the
			// group would go on replicating the old one.
			reason = fmt.Errorf("instance %s is an HA group, whose leader changes at a failover: it cannot lead instances outside its group", leaderID)
		case leader.space() == "":
			reason = fmt.Errorf("instance %s has no recorded space (it was made before the broker required one), so it can lead no instance: a leader must be in the follower's space", leaderID)
		case follower.space() == "":
			reason = fmt.Errorf("instance %s has no recorded space (it was made before the broker required one), so it can follow no instance: a leader must be in the follower's space", follower.ID)
		case leader.space() != follower.space():
			// Following an instance copies its data: only one the tenant
			// could bind to anyway may lead.
			reason = fmt.Errorf("instance %s is in another space; a leader must be in the follower's space", leaderID)
		default:
			for l := leader; l.ReplicaOf != nil && l.ReplicaOf.Instance != ""; {
				if l.ReplicaOf.Instance == follower.ID {
					reason = fmt.Errorf("instance %s already follows %s, directly or through others: following it would make a loop", leaderID, follower.ID)
					break
				}
				next := s.Instances.At(l.ReplicaOf.Instance)
				if next == nil {
					break
				}
				l = next
			}
			out = &follow{Instance: leaderID, Leader: replication.Leader{
				Host: leader.Host, Port: leader.Port,
				Username: replicaUserPrefix + strings.ToLower(secret.New()[:16]), Password: secret.New(),
			}}
		}
	})
	if err != nil {
		return nil, err
	}
	if reason != nil {
		return nil, &userError{status: http.StatusBadRequest, msg: fmt.Sprintf("parameter %q: %v", ReplicaOfParam, reason)}
	}
	return out, nil
}

func (b *Broker) setFollow(id string, f *follow) error {
	return b.state.Update(func(s *state) error {
		if r := s.Instances.Edit(id); r != nil {
			r.ReplicaOf = f
		}
		return nil
	})
}

// dropReplicator removes a former follower's replication user from its
// leader; a failure is logged, as the follower no longer uses it.
func (b *Broker) dropReplicator(ctx context.Context, f *follow) {
	leader, err := b.find(f.Instance)
	if err != nil || leader == nil {
		return
	}
	lv, err := b.vmOf(leader)
	if err == nil {
		err = lv.unbind(ctx, leader.ID, f.Username)
	}
	if err != nil {
		b.logger.Error("removing a replication user from its leader failed", "leader", leader.ID, "error", err)
	}
}

// followersOf lists the instances following id.
func (b *Broker) followersOf(id string) []string {
	var out []string
	_ = b.state.View(func(s state) {
		for _, r := range s.Instances.All() {
			if r.ReplicaOf != nil && r.ReplicaOf.Instance == id {
				out = append(out, r.ID)
			}
		}
	})
	return out
}
