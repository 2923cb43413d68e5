package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRouteCheck runs `hubctl route check` against a real admin server and
// Raft state. What the SIP plane answers for the same decisions is checked
// in hub (TestDecideMatchesProxy): both run hub/routing.Decide.
func TestRouteCheck(t *testing.T) {
	h := newRealHub(t)
	h.must(t, "network", "add", "a", "--domain", "a.example", "--edge", "sip:127.0.0.2:5070", "--cidr", "127.0.0.2/32")
	h.must(t, "network", "add", "b", "--domain", "b.example", "--edge", "sip:127.0.0.3:5070", "--edge", "sips:edge.b.example:5061", "--cidr", "127.0.0.3/32")
	h.must(t, "network", "add", "c", "--domain", "c.example", "--edge", "sip:127.0.0.4:5070", "--cidr", "127.0.0.4/32", "--services", "presence")
	h.must(t, "network", "add", "s", "--domain", "s.example", "--edge", "sip:127.0.0.5:5070", "--cidr", "127.0.0.5/32")
	h.must(t, "network", "suspend", "s")
	h.must(t, "policy", "allow", "b", "--from", "a", "--services", "im,presence")
	h.must(t, "policy", "allow", "c", "--from", "a", "--services", "im,presence")

	cases := []struct {
		name      string
		args      []string
		exit      int
		status    int
		reason    string
		label     string
		service   string
		firstEdge string // transport of the first edge tried
	}{
		{"im allowed", []string{"--from", "a", "sip:bob@b.example"}, 0, 0, "", "", "im", "UDP"},
		{"no scheme", []string{"--from", "a", "bob@B.example"}, 0, 0, "", "", "im", "UDP"},
		{"large request prefers TLS", []string{"--from", "a", "sip:bob@b.example", "--size", "1500"}, 0, 0, "", "", "im", "TLS"},
		{"presence by method", []string{"--from", "a", "sip:bob@b.example", "--method", "SUBSCRIBE"}, 0, 0, "", "", "presence", "UDP"},
		{"session not granted", []string{"--from", "a", "sip:bob@b.example", "--service", "session"}, 1, 403, "Peering policy denies session", "policy", "session", ""},
		{"reverse direction", []string{"--from", "b", "sip:alice@a.example"}, 1, 403, "Peering policy denies im", "policy", "im", ""},
		{"destination services", []string{"--from", "a", "sip:carol@c.example"}, 1, 403, "Destination network not enabled for im", "services", "im", ""},
		{"unknown domain", []string{"--from", "a", "sip:x@nowhere.example"}, 1, 404, "Not Found", "not_found", "", ""},
		{"suspended destination", []string{"--from", "a", "sip:x@s.example"}, 1, 403, "Forbidden", "suspended", "", ""},
		{"suspended source", []string{"--from", "s", "sip:bob@b.example"}, 1, 403, "Forbidden", "suspended", "", ""},
		{"unknown source", []string{"--from", "zz", "sip:bob@b.example"}, 1, 403, "Forbidden", "unattributable", "", ""},
		{"event not carried", []string{"--from", "a", "sip:bob@b.example", "--method", "SUBSCRIBE", "--event", "dialog"}, 1, 489, "Bad Event", "bad_event", "", ""},
		{"method not carried", []string{"--from", "a", "sip:bob@b.example", "--method", "REGISTER"}, 1, 405, "Method Not Allowed", "method", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := h.hubctl(t, append([]string{"route", "check", "-o", "json"}, tc.args...)...)
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.exit, out, errOut)
			}
			var v routeView
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if v.Allowed != (tc.exit == 0) || v.Status != tc.status || v.Reason != tc.reason || v.Label != tc.label || v.Service != tc.service {
				t.Errorf("got allowed=%v %d %q label %q service %q, want %d %q label %q service %q",
					v.Allowed, v.Status, v.Reason, v.Label, v.Service, tc.status, tc.reason, tc.label, tc.service)
			}
			if tc.firstEdge != "" {
				if len(v.Edges) != 2 || v.Edges[0].Transport != tc.firstEdge || v.Destination != "b" {
					t.Errorf("edges %+v to %q, want 2 with %s first to b", v.Edges, v.Destination, tc.firstEdge)
				}
			} else if len(v.Edges) != 0 {
				t.Errorf("refused, yet edges %+v", v.Edges)
			}
			if tc.exit != 0 && !strings.Contains(errOut, "not routed") {
				t.Errorf("stderr %q", errOut)
			}
		})
	}

	// The table form names the verdict and the edges in order.
	out := h.must(t, "route", "check", "--from", "a", "sip:bob@b.example")
	for _, want := range []string{"VERDICT      forwarded", "EDGE 1       sip:127.0.0.3:5070", "EDGE 2       sips:edge.b.example:5061"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestRouteCheckUsage(t *testing.T) {
	h := newRealHub(t)
	for _, args := range [][]string{
		{"route", "check", "sip:bob@b.example"},                                                                // no --from
		{"route", "check", "--from", "a", "sip:bob@b.example", "--service", "fax"},                             // unknown service
		{"route", "check", "--from", "a", "sip:bob@b.example", "--method", "MESSAGE", "--service", "presence"}, // disagree
		{"route", "check", "--from", "a", "sip:"},                                                              // no host
	} {
		if _, errOut, code := h.hubctl(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errOut)
		}
	}
}
