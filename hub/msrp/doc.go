// Package msrp anchors MSRP sessions (RFC 4975) at the hub: a frame parser
// and writer, an SDP rewriter for m=message offers and answers, and a
// back-to-back relay that terminates MSRP on both legs of a session so every
// message and file transfer crossing the hub is audited. It does not import
// the proxy core (clearhub/hub); cmd/hubd adapts it to hub.SessionAnchor.
// See docs/msrp.md for what endpoints see.
package msrp
