package hub

import (
	"encoding/base64"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
	"clearhub/proto/hubv1"
)

// Issue 8 item 1: a Record-Route the hub issued for one dialog must not be a
// standing pass through another network's policy.

var (
	svcPresence = hubv1.Service_SERVICE_PRESENCE
	svcIM       = hubv1.Service_SERVICE_IM
	svcSession  = hubv1.Service_SERVICE_SESSION
)

// oneWayState peers neta -> netb for presence, IM and sessions, but netb ->
// neta for sessions only: b's own presence and IM toward a are refused out
// of dialog. netc (127.0.0.4) is a member nobody admits.
func oneWayState(a, b, c *member) *hubv1.ClusterState {
	cs := labState(a, b)
	cs.Networks[2].Edges = []string{c.edge()}
	cs.Policies = []*hubv1.Policy{
		{Destination: "netb", Rules: []*hubv1.PolicyRule{{Source: "neta", Services: []hubv1.Service{svcPresence, svcIM, svcSession}}}},
		{Destination: "neta", Rules: []*hubv1.PolicyRule{{Source: "netb", Services: []hubv1.Service{svcSession}}}},
	}
	return cs
}

// fakeClock is a settable clock for route tokens.
type fakeClock struct{ off atomic.Int64 }

func (f *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(f.off.Load())) }
func (f *fakeClock) advance(d time.Duration) { f.off.Add(int64(d)) }

// routeLab is a UDP lab with a third member c and a clock the test moves.
type routeLab struct {
	*lab
	c     *member
	clock *fakeClock
}

func newRouteLab(t *testing.T, mutate func(*Config)) *routeLab {
	t.Helper()
	l := &routeLab{lab: &lab{state: &fakeState{}, audit: &memAudit{}}, clock: &fakeClock{}}
	l.a = newMember(t, "a", "a.example", "127.0.0.2", memberOpts{})
	l.b = newMember(t, "b", "b.example", "127.0.0.3", memberOpts{})
	l.c = newMember(t, "c", "c.example", "127.0.0.4", memberOpts{})
	l.state.set(oneWayState(l.a, l.b, l.c))
	cfg := Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", RouteSecret: []byte("test-secret"), clock: l.clock.now}
	if mutate != nil {
		mutate(&cfg)
	}
	l.hub = startHub(t, cfg, l.state, l.audit)
	addrs := l.hub.Addrs()
	l.udp, l.tcp = addrs[0].String(), addrs[1].String()
	answerAll := func(m *member) {
		m.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
			if req.IsAck() {
				return
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", nil)
			if req.To().Params.GetOr("tag", "") == "" && (req.Method == sip.SUBSCRIBE || req.Method == sip.INVITE) {
				res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: m.name, Host: hostOf(m.addr), Port: portOf(m.addr)}})
			}
			_ = tx.Respond(res)
		})
	}
	answerAll(l.a)
	answerAll(l.b)
	answerAll(l.c)
	return l
}

// dialog is what both ends learnt from a dialog a created toward b.
type dialog struct {
	callID       string
	fromA        *sip.FromHeader // a's From (initiator tag)
	toB          *sip.ToHeader   // b's To as in the 200 (b's tag)
	aRoute       []sip.Uri       // a's route set (reversed Record-Route of the 200)
	bRoute       []sip.Uri       // b's route set (Record-Route as b received it)
	aContact     sip.Uri
	bContact     sip.Uri
	bRecordRoute []sip.Uri
}

// open makes a send method (SUBSCRIBE with Event: presence, or INVITE) to
// bob@b.example and returns the dialog.
func (l *routeLab) open(t *testing.T, method sip.RequestMethod) *dialog {
	t.Helper()
	req := l.a.newRequest(method, "sip:bob@b.example", l.udp)
	if method == sip.SUBSCRIBE {
		req.AppendHeader(sip.NewHeader("Event", "presence"))
		req.AppendHeader(sip.NewHeader("Expires", "600"))
	}
	res := l.a.do(req)
	if res.StatusCode != 200 {
		t.Fatalf("%s: %d %s", method, res.StatusCode, res.Reason)
	}
	got := l.b.expect(method)
	if method == sip.INVITE {
		// ACK the 2xx so b's transaction ends cleanly.
		ack := l.a.inDialog(sip.ACK, res.Contact().Address, reversed(recordRoutes(res)),
			&sip.FromHeader{Address: req.From().Address, Params: req.From().Params.Clone()},
			&sip.ToHeader{Address: res.To().Address, Params: res.To().Params.Clone()}, req.CallID().Value(), 1)
		if err := l.a.cl.WriteRequest(ack); err != nil {
			t.Fatal(err)
		}
		l.b.expect(sip.ACK)
	}
	return &dialog{
		callID:       req.CallID().Value(),
		fromA:        &sip.FromHeader{Address: req.From().Address, Params: req.From().Params.Clone()},
		toB:          &sip.ToHeader{Address: res.To().Address, Params: res.To().Params.Clone()},
		aRoute:       reversed(recordRoutes(res)),
		bRoute:       recordRoutes(got),
		aContact:     req.Contact().Address,
		bContact:     res.Contact().Address,
		bRecordRoute: recordRoutes(got),
	}
}

// fromB builds a request b sends inside d (From: b's side, To: a's side
// with the initiator's tag).
func (d *dialog) fromB(m *member, method sip.RequestMethod, cseq uint32) *sip.Request {
	from := &sip.FromHeader{Address: d.toB.Address, Params: d.toB.Params.Clone()}
	to := &sip.ToHeader{Address: d.fromA.Address, Params: d.fromA.Params.Clone()}
	return m.inDialog(method, d.aContact, d.bRoute, from, to, d.callID, cseq)
}

// fromA builds a request a sends inside d.
func (d *dialog) fromAReq(m *member, method sip.RequestMethod, cseq uint32) *sip.Request {
	from := &sip.FromHeader{Address: d.fromA.Address, Params: d.fromA.Params.Clone()}
	to := &sip.ToHeader{Address: d.toB.Address, Params: d.toB.Params.Clone()}
	return m.inDialog(method, d.bContact, d.aRoute, from, to, d.callID, cseq)
}

func withEvent(req *sip.Request, ev string) *sip.Request {
	req.AppendHeader(sip.NewHeader("Event", ev))
	if req.Method == sip.NOTIFY {
		req.AppendHeader(sip.NewHeader("Subscription-State", "active;expires=600"))
	}
	return req
}

// sendVia sends req to the hub, which is where its route set points.
func sendVia(l *routeLab, m *member, req *sip.Request) *sip.Response {
	req.SetDestination(l.udp)
	return m.do(req)
}

func wantRefusal(t *testing.T, l *routeLab, res *sip.Response, req *sip.Request, code int, reason string) {
	t.Helper()
	if res.StatusCode != code || res.Reason != reason {
		t.Fatalf("%s: got %d %q, want %d %q", req.Method, res.StatusCode, res.Reason, code, reason)
	}
	if code == 200 {
		return
	}
	es := l.audit.find(ledger.KindRequest, string(req.Method), code, req.CallID().Value())
	if len(es) == 0 {
		t.Fatalf("%s refused %d without an audit entry", req.Method, code)
	}
	if !strings.Contains(es[len(es)-1].Reason, strings.TrimPrefix(reason, "Forbidden")) {
		t.Errorf("audit reason %q does not say %q", es[len(es)-1].Reason, reason)
	}
}

// The replay from the issue: b saw the hub's Record-Route on a's
// subscription and uses it to reach a for what a's policy refuses. Before
// the fix every case but the third network's was forwarded to a and
// answered 200.
func TestRouteReplayRefused(t *testing.T) {
	l := newRouteLab(t, nil)
	d := l.open(t, sip.SUBSCRIBE)

	// b's own out-of-dialog requests toward a, with the hub's Route and then
	// a's Contact as the next hop (where the old hub sent them, past a's
	// policy): the route is ignored and the policy (netb -> neta: session
	// only) decides.
	aHop := d.aContact
	aHop.UriParams = aHop.UriParams.Clone()
	aHop.UriParams.Add("lr", "")
	outOfDialog := func(method sip.RequestMethod, ev string) *sip.Request {
		r := l.b.newRequest(method, "sip:alice@a.example", l.udp)
		r.PrependHeader(&sip.RouteHeader{Address: aHop})
		for _, u := range reversed(d.bRoute) {
			r.PrependHeader(&sip.RouteHeader{Address: u})
		}
		if ev != "" {
			r.AppendHeader(sip.NewHeader("Event", ev))
		}
		return r
	}
	// In-dialog looking requests from b.
	other := *d
	other.callID = "another-call-" + sip.GenerateTagN(6)
	messageOtherCall := other.fromB(l.b, sip.MESSAGE, 7)
	publishInDialog := withEvent(d.fromB(l.b, sip.PUBLISH, 8), "presence")
	publishInDialog.Recipient = sip.Uri{Scheme: "sip", User: "alice", Host: "a.example"}
	publishInDialog.AppendHeader(&sip.RouteHeader{Address: aHop})

	// c copies the whole dialog (Call-ID, tags, route) from a capture.
	cFrom := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "mallory", Host: "c.example"}, Params: d.toB.Params.Clone()}
	cTo := &sip.ToHeader{Address: d.fromA.Address, Params: d.fromA.Params.Clone()}
	thirdParty := withEvent(l.c.inDialog(sip.NOTIFY, d.aContact, d.bRoute, cFrom, cTo, d.callID, 9), "presence")

	cases := []struct {
		name   string
		by     *member
		req    *sip.Request
		code   int
		reason string
	}{
		{"SUBSCRIBE out of dialog with the route", l.b, outOfDialog(sip.SUBSCRIBE, "presence"), 403, "Peering policy denies presence"},
		{"PUBLISH out of dialog with the route", l.b, outOfDialog(sip.PUBLISH, "presence"), 403, "Peering policy denies presence"},
		{"MESSAGE out of dialog with the route", l.b, outOfDialog(sip.MESSAGE, ""), 403, "Peering policy denies im"},
		{"PUBLISH with a To tag and the route", l.b, publishInDialog, 403, "Peering policy denies presence"},
		{"MESSAGE with the route of another Call-ID", l.b, messageOtherCall, 403, "Hub Route does not match this dialog"},
		{"MESSAGE inside the subscription dialog", l.b, d.fromB(l.b, sip.MESSAGE, 10), 403, "MESSAGE not allowed from the target of a subscription dialog"},
		{"SUBSCRIBE from the notifier inside the dialog", l.b, withEvent(d.fromB(l.b, sip.SUBSCRIBE, 11), "presence"), 403, "SUBSCRIBE not allowed from the target of a subscription dialog"},
		{"third network replays the dialog", l.c, thirdParty, 403, "Sender is not a party to this dialog"},
		{"NOTIFY with another event package", l.b, withEvent(d.fromB(l.b, sip.NOTIFY, 12), "conference"), 403, "Event package does not belong to this dialog"},
		// Still works: what the dialog is for.
		{"NOTIFY from the notifier", l.b, withEvent(d.fromB(l.b, sip.NOTIFY, 13), "presence"), 200, "OK"},
		{"SUBSCRIBE refresh from the subscriber", l.a, withEvent(d.fromAReq(l.a, sip.SUBSCRIBE, 2), "presence"), 200, "OK"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := sendVia(l, tc.by, tc.req)
			wantRefusal(t, l, res, tc.req, tc.code, tc.reason)
		})
	}
	// Nothing refused reached a.
	for {
		select {
		case r := <-l.a.reqs:
			if r.Method != sip.NOTIFY {
				t.Errorf("a received %s %s", r.Method, r.CallID().Value())
			}
			continue
		default:
		}
		break
	}
}

// The state is re-read on every in-dialog request: suspending either
// network, revoking the policy or a network's service, or removing a
// network cuts an established subscription.
func TestDialogCutByStateChange(t *testing.T) {
	cases := []struct {
		name   string
		change func(cs *hubv1.ClusterState)
		code   int
		reason string
	}{
		{"unchanged", func(*hubv1.ClusterState) {}, 200, "OK"},
		{"receiver suspended", func(cs *hubv1.ClusterState) { cs.Networks[0].Status = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED }, 403, "Dialog network suspended"},
		{"sender suspended", func(cs *hubv1.ClusterState) { cs.Networks[1].Status = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED }, 403, "Forbidden"},
		{"policy revoked", func(cs *hubv1.ClusterState) { cs.Policies[0].Rules[0].Services = []hubv1.Service{svcIM} }, 403, "Dialog no longer permitted: Peering policy denies presence"},
		{"target's services narrowed", func(cs *hubv1.ClusterState) { cs.Networks[1].Services = []hubv1.Service{svcIM} }, 403, "Dialog no longer permitted: Destination network not enabled for presence"},
		{"initiator's services narrowed", func(cs *hubv1.ClusterState) { cs.Networks[0].Services = []hubv1.Service{svcSession} }, 403, "Dialog no longer permitted: Source network not enabled for presence"},
		{"initiator removed", func(cs *hubv1.ClusterState) {
			cs.Networks = cs.Networks[1:]
			cs.Policies = cs.Policies[:1]
			cs.Policies[0].Rules = nil
		}, 404, "Dialog peer network no longer exists"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newRouteLab(t, nil)
			d := l.open(t, sip.SUBSCRIBE)
			if res := sendVia(l, l.b, withEvent(d.fromB(l.b, sip.NOTIFY, 1), "presence")); res.StatusCode != 200 {
				t.Fatalf("NOTIFY before the change: %d %s", res.StatusCode, res.Reason)
			}
			cs := oneWayState(l.a, l.b, l.c)
			tc.change(cs)
			l.state.set(cs)
			n := withEvent(d.fromB(l.b, sip.NOTIFY, 2), "presence")
			wantRefusal(t, l, sendVia(l, l.b, n), n, tc.code, tc.reason)
			if tc.code == 200 || tc.name == "initiator removed" {
				return
			}
			// The subscriber's refresh is cut the same way (unless it is
			// the suspended sender, refused at attribution).
			r := withEvent(d.fromAReq(l.a, sip.SUBSCRIBE, 3), "presence")
			res := sendVia(l, l.a, r)
			if res.StatusCode != 403 {
				t.Errorf("refresh after %s: %d %s, want 403", tc.name, res.StatusCode, res.Reason)
			}
		})
	}
}

// A route token stops admitting requests after DialogRouteTTL (481, so the
// subscriber re-subscribes and gets policed afresh), and one issued in the
// future beyond the skew allowance is refused.
func TestDialogRouteExpiry(t *testing.T) {
	cases := []struct {
		name   string
		ttl    time.Duration
		move   time.Duration
		code   int
		reason string
	}{
		{"fresh", 0, time.Hour, 200, "OK"},
		{"default TTL passed", 0, 24*time.Hour + 2*time.Second, 481, "Dialog route expired"},
		{"short TTL passed", time.Hour, time.Hour + 2*time.Second, 481, "Dialog route expired"},
		{"short TTL not passed", time.Hour, 59 * time.Minute, 200, "OK"},
		{"issued in the future", 0, -time.Hour, 403, "Hub Route issued in the future"},
		{"within clock skew", 0, -4 * time.Minute, 200, "OK"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newRouteLab(t, func(c *Config) { c.DialogRouteTTL = tc.ttl })
			d := l.open(t, sip.SUBSCRIBE)
			l.clock.advance(tc.move)
			n := withEvent(d.fromB(l.b, sip.NOTIFY, 1), "presence")
			wantRefusal(t, l, sendVia(l, l.b, n), n, tc.code, tc.reason)
			r := withEvent(d.fromAReq(l.a, sip.SUBSCRIBE, 2), "presence")
			if res := sendVia(l, l.a, r); res.StatusCode != tc.code {
				t.Errorf("refresh: %d %s, want %d", res.StatusCode, res.Reason, tc.code)
			}
			if tc.code != 481 {
				return
			}
			// The subscriber starts over: a new SUBSCRIBE gets a new token.
			d2 := l.open(t, sip.SUBSCRIBE)
			n2 := withEvent(d2.fromB(l.b, sip.NOTIFY, 1), "presence")
			if res := sendVia(l, l.b, n2); res.StatusCode != 200 {
				t.Errorf("NOTIFY in the new subscription: %d %s", res.StatusCode, res.Reason)
			}
		})
	}
}

// What a session dialog carries, each way, and what it does not: MESSAGE in
// a session is IM and needs IM policy in its own direction (netb -> neta
// admits sessions only).
func TestSessionDialogMethods(t *testing.T) {
	l := newRouteLab(t, nil)
	d := l.open(t, sip.INVITE)
	cases := []struct {
		name   string
		by     *member
		req    *sip.Request
		code   int
		reason string
	}{
		{"INFO from the caller", l.a, d.fromAReq(l.a, sip.INFO, 2), 200, "OK"},
		{"UPDATE from the callee", l.b, d.fromB(l.b, sip.UPDATE, 1), 200, "OK"},
		{"MESSAGE from the caller (IM admitted a -> b)", l.a, d.fromAReq(l.a, sip.MESSAGE, 3), 200, "OK"},
		{"MESSAGE from the callee (IM refused b -> a)", l.b, d.fromB(l.b, sip.MESSAGE, 2), 403, "Peering policy denies im"},
		{"REFER from the callee", l.b, d.fromB(l.b, sip.REFER, 3), 200, "OK"},
		{"NOTIFY refer from the caller", l.a, withEvent(d.fromAReq(l.a, sip.NOTIFY, 4), "refer"), 200, "OK"},
		{"NOTIFY presence in a session", l.b, withEvent(d.fromB(l.b, sip.NOTIFY, 4), "presence"), 403, "Event package does not belong to this dialog"},
		{"SUBSCRIBE presence in a session", l.a, withEvent(d.fromAReq(l.a, sip.SUBSCRIBE, 5), "presence"), 403, "Event package does not belong to this dialog"},
		{"OPTIONS in a session", l.b, d.fromB(l.b, sip.OPTIONS, 5), 200, "OK"},
		{"BYE from the callee", l.b, d.fromB(l.b, sip.BYE, 6), 200, "OK"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, l, sendVia(l, tc.by, tc.req), tc.req, tc.code, tc.reason)
		})
	}
}

// Unit cases of openRoute: the token binds the networks, the dialog, the
// direction, the key and the time.
func TestOpenRoute(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	mk := func(id uint8, secret string, prev map[uint8][]byte) *Hub {
		return &Hub{cfg: Config{RouteKeyID: id, PreviousRouteSecrets: prev, DialogRouteTTL: 24 * time.Hour, clock: func() time.Time { return now }}, secret: []byte(secret)}
	}
	issuer := mk(0, "k0", nil)
	dr := &dialogRoute{src: "neta", dst: "netb", kind: kindSubscribe, svc: svcPresence}
	issuer.sealRoute(dr, "call-1", "tagA")
	good := &routeParams{src: "neta", dst: "netb", tok: dr.token}
	// req builds an in-dialog request with the given tags and Call-ID.
	req := func(fromTag, toTag, callID string) *sip.Request {
		r := sip.NewRequest(sip.NOTIFY, sip.Uri{Scheme: "sip", Host: "a.example"})
		f := &sip.FromHeader{Address: sip.Uri{Host: "x"}, Params: sip.NewParams()}
		if fromTag != "" {
			f.Params.Add("tag", fromTag)
		}
		to := &sip.ToHeader{Address: sip.Uri{Host: "y"}, Params: sip.NewParams()}
		if toTag != "" {
			to.Params.Add("tag", toTag)
		}
		r.AppendHeader(f)
		r.AppendHeader(to)
		cid := sip.CallIDHeader(callID)
		r.AppendHeader(&cid)
		return r
	}
	tamper := func(f func(b []byte)) string {
		b, _ := base64.RawURLEncoding.DecodeString(dr.token)
		f(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	cases := []struct {
		name    string
		hub     *Hub
		rp      *routeParams
		req     *sip.Request
		sender  string
		code    int // 0: admitted
		reason  string
		forward bool // admitted travelling initiator -> target
	}{
		{"initiator side", issuer, good, req("tagA", "tagB", "call-1"), "neta", 0, "", true},
		{"target side", issuer, good, req("tagB", "tagA", "call-1"), "netb", 0, "", false},
		{"other Call-ID", issuer, good, req("tagB", "tagA", "call-2"), "netb", 403, "Hub Route does not match this dialog", false},
		{"target using the initiator's side", issuer, good, req("tagA", "tagB", "call-1"), "netb", 403, "Hub Route does not match this dialog", false},
		{"initiator using the target's side", issuer, good, req("tagB", "tagA", "call-1"), "neta", 403, "Hub Route does not match this dialog", false},
		{"other tag", issuer, good, req("tagB", "tagX", "call-1"), "netb", 403, "Hub Route does not match this dialog", false},
		{"third network", issuer, good, req("tagB", "tagA", "call-1"), "netc", 403, "Sender is not a party to this dialog", false},
		{"networks swapped", issuer, &routeParams{src: "netb", dst: "neta", tok: dr.token}, req("tagB", "tagA", "call-1"), "netb", 403, "Hub Route does not match this dialog", false},
		{"network renamed", issuer, &routeParams{src: "neta", dst: "netc", tok: dr.token}, req("tagA", "tagB", "call-1"), "neta", 403, "Hub Route does not match this dialog", false},
		{"service changed", issuer, &routeParams{src: "neta", dst: "netb", tok: tamper(func(b []byte) { b[3] = byte(svcIM) })}, req("tagA", "tagB", "call-1"), "neta", 403, "Hub Route does not match this dialog", false},
		{"kind changed", issuer, &routeParams{src: "neta", dst: "netb", tok: tamper(func(b []byte) { b[2] = byte(kindInvite) })}, req("tagA", "tagB", "call-1"), "neta", 403, "Hub Route does not match this dialog", false},
		{"issue time moved", issuer, &routeParams{src: "neta", dst: "netb", tok: tamper(func(b []byte) { b[7]++ })}, req("tagA", "tagB", "call-1"), "neta", 403, "Hub Route does not match this dialog", false},
		{"version changed", issuer, &routeParams{src: "neta", dst: "netb", tok: tamper(func(b []byte) { b[0] = 3 })}, req("tagA", "tagB", "call-1"), "neta", 403, "Hub Route of an unsupported format", false},
		{"pre-token format", issuer, &routeParams{src: "neta", dst: "netb", legacy: true}, req("tagA", "tagB", "call-1"), "neta", 403, "Hub Route of an unsupported format", false},
		{"not base64", issuer, &routeParams{src: "neta", dst: "netb", tok: "!!!"}, req("tagA", "tagB", "call-1"), "neta", 403, "Malformed hub Route", false},
		{"too short", issuer, &routeParams{src: "neta", dst: "netb", tok: dr.token[:20]}, req("tagA", "tagB", "call-1"), "neta", 403, "Malformed hub Route", false},
		{"missing networks", issuer, &routeParams{tok: dr.token}, req("tagA", "tagB", "call-1"), "neta", 403, "Malformed hub Route", false},
		{"other secret", mk(0, "k-other", nil), good, req("tagA", "tagB", "call-1"), "neta", 403, "Hub Route does not match this dialog", false},
		{"rotated, old key kept", mk(1, "k1", map[uint8][]byte{0: []byte("k0")}), good, req("tagA", "tagB", "call-1"), "neta", 0, "", true},
		{"rotated, old key dropped", mk(1, "k1", nil), good, req("tagA", "tagB", "call-1"), "neta", 403, "Hub Route signed with an unknown key", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, no := tc.hub.openRoute(tc.rp, tc.req, tc.sender)
			if tc.code == 0 {
				if no != nil {
					t.Fatalf("refused: %d %s (%s)", no.code, no.reason, no.detail)
				}
				if got.fromInitiator != tc.forward || got.kind != kindSubscribe || got.svc != svcPresence || !got.issued.Equal(now) {
					t.Fatalf("opened %+v", got)
				}
				return
			}
			if no == nil || no.code != tc.code || no.reason != tc.reason {
				t.Fatalf("got %+v, want %d %q", no, tc.code, tc.reason)
			}
		})
	}
	// A new token issued after rotation carries the new key id.
	rot := mk(1, "k1", map[uint8][]byte{0: []byte("k0")})
	d2 := &dialogRoute{src: "neta", dst: "netb", kind: kindInvite, svc: svcSession}
	rot.sealRoute(d2, "c", "t")
	if b, _ := base64.RawURLEncoding.DecodeString(d2.token); b[1] != 1 || len(d2.token) != 27 {
		t.Errorf("token %q: key id %d, %d chars", d2.token, b[1], len(d2.token))
	}
}

// The two Route entries of an RFC 5658 double record-route carry one token;
// entries that disagree are refused.
func TestOwnRoutesDisagree(t *testing.T) {
	l := newRouteLab(t, nil)
	d := l.open(t, sip.SUBSCRIBE)
	forged := d.bRoute[0]
	forged.UriParams = forged.UriParams.Clone()
	forged.UriParams.Add(paramDst, "netc")
	n := withEvent(d.fromB(l.b, sip.NOTIFY, 1), "presence")
	n.PrependHeader(&sip.RouteHeader{Address: forged})
	wantRefusal(t, l, sendVia(l, l.b, n), n, 403, "Hub Route entries disagree")
}

func TestDialogAllows(t *testing.T) {
	cases := []struct {
		kind          dialogKind
		method        sip.RequestMethod
		fromInitiator bool
		want          bool
	}{
		{kindSubscribe, sip.SUBSCRIBE, true, true},
		{kindSubscribe, sip.SUBSCRIBE, false, false},
		{kindSubscribe, sip.NOTIFY, false, true},
		{kindSubscribe, sip.NOTIFY, true, false},
		{kindSubscribe, sip.MESSAGE, true, false},
		{kindSubscribe, sip.PUBLISH, true, false},
		{kindSubscribe, sip.BYE, false, false},
		{kindSubscribe, sip.OPTIONS, false, true},
		{kindInvite, sip.ACK, false, true},
		{kindInvite, sip.BYE, false, true},
		{kindInvite, sip.INVITE, false, true},
		{kindInvite, sip.PRACK, true, true},
		{kindInvite, sip.PUBLISH, true, false},
		{kindInvite, sip.CANCEL, true, false},
		{kindRefer, sip.NOTIFY, false, true},
		{kindRefer, sip.SUBSCRIBE, true, true},
		{kindRefer, sip.MESSAGE, true, false},
		{kindRefer, sip.BYE, true, false},
		{dialogKind('x'), sip.NOTIFY, true, false},
	}
	for _, tc := range cases {
		if got := dialogAllows(tc.kind, tc.method, tc.fromInitiator); got != tc.want {
			t.Errorf("%s dialog, %s from initiator=%v: %v, want %v", tc.kind, tc.method, tc.fromInitiator, got, tc.want)
		}
	}
}

// FuzzOpenRoute: whatever the parameters, openRoute answers without
// panicking, and only the issued token for the right dialog is admitted.
func FuzzOpenRoute(f *testing.F) {
	h := &Hub{cfg: Config{DialogRouteTTL: time.Hour}, secret: []byte("k")}
	dr := &dialogRoute{src: "neta", dst: "netb", kind: kindInvite, svc: svcSession}
	h.sealRoute(dr, "cid", "t1")
	f.Add("neta", "netb", dr.token, "t1", "t2", "cid")
	f.Add("neta", "netb", dr.token[:4]+"\n"+dr.token[4:], "t1", "t2", "cid") // the decoder skips newlines
	f.Add("", "", "", "", "", "")
	f.Add("neta", "netb", "AAAAAAAAAAAAAAAAAAAAAAAAAAA", "a", "b", "c")
	f.Fuzz(func(t *testing.T, src, dst, tok, fromTag, toTag, callID string) {
		r := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", Host: "h"})
		fh := &sip.FromHeader{Params: sip.NewParams()}
		fh.Params.Add("tag", fromTag)
		th := &sip.ToHeader{Params: sip.NewParams()}
		th.Params.Add("tag", toTag)
		cid := sip.CallIDHeader(callID)
		r.AppendHeader(fh)
		r.AppendHeader(th)
		r.AppendHeader(&cid)
		got, no := h.openRoute(&routeParams{src: src, dst: dst, tok: tok}, r, src)
		if (got == nil) == (no == nil) {
			t.Fatalf("openRoute returned %v and %v", got, no)
		}
		if got != nil && (src != "neta" || dst != "netb" || tok != dr.token || fromTag != "t1" || callID != "cid") {
			t.Fatalf("admitted a token for another dialog: %q %q %q %q %q", src, dst, tok, fromTag, callID)
		}
	})
}
