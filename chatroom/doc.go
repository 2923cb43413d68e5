// Package chatroom hosts the hub's N-way chat rooms (issue 11): pager-mode
// and RFC 7701 session-mode rooms addressed as sip:NAME@rooms.domain whose settings, participants,
// bans, message order and recent history live in the Raft state
// (raft/rooms.go), reachable from every member network's users.
//
// The proxy core attributes, anti-spoof checks and audits each request and
// then calls Service.Serve; the service never imports the core. What it
// needs it declares here (Store: read and change the replicated state;
// Sender: send a request toward a member network; Auditor: the ledger;
// Deferrer: the store-and-forward queue) and cmd/hubd hands it
// implementations.
//
// The pieces:
//   - service.go: MESSAGE to a room (checks, replicate, 200) and dispatch;
//   - commands.go: the in-band #commands (Kamailio imc's set and more);
//   - fanout.go: delivery of committed messages with a replicated cursor;
//   - roster.go: the RFC 4575 conference event package;
//   - session.go: RFC 7701 session-mode rooms, the hub as MSRP chat-room
//     focus (frames read and written with hub/msrp);
//   - metrics.go: the clearhub_rooms_* series;
//   - cpim.go: message/cpim parsing and building.
//
// docs/rooms.md describes ordering, replication and failover.
package chatroom
