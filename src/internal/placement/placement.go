// Package placement decides which shared VM gets a new instance.
package placement

import (
	"cmp"
	"slices"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

// Candidate is an agent and what it reported of its capacity.
type Candidate struct {
	AgentID  string
	Capacity agentapi.Capacity
}

// Order returns the ids of the candidates that can take an instance of
// maxmemory bytes, the one with the most free memory first (ties broken by
// fewer instances, then by id, so the order is stable). The broker tries them
// in turn: another broker request may fill an agent between the capacity
// query and the create.
func Order(candidates []Candidate, maxmemory int64) []string {
	fit := slices.DeleteFunc(slices.Clone(candidates), func(c Candidate) bool {
		return !c.Capacity.Fits(maxmemory)
	})
	slices.SortFunc(fit, func(a, b Candidate) int {
		return cmp.Or(
			cmp.Compare(free(b), free(a)),
			cmp.Compare(a.Capacity.Instances, b.Capacity.Instances),
			cmp.Compare(a.AgentID, b.AgentID),
		)
	})
	ids := make([]string, len(fit))
	for i, c := range fit {
		ids[i] = c.AgentID
	}
	return ids
}

func free(c Candidate) int64 { return c.Capacity.MemoryBytes - c.Capacity.AllocatedBytes }
