package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

// MSRP settings of a network (hubctl network update --msrp-...;
// msrp.proto MsrpSettings, docs/msrp.md). The update mask's granularity
// is the whole setting, so the flags given are merged into the current one.
// The relay password is read from a file (a flag value shows in the
// process list) and is never printed: the hub does not return it.
type msrpFlags struct {
	maxFileSize  int64
	byteRate     int64
	maxChunk     uint32
	relay        string
	relayUser    string
	passwordFile string
}

var msrpFlagNames = []string{"msrp-max-file-size", "msrp-byte-rate", "msrp-max-chunk", "msrp-relay", "msrp-relay-user", "msrp-relay-password-file"}

func (f *msrpFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.Int64Var(&f.maxFileSize, "msrp-max-file-size", 0, "largest MSRP message or file (bytes) the network may send through the hub; larger ones get 413 (0: the nodes' msrp.max_message_size)")
	fl.Int64Var(&f.byteRate, "msrp-byte-rate", 0, "MSRP body bytes per second the network may send through the hub, paced (0: the nodes' msrp.bytes_per_second)")
	fl.Uint32Var(&f.maxChunk, "msrp-max-chunk", 0, "body bytes per MSRP chunk the hub sends toward the network (0: the nodes' msrp.max_chunk, 8192)")
	fl.StringVar(&f.relay, "msrp-relay", "", "the network's own RFC 4976 MSRP relay, msrp[s]://host:port;tcp; the hub AUTHs to it (\"\" clears the relay and its credentials)")
	fl.StringVar(&f.relayUser, "msrp-relay-user", "", "Digest user name for AUTH to --msrp-relay")
	fl.StringVar(&f.passwordFile, "msrp-relay-password-file", "", "file holding the Digest password for AUTH to --msrp-relay (write-only: the hub never returns it)")
}

func (f *msrpFlags) changed(c *cobra.Command) bool {
	for _, n := range msrpFlagNames {
		if c.Flags().Changed(n) {
			return true
		}
	}
	return false
}

// merge applies the flags given to cur (as GetNetwork returned it: no
// password, which the hub keeps when none is given).
func (f *msrpFlags) merge(c *cobra.Command, cur *hubv1.MsrpSettings) (*hubv1.MsrpSettings, error) {
	fl := c.Flags()
	m := &hubv1.MsrpSettings{MaxFileSize: cur.GetMaxFileSize(), BytesPerSecond: cur.GetBytesPerSecond(), MaxChunk: cur.GetMaxChunk(),
		RelayUri: cur.GetRelayUri(), RelayUsername: cur.GetRelayUsername()}
	if fl.Changed("msrp-max-file-size") {
		m.MaxFileSize = f.maxFileSize
	}
	if fl.Changed("msrp-byte-rate") {
		m.BytesPerSecond = f.byteRate
	}
	if fl.Changed("msrp-max-chunk") {
		m.MaxChunk = f.maxChunk
	}
	if fl.Changed("msrp-relay") {
		m.RelayUri = f.relay
		if f.relay == "" {
			m.RelayUsername = ""
		}
	}
	if fl.Changed("msrp-relay-user") {
		m.RelayUsername = f.relayUser
	}
	if fl.Changed("msrp-relay-password-file") {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--msrp-relay-password-file: %w", err)
		}
		m.RelayPassword = strings.TrimRight(string(b), "\r\n")
		if m.RelayPassword == "" {
			return nil, fmt.Errorf("--msrp-relay-password-file %s: empty", f.passwordFile)
		}
	}
	return m, nil
}

// msrpSummary is the one-line table form.
func msrpSummary(m *hubv1.MsrpSettings) string {
	if m == nil {
		return "-"
	}
	var parts []string
	if v := m.GetMaxFileSize(); v > 0 {
		parts = append(parts, fmt.Sprintf("max-file-size=%d", v))
	}
	if v := m.GetBytesPerSecond(); v > 0 {
		parts = append(parts, fmt.Sprintf("byte-rate=%d/s", v))
	}
	if v := m.GetMaxChunk(); v > 0 {
		parts = append(parts, fmt.Sprintf("max-chunk=%d", v))
	}
	if u := m.GetRelayUri(); u != "" {
		s := "relay=" + u
		if m.GetRelayUsername() != "" {
			s += " user=" + m.GetRelayUsername()
		}
		if m.GetRelayPasswordSet() {
			s += " password=set"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// msrpView is the JSON form; the password is never in it (the hub does
// not return it), only whether one is set.
type msrpView struct {
	MaxFileSize      int64  `json:"max_file_size"`
	BytesPerSecond   int64  `json:"bytes_per_second"`
	MaxChunk         uint32 `json:"max_chunk"`
	RelayURI         string `json:"relay_uri,omitempty"`
	RelayUsername    string `json:"relay_username,omitempty"`
	RelayPasswordSet bool   `json:"relay_password_set"`
}

func viewMsrp(m *hubv1.MsrpSettings) *msrpView {
	if m == nil {
		return nil
	}
	return &msrpView{MaxFileSize: m.GetMaxFileSize(), BytesPerSecond: m.GetBytesPerSecond(), MaxChunk: m.GetMaxChunk(),
		RelayURI: m.GetRelayUri(), RelayUsername: m.GetRelayUsername(), RelayPasswordSet: m.GetRelayPasswordSet()}
}
