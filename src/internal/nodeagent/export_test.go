package nodeagent

// Abandon stops supervising redis-server without stopping it, as a crash of
// the agent would: the next Node on the same directory must adopt it.
func (n *Node) Abandon() { n.srv.Abandon() }

// RotateLogs runs the log rotator's check now, as its minute timer would.
func (n *Node) RotateLogs() { n.logs.Check() }
