package hub

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
)

// echoService answers every request with 200 and records what it saw.
type echoService struct {
	seen chan *HostedRequest
	code int
}

func (e *echoService) ServeSIP(r *HostedRequest) {
	res := sip.NewResponseFromRequest(r.Req, e.code, "Hosted", nil)
	c := r.Contact("room1")
	res.AppendHeader(&sip.ContactHeader{Address: c})
	r.Respond(res)
	r.Respond(sip.NewResponseFromRequest(r.Req, 500, "Second final", nil)) // dropped
	e.seen <- r
}

// silentService never answers: the core answers 500 for it.
type silentService struct{}

func (silentService) ServeSIP(*HostedRequest) {}

// Requests for a hosted domain are answered by its service, after the
// core's attribution, anti-spoofing and audit, and never reach a member;
// a request to the hub's own Contact with the service parameter finds the
// service too; a spoofed From never reaches it.
func TestHostedServiceSeam(t *testing.T) {
	svc := &echoService{seen: make(chan *HostedRequest, 4), code: 200}
	l := &lab{state: &fakeState{}, audit: &memAudit{}}
	l.a = newMember(t, "a", "a.example", "127.0.0.2", memberOpts{network: "udp"})
	l.b = newMember(t, "b", "b.example", "127.0.0.3", memberOpts{network: "udp"})
	l.state.set(labState(l.a, l.b))
	l.hub = startHub(t, Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", Hostname: "127.0.0.1", RouteSecret: []byte("s"),
		Hosted: map[string]HostedService{"rooms.hub.example": svc, "quiet.hub.example": silentService{}}}, l.state, l.audit)
	hubAddr := l.hub.Addrs()[0].String()

	req := l.a.newRequest(sip.MESSAGE, "sip:team@ROOMS.hub.example", hubAddr)
	res := l.a.do(req)
	if res.StatusCode != 200 || res.Reason != "Hosted" {
		t.Fatalf("hosted MESSAGE: %d %s", res.StatusCode, res.Reason)
	}
	var r *HostedRequest
	select {
	case r = <-svc.seen:
	case <-time.After(5 * time.Second):
		t.Fatal("service never saw the request")
	}
	if r.Source != "neta" || r.Domain != "rooms.hub.example" || r.Transport != "udp" {
		t.Errorf("hosted request: source %q domain %q transport %q", r.Source, r.Domain, r.Transport)
	}
	if to := res.To(); to == nil || !to.Params.Has("tag") {
		t.Error("final response from a hosted service lacks a To tag")
	}
	cid := req.CallID().Value()
	if e := l.audit.waitAudit(t, ledger.KindRequest, "MESSAGE", 0, cid); e.SrcNet != "neta" || e.DstNet != "" {
		t.Errorf("request entry %+v", e)
	}
	l.audit.waitAudit(t, ledger.KindResponse, "", 200, cid)

	// In-dialog: to the Contact the service handed out.
	contact := res.GetHeader("Contact").(*sip.ContactHeader).Address
	if v, _ := contact.UriParams.Get(ParamService); v != "rooms.hub.example" || contact.User != "room1" {
		t.Fatalf("contact %s", contact.String())
	}
	in := l.a.newRequest(sip.MESSAGE, contact.String(), hubAddr)
	if res := l.a.do(in); res.StatusCode != 200 {
		t.Fatalf("to the service contact: %d %s", res.StatusCode, res.Reason)
	}
	<-svc.seen

	// Spoofed From: the core refuses before the service sees anything.
	spoof := l.a.newRequest(sip.MESSAGE, "sip:team@rooms.hub.example", hubAddr)
	spoof.From().Address.Host = "b.example"
	if res := l.a.do(spoof); res.StatusCode != 403 {
		t.Fatalf("spoofed From to a hosted domain: %d", res.StatusCode)
	}
	select {
	case <-svc.seen:
		t.Fatal("a spoofed request reached the service")
	case <-time.After(100 * time.Millisecond):
	}

	// A service that forgets to answer: 500, audited.
	q := l.a.newRequest(sip.MESSAGE, "sip:x@quiet.hub.example", hubAddr)
	if res := l.a.do(q); res.StatusCode != 500 {
		t.Fatalf("silent service: %d", res.StatusCode)
	}
	l.audit.waitAudit(t, ledger.KindResponse, "", 500, q.CallID().Value())
}
