package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// readTokenFile loads join.token_file into join.token.
func (c *Config) readTokenFile() error {
	if c.Join.TokenFile == "" {
		return nil
	}
	b, err := os.ReadFile(c.Join.TokenFile)
	if err != nil {
		return fmt.Errorf("join.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return fmt.Errorf("join.token_file %s: the file is empty", c.Join.TokenFile)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return fmt.Errorf("join.token_file %s: more than one line or word; want only the token", c.Join.TokenFile)
	}
	c.Join.Token, c.Join.TokenFile = tok, ""
	return nil
}

// cliAction is what the command line asks for besides running the node.
type cliAction struct {
	version     bool   // --version
	checkConfig string // --check-config FILE: validate and exit
}

// usageError is a command-line mistake: the message and the usage are
// printed once, and hubd exits 2.
func usageError(fs *flag.FlagSet, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(fs.Output(), "hubd: %s\n", msg)
	fs.Usage()
	return fmt.Errorf("%w: %s", errUsage, msg)
}

// warnings are valid but probably unintended settings, logged at start and
// printed by --check-config.
func (c *Config) warnings() []string {
	var w []string
	if c.SIP.UDP == "" && c.SIP.TCP == "" && c.SIP.TLS == "" {
		w = append(w, "sip.udp, sip.tcp and sip.tls are all disabled: this node routes no SIP (it only replicates state and serves the admin API)")
	}
	if c.HTTP.Pprof {
		w = append(w, "http.pprof is on: /debug/pprof is served without authentication on "+c.HTTP.Addr)
	}
	return w
}
