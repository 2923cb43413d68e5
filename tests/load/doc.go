// Package load holds the pure parts of the load driver (cmd/sipload):
// building MESSAGE requests from a template, parsing and framing SIP
// responses and requests byte-wise, answering requests as a minimal UAS,
// a latency histogram with percentiles, and reading a process's CPU time
// and memory from /proc.
//
// No SIP library is used on purpose: the driver must stay much cheaper per
// message than the hub it measures, so it never parses more than the first
// line and the few headers it needs, and never allocates per message on
// the send path.
package load
