package instance

import (
	"context"
	"strings"

	"github.com/cf-redis/redis-for-cf/src/internal/replication"
)

// Info runs INFO with the sections given on the agent's admin connection
// and returns the fields of all of them in one map ("used_memory": "1024"):
// their names do not repeat across sections. ctx bounds the wait, also on
// a server that stopped answering.
func (s *Server) Info(ctx context.Context, sections ...string) (map[string]string, error) {
	args := make([]any, 0, 1+len(sections))
	args = append(args, "INFO")
	for _, sec := range sections {
		args = append(args, sec)
	}
	text, err := s.Admin().Do(ctx, args...).Text()
	if err != nil {
		return nil, err
	}
	fields := make(map[string]string, 128)
	for line := range strings.SplitSeq(text, "\r\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
	return fields, nil
}

// FollowerLag is how many bytes of its leader's stream a follower has not
// applied yet, as GET instance reports it (replication.Read, which asks
// the leader for its offset): info is the server's INFO replication
// fields. It is -1 when the leader did not answer, and 0 for a leader.
func (s *Server) FollowerLag(ctx context.Context, info map[string]string) int64 {
	if info["role"] != "slave" {
		return 0
	}
	return replication.Read(ctx, info, s.current().following()).LagBytes
}

// Restarts counts the times the supervisor replaced the server's process
// after it died unexpectedly, since it began supervising it.
func (s *Server) Restarts() int { return s.sup.Status().Restarts }
