package netcheck

import (
	"bufio"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/routing"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

func testState(nets []*hubv1.Network, pols []*hubv1.Policy) *raft.State {
	return raft.NewState(0, &hubv1.ClusterState{Networks: nets, Policies: pols})
}

// Every service the proto has is a route check service, so a new one
// cannot be left out of the console's select and hubctl's --service.
func TestRouteServicesCoverEnum(t *testing.T) {
	got := RouteServices()
	for v, name := range hubv1.Service_name {
		if v == 0 {
			continue
		}
		s := routing.ServiceName(hubv1.Service(v))
		if !slices.Contains(got, s) {
			t.Errorf("%s (%s) missing from RouteServices %v", name, s, got)
		}
		if _, ok := serviceRequest[s]; !ok {
			t.Errorf("%s has no request to check", s)
		}
	}
	if got[len(got)-1] != "any" {
		t.Errorf("RouteServices %v: want any last", got)
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name, uri, service, method, event string
		wantMethod, wantEvent             string
		wantFile                          bool
		wantField                         string
	}{
		{name: "default im", uri: "sip:bob@b.example", wantMethod: "MESSAGE"},
		{name: "presence", uri: "bob@b.example", service: "presence", wantMethod: "SUBSCRIBE", wantEvent: "presence"},
		{name: "file", uri: "sip:bob@b.example", service: "FILE", wantMethod: "INVITE", wantFile: true},
		{name: "chat by method", uri: "sip:bob@b.example", service: "chat", method: "subscribe", wantMethod: "SUBSCRIBE", wantEvent: "conference"},
		{name: "unknown service", uri: "sip:bob@b.example", service: "fax", wantField: "service"},
		{name: "method and service disagree", uri: "sip:bob@b.example", service: "presence", method: "MESSAGE", wantField: "method"},
		{name: "method with a space", uri: "sip:bob@b.example", method: "MES SAGE", wantField: "method"},
		{name: "no host", uri: "sip:", wantField: "uri"},
		{name: "empty uri", uri: "", wantField: "uri"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := RouteQuery{From: "a", RequestURI: tc.uri}
			err := q.Resolve(tc.service, tc.method, tc.event)
			var fe *FieldError
			if tc.wantField != "" {
				if !errors.As(err, &fe) || fe.Field != tc.wantField {
					t.Fatalf("err %v, want a FieldError for %s", err, tc.wantField)
				}
				if !strings.HasPrefix(err.Error(), tc.wantField+" ") {
					t.Fatalf("message %q does not name %s first", err, tc.wantField)
				}
				return
			}
			if err != nil || q.Method != tc.wantMethod || q.Event != tc.wantEvent || q.FileTransfer != tc.wantFile {
				t.Fatalf("got %+v, %v; want %s %q file %v", q, err, tc.wantMethod, tc.wantEvent, tc.wantFile)
			}
		})
	}
}

func TestCheckRoute(t *testing.T) {
	st := testState([]*hubv1.Network{
		{Id: "a", Domains: []string{"a.example"}, Edges: []string{"sip:127.0.0.2:5070"}},
		{Id: "b", Domains: []string{"b.example"}, Edges: []string{"sip:127.0.0.3:5070", "sips:edge.b.example:5061"}},
		{Id: "s", Domains: []string{"s.example"}, Edges: []string{"sip:127.0.0.5:5070"}, Status: hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED},
	}, []*hubv1.Policy{{Destination: "b", Rules: []*hubv1.PolicyRule{{Source: "a", Services: []hubv1.Service{hubv1.Service_SERVICE_IM}}}}})
	for _, tc := range []struct {
		name, from, uri, service string
		size                     int
		allowed                  bool
		status                   int
		label                    string
		edges                    []string // transports in trial order
	}{
		{"im allowed", "a", "sip:bob@b.example", "im", 500, true, 0, "", []string{"UDP", "TLS"}},
		{"large request prefers TLS", "a", "sip:bob@b.example", "im", 1500, true, 0, "", []string{"TLS", "UDP"}},
		{"session refused by policy", "a", "sip:bob@b.example", "session", 500, false, 403, "policy", nil},
		{"reverse direction", "b", "sip:alice@a.example", "im", 500, false, 403, "policy", nil},
		{"unknown domain", "a", "sip:x@nowhere.example", "im", 500, false, 404, "not_found", nil},
		{"suspended source", "s", "sip:bob@b.example", "im", 500, false, 403, "suspended", nil},
		{"unknown source", "zz", "sip:bob@b.example", "im", 500, false, 403, "unattributable", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := RouteQuery{From: tc.from, RequestURI: tc.uri, Size: tc.size}
			if err := q.Resolve(tc.service, "", ""); err != nil {
				t.Fatal(err)
			}
			v, err := CheckRoute(st, q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range v.Edges {
				got = append(got, e.Transport)
			}
			if v.Allowed != tc.allowed || v.Status != tc.status || v.Label != tc.label || !slices.Equal(got, tc.edges) {
				t.Fatalf("got allowed %v %d %q edges %v (%s), want %v %d %q %v", v.Allowed, v.Status, v.Label, got, v.Why, tc.allowed, tc.status, tc.label, tc.edges)
			}
			if tc.allowed && (v.Destination != "b" || v.Edges[0].Order != 1) {
				t.Fatalf("destination %q edges %+v", v.Destination, v.Edges)
			}
		})
	}
}

// A network with one answering UDP edge and one that is not a usable URI:
// the answering edge is reachable, the other reported, and the policy gap
// listed as missing.
func TestTestNetworkUDP(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 65535)
		p := sip.NewParser()
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := p.ParseSIP(buf[:n])
			if req, ok := m.(*sip.Request); err == nil && ok {
				c.WriteTo([]byte(sip.NewResponseFromRequest(req, 200, "OK", nil).String()), from)
			}
		}
	}()
	st := testState([]*hubv1.Network{
		{Id: "b", Domains: []string{"b.example"}, Edges: []string{"sip:" + c.LocalAddr().String(), "mailto:x@b.example"},
			Identity: &hubv1.Identity{Cidrs: []string{"127.0.0.3/32"}}},
	}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v := TestNetwork(ctx, st, "b", Prober{Timeout: 2 * time.Second})
	if v.Ready || len(v.Edges) != 2 {
		t.Fatalf("report %+v", v)
	}
	if e := v.Edges[1]; !e.Reachable || e.Status != 200 || e.Transport != "UDP" {
		t.Errorf("UDP edge %+v: want answered 200", e)
	}
	if e := v.Edges[0]; e.Reachable || !strings.Contains(e.Error, "not a usable SIP URI") {
		t.Errorf("bad edge %+v", e)
	}
	joined := strings.Join(v.Missing, "\n")
	for _, want := range []string{"no network may reach it", "mailto:x@b.example is skipped"} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing lacks %q:\n%s", want, joined)
		}
	}
}

func FuzzReadStreamMessage(f *testing.F) {
	f.Add([]byte("SIP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
	f.Add([]byte("\r\n\r\nSIP/2.0 200 OK\r\nl: 99999999\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		raw, err := ReadStreamMessage(bufio.NewReader(strings.NewReader(string(b))))
		if err == nil && len(raw) > len(b)+2 {
			t.Fatalf("read %d bytes out of %d", len(raw), len(b))
		}
	})
}
