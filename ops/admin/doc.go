// Package admin serves the hub's gRPC operator plane on one mutual-TLS
// listener: AdminService for operators, JoinService for nodes proving a join
// token, ClusterInternal for node-to-node write forwarding, plus the standard
// health and reflection services. Writes are proposed to Raft through the
// Store interface; a follower forwards them to the leader.
package admin
