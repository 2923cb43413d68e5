package admin

import (
	"context"

	"clearhub/proto/hubv1"
)

// Propose applies cmd through the cluster the way an admin write does:
// validated locally, forwarded to the leader from a follower, and waited
// for until this node has applied it. The daemon uses it for its own
// records (node addresses and audit key).
func (s *Server) Propose(ctx context.Context, cmd *hubv1.Command) (uint64, error) {
	return s.propose(ctx, cmd)
}
