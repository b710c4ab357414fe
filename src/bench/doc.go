// Package bench measures the shared-vm plan on this machine against a bare
// redis-server: how long a tenant waits from the provision request to the
// first answered PING, one at a time and twenty at once; what an instance
// costs in memory, in the agent and in its redis-server; and whether an agent
// holds hundreds of instances. For the dedicated-vm plan it measures the
// claim (provision to first PING, against a bare redis-server restart) and
// the reset of a node holding 1 GB (against deleting 1 GB of files).
//
// Everything lives in its _test.go files as go test benchmarks that start the
// real broker and agent (package systemtest). They run only with -bench;
// scripts/bench runs them and prints a table. Targets are reported beside the
// figures, never asserted: a slow machine must not fail a build.
package bench
