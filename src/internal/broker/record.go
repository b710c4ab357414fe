package broker

import (
	"cmp"
	"encoding/json"
	"time"
)

// UnmarshalJSON reads an instance record, including one written before
// records named their VM in one field: those named a shared VM's agent in
// "agent" and a dedicated node in "node", never both.
func (i *instance) UnmarshalJSON(data []byte) error {
	type plain instance // without this method
	var v struct {
		plain
		Agent string `json:"agent"`
		Node  string `json:"node"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*i = instance(v.plain)
	i.VM = cmp.Or(i.VM, v.Agent, v.Node)
	return nil
}

// migrate writes the state back in the current form, so a state file of an
// earlier version is converted once, at start, rather than at its next
// change.
func (b *Broker) migrate() error {
	return b.state.Update(func(s *state) error {
		moveCAs(s)
		return nil
	})
}

// moveCAs moves the CA that bindings of earlier versions each kept to the
// one CA of their VM, the newest binding's where they differ (a CA
// rotated since).
func moveCAs(s *state) {
	newest := map[string]time.Time{}
	for _, id := range s.Instances.Keys() {
		if !keepsOldCA(s.Instances.At(id)) {
			continue // a record is copied only to change it
		}
		inst := s.Instances.Edit(id)
		for _, bnd := range inst.Bindings {
			if bnd.OldTLSCA == "" {
				continue
			}
			if _, kept := s.RedisCAs[inst.VM]; inst.VM != "" && (!kept || bnd.CreatedAt.After(newest[inst.VM])) {
				s.keepCA(inst.VM, bnd.OldTLSCA)
				newest[inst.VM] = bnd.CreatedAt
			}
			bnd.OldTLSCA = ""
		}
	}
}

// keepsOldCA reports whether a binding of inst still keeps its own CA.
func keepsOldCA(inst *instance) bool {
	for _, bnd := range inst.Bindings {
		if bnd.OldTLSCA != "" {
			return true
		}
	}
	return false
}
