package lists

import (
	"testing"

	"github.com/emiago/sipgo/sip"

	"clearhub/raft"
)

// Whatever a member sends in a list SUBSCRIBE (body, encoding, Event,
// Require, Expires), the service answers it once with a final response and
// does not crash.
func FuzzServeSubscribe(f *testing.F) {
	doc := `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><entry uri="sip:bob@b.example"/></list></resource-lists>`
	f.Add([]byte(doc), "", "recipient-list-subscribe", "presence", "600", "sip:rls@lists.hub.example")
	f.Add(deflate(f, doc), "deflate", "recipient-list-subscribe, eventlist", "presence;id=1", "0", "sip:rls@lists.hub.example")
	f.Add([]byte(nil), "", "", "buddylist", "3600", "sip:alice-buddies@lists.hub.example")
	l := &lab{snd: newFakeSender(), clock: newFakeClock(), state: labState(f, true, publicList(buddies, "sip:bob@b.example"))}
	svc, err := New(Config{Domain: "lists.hub.example", Sender: l.snd, Clock: l.clock, State: func() *raft.State { return l.state },
		Contact: func(u, _ string) sip.Uri { return sip.Uri{Scheme: "sip", User: u, Host: "hub.example"} }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(svc.Close)
	f.Fuzz(func(t *testing.T, body []byte, enc, require, event, expires, target string) {
		var ru sip.Uri
		if sip.ParseUri(target, &ru) != nil || sip.ParseUri(ru.String(), &sip.Uri{}) != nil {
			return // not a URI the test's request builder takes
		}
		o := subOpts{require: require, event: event, expires: expires, encoding: enc}
		if len(body) > 0 {
			o.body = body
		}
		req := subscribeReq(t, "alice", ru.String(), o)
		finals := 0
		svc.Serve(Request{Req: req, Source: "a", State: l.state,
			Respond: func(r *sip.Response) {
				if r.StatusCode >= 200 {
					finals++
				}
			},
			Contact: func(u string) sip.Uri { return sip.Uri{Scheme: "sip", User: u, Host: "hub.example"} }})
		if finals != 1 {
			t.Fatalf("%d final responses", finals)
		}
		// Drain what the service sent so the fake does not fill up.
		for len(l.snd.notify) > 0 {
			<-l.snd.notify
		}
	})
}
