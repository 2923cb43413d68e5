// Package raft replicates the hub's cluster state (member networks, peering
// policy, nodes) with hashicorp/raft and exposes it to the SIP hot path as an
// immutable snapshot that is swapped atomically on every apply.
package raft
