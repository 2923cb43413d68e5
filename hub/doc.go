// Package hub is the SIP federation plane of a clearing-house node: it
// listens for member networks on UDP/TCP (lab) and mutual-TLS (production),
// attributes every request to a member network from the connection, enforces
// anti-spoofing and peering policy, audits every request and final response
// in the ledger before acting on it, and proxies the traffic statefully
// (RFC 3261 section 16) with a Record-Route that lets it police in-dialog
// requests without per-dialog state. See DESIGN.md beside this file.
package hub
