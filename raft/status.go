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
	Servers      []Server
}

// Server is one member of the Raft configuration.
type Server struct {
	ID       string
	Address  string
	Suffrage string // "voter", "nonvoter", "staging"
}
