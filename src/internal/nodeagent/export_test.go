package nodeagent

// Abandon stops supervising redis-server (and Sentinel) without stopping
// them, as a crash of the agent would: the next Node on the same directory
// must adopt them.
func (n *Node) Abandon() {
	n.srv.Abandon()
	if n.sentinel != nil {
		n.sentinel.sup.Detach()
	}
}

// RotateLogs runs the log rotator's check now, as its minute timer would.
func (n *Node) RotateLogs() { n.logs.Check() }
