package raft

// Status is a point-in-time view of this node's Raft state.
type Status struct {
	NodeID       string
	State        string // "Leader", "Follower", "Candidate", "Shutdown"
	LeaderID     string
	LeaderAddr   string
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	LastIndex    uint64
	// StateIndex is the index of the last command the FSM applied (the
	// State's Index); RestoreTarget is the last command index in the log
	// when the node opened. Restored is set once StateIndex reached it (see
	// Node.WaitRestored): before that the node serves nothing.
	StateIndex    uint64
	RestoreTarget uint64
	Restored      bool
	// Removed is set once this node, having been a member, is no longer in
	// the Raft configuration: its state is frozen.
	Removed bool
	Servers []Server
}

// Server is one member of the Raft configuration.
type Server struct {
	ID       string
	Address  string
	Suffrage string // "voter", "nonvoter", "staging"
}

// Restoring reports whether the node is still re-applying the log it had
// at start (and so serves nothing yet).
func (s Status) Restoring() bool { return !s.Restored && s.StateIndex < s.RestoreTarget }
