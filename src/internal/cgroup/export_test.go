package cgroup

// V2Group is a Group in the v2 cgroup dir, for tests on machines whose
// unified hierarchy has no controllers: placement and kill still work there.
func V2Group(dir string) *Group { return &Group{v2: true, id: dir, dirs: []string{dir}} }

// OpenAt is Open with the cgroup mounts under root and the process's files
// under proc.
var OpenAt = open

// SpareScript is what a spare's shell runs.
const SpareScript = spareScript
