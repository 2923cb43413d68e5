// Package msrp anchors MSRP sessions (RFC 4975) at the hub: a frame parser
// and writer, an SDP rewriter for m=message offers and answers, and a
// back-to-back relay that terminates MSRP on both legs of a session so every
// message and file transfer crossing the hub is audited. It does not import
// the proxy core (clearhub/hub); cmd/hubd adapts it to hub.SessionAnchor.
// Per member network (NetworkSettings, from the cluster state) it applies a
// size limit, a byte rate and a chunk size, and routes the legs toward a
// network that runs its own RFC 4976 relay through that relay (AUTH with
// Digest, Use-Path; relayauth.go). The listeners cap connections per source
// and in total (netlimits.go).
// See docs/msrp.md for what endpoints see.
package msrp
