// Command sipload is the project's SIP load driver (issue 10, "the bench
// itself"): an open-loop MESSAGE generator over raw UDP, TCP and TLS with
// no SIP library, so it stays cheaper per message than what it measures.
//
//	sipload uac      ramp of steps against a proxy (the hub or Kamailio),
//	                 sampling the proxy's CPU time and memory per step
//	sipload uas      the member edge: answers every request with 200
//	sipload ceiling  uac and uas in one process with nothing between: the
//	                 driver's own ceiling on this machine
//
// Per step it prints offered and achieved (2xx) rates, failed (final
// non-2xx other than 503), shed (503), timeouts (no final answer within
// -timeout; the driver never retransmits), the p50/p99/p99.9 round trip of
// the 2xx answers, and the proxy's CPU per answered message and memory.
// The ramp ends at the first step that is not clean; then the -overload
// multiples of the highest clean rate run, to see shedding and memory.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "uac":
		err = runUAC(os.Args[2:], false)
	case "ceiling":
		err = runUAC(os.Args[2:], true)
	case "uas":
		err = runUAS(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sipload:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sipload uac|uas|ceiling [flags]; sipload SUBCOMMAND -h for the flags")
	os.Exit(2)
}
