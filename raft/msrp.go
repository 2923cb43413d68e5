package raft

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// MSRP settings of a member network (Network.msrp, msrp.proto; the relay
// in hub/msrp reads them). The relay password is replicated like any other
// field but is write-only in the admin API: RedactNetwork clears it in
// every answer, KeepMsrpPassword carries the stored one over an update or
// a restore that does not name a new one.

// Bounds of the per-network MSRP settings.
const (
	msrpMinChunk = 64
	msrpMaxChunk = 1 << 20
)

func validateMsrp(m *hubv1.MsrpSettings) error {
	if m == nil {
		return nil
	}
	if m.GetMaxFileSize() < 0 {
		return invalid("network.msrp.max_file_size", fmt.Sprint(m.GetMaxFileSize()), "must not be negative")
	}
	if m.GetBytesPerSecond() < 0 {
		return invalid("network.msrp.bytes_per_second", fmt.Sprint(m.GetBytesPerSecond()), "must not be negative")
	}
	if c := m.GetMaxChunk(); c != 0 && (c < msrpMinChunk || c > msrpMaxChunk) {
		return invalid("network.msrp.max_chunk", fmt.Sprint(c), fmt.Sprintf("must be 0 or %d..%d", msrpMinChunk, msrpMaxChunk))
	}
	u := m.GetRelayUri()
	if u == "" {
		if m.GetRelayUsername() != "" || m.GetRelayPassword() != "" {
			return invalid("network.msrp.relay_uri", "", "required with relay credentials")
		}
		return nil
	}
	if why := relayURIProblem(u); why != "" {
		return invalid("network.msrp.relay_uri", u, why)
	}
	for f, v := range map[string]string{"relay_username": m.GetRelayUsername(), "relay_password": m.GetRelayPassword()} {
		if len(v) > 256 || strings.ContainsAny(v, "\r\n\"\\") {
			return invalid("network.msrp."+f, "", "at most 256 characters, no quotes, backslashes or line breaks")
		}
	}
	return nil
}

// relayURIProblem checks msrp[s]://host[:port][/session-id];tcp (RFC 4975
// section 9; a relay's configured URI usually has no session-id).
func relayURIProblem(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok || (strings.ToLower(scheme) != "msrp" && strings.ToLower(scheme) != "msrps") {
		return "must be msrp://host[:port];tcp or msrps://host[:port];tcp"
	}
	auth, params, ok := strings.Cut(rest, ";")
	if !ok || strings.ToLower(params) != "tcp" {
		return "must end with ;tcp"
	}
	auth, _, _ = strings.Cut(auth, "/")
	if auth == "" || strings.ContainsAny(auth, " \t\r\n@") {
		return "needs a host"
	}
	return ""
}

func normalizeMsrp(m *hubv1.MsrpSettings) {
	if m == nil {
		return
	}
	m.RelayPasswordSet = m.GetRelayPassword() != ""
}

// RedactNetwork returns n without secrets (the MSRP relay password), for
// every admin answer; n itself is not modified.
func RedactNetwork(n *hubv1.Network) *hubv1.Network {
	if n.GetMsrp().GetRelayPassword() == "" {
		return n
	}
	c := proto.Clone(n).(*hubv1.Network)
	c.Msrp.RelayPassword = ""
	c.Msrp.RelayPasswordSet = true
	return c
}

// RedactState returns st with every network redacted.
func RedactState(st *hubv1.ClusterState) *hubv1.ClusterState {
	out := st
	for i, n := range st.GetNetworks() {
		if r := RedactNetwork(n); r != n {
			if out == st {
				out = proto.Clone(st).(*hubv1.ClusterState)
			}
			out.Networks[i] = r
		}
	}
	return out
}

// KeepMsrpPassword copies cur's relay password into next when next names
// none, for the same relay and user: an update or a restore of a redacted
// copy must not erase the secret. Clearing relay_uri drops it.
func KeepMsrpPassword(cur, next *hubv1.Network) {
	cm, nm := cur.GetMsrp(), next.GetMsrp()
	if nm == nil || cm.GetRelayPassword() == "" || nm.GetRelayPassword() != "" {
		return
	}
	if nm.GetRelayUri() != cm.GetRelayUri() || nm.GetRelayUsername() != cm.GetRelayUsername() {
		return // a different relay or user: the old secret does not apply
	}
	nm.RelayPassword = cm.GetRelayPassword()
}
