package broker

import (
	"cmp"
	"encoding/json"
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
	return b.state.Update(func(*state) error { return nil })
}
