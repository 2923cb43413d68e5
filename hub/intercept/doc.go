// Package intercept copies SIP traffic the hub forwards to outside
// collectors in HEP v3 (the Homer encapsulation protocol): lawful
// interception, for the messages of targets named by warrants in the
// replicated state, to a mediation endpoint over TLS; and SIP capture,
// for the traffic of networks an operator switched on, to a Homer
// collector over UDP or TLS.
//
// Neither may alter the traffic or its timing. The proxy asks Wants for
// every forwarded message: it reads the immutable cluster state the call
// already holds (a pointer swapped on each Raft apply), takes no lock and
// allocates nothing, and with no warrant and no capture it is two length
// checks. Tap, for a wanted message only, encodes the frame and puts it on
// a bounded queue without blocking; a full queue drops and counts. A
// delivery goroutine per collector (Sender) owns the connection and ends
// with Close.
//
// Lawful interception keeps its own audit trail in a second ledger (the
// node's <data>/intercept.ledger with its own signed checkpoints): every
// warrant change the node sees and, aggregated per warrant per second,
// every delivery. Only the lawful-intercept admin role reads it.
package intercept
