package sharedagent

// Abandon stops supervising every instance without stopping its process, as
// a crash of the agent would: the next Manager on the same directory must
// adopt them.
func (m *Manager) Abandon() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.servers {
		s.Abandon()
	}
}

// SkipPortCheck makes the agent trust its records alone when it picks a
// port, as if another process took the port right after the check.
func (m *Manager) SkipPortCheck() {
	m.available = func(int) bool { return true }
}

// CgroupDirs are the dirs of the agent's cgroup subtree; none without
// cgroups.
func (m *Manager) CgroupDirs() []string { return m.env.Cgroups.Dirs() }

// RotateLogs runs the log rotator's check now, as its minute timer would.
func (m *Manager) RotateLogs() { m.logs.Check() }
