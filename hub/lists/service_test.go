package lists

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"clearhub/proto/hubv1"
)

const buddies = "sip:alice-buddies@lists.hub.example"

func publicList(uri string, entries ...string) *hubv1.ResourceList {
	l := &hubv1.ResourceList{Uri: uri, DisplayName: "Buddies", Revision: 1}
	for _, e := range entries {
		l.Entries = append(l.Entries, &hubv1.ListEntry{Uri: e, DisplayName: strings.ToUpper(e[4:5])})
	}
	return l
}

// RFC 4662 by list URI: 200 with Require: eventlist; NOTIFY version 0 with
// full state (resources pending until their back ends answer), then a
// partial NOTIFY version 1 with only the resource that changed, its part
// the PIDF exactly as the member's server sent it; the back-end SUBSCRIBE
// goes to the presentity's network in the watcher's name.
func TestListSubscriptionRLMI(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example", "sip:carol@b.example")), nil)
	res := l.serve(subscribeReq(t, "alice", buddies, subOpts{expires: "600"}), "a")
	if res.StatusCode != 200 || headerOf(res, "Require") != "eventlist" || headerOf(res, "Expires") != "600" ||
		res.Contact() == nil || !res.To().Params.Has("tag") {
		t.Fatalf("answer: %s", res.String())
	}
	s, n := l.nextNotify()
	if n.RLMI.Version != 0 || !n.RLMI.FullState || n.RLMI.URI != buddies || len(n.RLMI.Resources) != 2 {
		t.Fatalf("first NOTIFY: %+v", n.RLMI)
	}
	if got := headerValue(s.req, "Subscription-State"); !strings.HasPrefix(got, "active;expires=") || headerValue(s.req, "Require") != "eventlist" {
		t.Errorf("first NOTIFY headers: %s", s.req.String())
	}
	if s.dst != "a" || s.src != "" || s.req.Recipient.Host != "10.0.0.1" || s.req.Route() == nil || s.req.Route().Address.Host != "edge.a.example" {
		t.Errorf("NOTIFY not aimed at the watcher's contact through its route set: dst %q %s", s.dst, s.req.String())
	}
	if r := n.RLMI.Resources[0]; r.URI != "sip:bob@b.example" || len(r.Names) != 1 || r.Names[0] != "B" || r.Instances[0].State != statePending {
		t.Errorf("bob: %+v", r)
	}

	waitFor(t, "two back-end SUBSCRIBEs", func() bool { return len(l.snd.subscribes()) == 2 })
	var bob sent
	for _, b := range l.snd.subscribes() {
		if b.dst != "b" || b.src != "a" || b.req.From().Address.User != "alice" || b.req.From().Address.Host != "a.example" {
			t.Errorf("back-end SUBSCRIBE: src %q dst %q From %s", b.src, b.dst, b.req.From().Address.String())
		}
		if b.req.Recipient.User == "bob" {
			bob = b
		}
	}
	doc := pidf("sip:bob@b.example", "at lunch")
	if r := l.serve(backendNotifyReq(bob, "active;expires=600", doc), "b"); r.StatusCode != 200 {
		t.Fatalf("back-end NOTIFY: %d", r.StatusCode)
	}
	_, n = l.nextNotify()
	if n.RLMI.Version != 1 || n.RLMI.FullState || len(n.RLMI.Resources) != 1 || n.RLMI.Resources[0].URI != "sip:bob@b.example" {
		t.Fatalf("partial NOTIFY: %+v", n.RLMI)
	}
	in := n.RLMI.Resources[0].Instances[0]
	if in.State != stateActive || string(n.Parts[in.CID].Body) != doc || n.Parts[in.CID].ContentType != "application/pidf+xml" {
		t.Fatalf("bob's part: %+v %q", in, n.Parts[in.CID].Body)
	}
}

// Every SUBSCRIBE (a refresh too) and every list edit is followed by full
// state; an edit subscribes to the new entry.
func TestFullStateOnRefreshAndListEdit(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example")), nil)
	o := subOpts{callID: "c1", fromTag: "ft"}
	res := l.serve(subscribeReq(t, "alice", buddies, o), "a")
	l.nextNotify()
	waitFor(t, "back end", func() bool { return len(l.snd.subscribes()) == 1 })
	l.serve(backendNotifyReq(l.snd.subscribes()[0], "active", pidf("sip:bob@b.example", "x")), "b")
	if _, n := l.nextNotify(); n.RLMI.FullState {
		t.Fatal("a back-end change gave full state")
	}

	o.toTag = tagOf(res.To().Params)
	if r := l.serve(subscribeReq(t, "alice", buddies, o), "a"); r.StatusCode != 200 {
		t.Fatalf("refresh: %d", r.StatusCode)
	}
	if _, n := l.nextNotify(); !n.RLMI.FullState || n.RLMI.Version != 2 || len(n.RLMI.Resources) != 1 || n.RLMI.Resources[0].Instances[0].State != stateActive {
		t.Fatalf("after refresh: %+v", n.RLMI)
	}

	edited := publicList(buddies, "sip:bob@b.example", "sip:dave@b.example")
	edited.Revision = 2
	l.setState(labState(t, false, edited))
	_, n := l.nextNotify()
	if !n.RLMI.FullState || n.RLMI.Version != 3 || len(n.RLMI.Resources) != 2 {
		t.Fatalf("after list edit: %+v", n.RLMI)
	}
	waitFor(t, "dave's back end", func() bool { return len(l.snd.subscribes()) == 2 })

	// A refresh in a dialog this node does not know (its node died): 481.
	o.toTag = "unknown"
	if r := l.serve(subscribeReq(t, "alice", buddies, o), "a"); r.StatusCode != 481 {
		t.Fatalf("refresh of an unknown dialog: %d", r.StatusCode)
	}

	// The list becoming someone else's personal list ends it too.
	l2 := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example")), nil)
	l2.serve(subscribeReq(t, "alice", buddies, subOpts{}), "a")
	l2.nextNotify()
	owned := publicList(buddies, "sip:bob@b.example")
	owned.Owner, owned.Revision = "sip:carol@a.example", 2
	l2.setState(labState(t, false, owned))
	if s, _ := l2.nextNotify(); headerValue(s.req, "Subscription-State") != "terminated;reason=rejected" {
		t.Fatalf("after an owner change: %s", headerValue(s.req, "Subscription-State"))
	}

	// Deleting the list ends the subscription.
	l.setState(labState(t, false))
	s, _ := l.nextNotify()
	if got := headerValue(s.req, "Subscription-State"); got != "terminated;reason=noresource" {
		t.Fatalf("after delete: %s", got)
	}
	waitFor(t, "no subscriptions", func() bool { n, b := l.svc.Counts(); return n == 0 && b == 0 })
}

// Refusals, each with its own status and reason.
func TestSubscribeRefusals(t *testing.T) {
	personal := publicList("sip:bob-private@lists.hub.example", "sip:carol@b.example")
	personal.Owner = "sip:bob@a.example"
	st := labState(t, false, publicList(buddies, "sip:bob@b.example"), personal)
	for _, tc := range []struct {
		name, user, target string
		o                  subOpts
		code               int
		hdr, val           string
	}{
		{"no eventlist", "alice", buddies, subOpts{supported: "-"}, 421, "Require", "eventlist"},
		{"unknown package", "alice", buddies, subOpts{event: "dialog"}, 489, "Allow-Events", "presence, buddylist, presencelist"},
		{"unknown extension", "alice", buddies, subOpts{require: "100rel"}, 420, "Unsupported", "100rel"},
		{"expiry too brief", "alice", buddies, subOpts{expires: "10"}, 423, "Min-Expires", "60"},
		{"no such list", "alice", "sip:nope@lists.hub.example", subOpts{}, 404, "", ""},
		{"personal list of someone else", "alice", personal.Uri, subOpts{}, 403, "", ""},
		{"5367 without a body", "alice", "sip:rls@lists.hub.example", subOpts{require: "recipient-list-subscribe"}, 400, "", ""},
		{"5367 with another type", "alice", "sip:rls@lists.hub.example", subOpts{require: "recipient-list-subscribe", body: []byte("x"), ctype: "text/plain"}, 415, "Accept", "application/resource-lists+xml"},
		{"5367 with brotli", "alice", "sip:rls@lists.hub.example", subOpts{require: "recipient-list-subscribe", body: []byte("x"), encoding: "br"}, 415, "Accept-Encoding", "deflate, gzip"},
		{"5367 malformed", "alice", "sip:rls@lists.hub.example", subOpts{require: "recipient-list-subscribe", body: []byte("<resource-lists><list>")}, 400, "", ""},
		{"personal list of its owner", "bob", personal.Uri, subOpts{}, 200, "Require", "eventlist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, st, nil)
			res := l.serve(subscribeReq(t, tc.user, tc.target, tc.o), "a")
			if res.StatusCode != tc.code || res.Reason == "" || res.Reason == "Fake" {
				t.Fatalf("got %d %q, want %d", res.StatusCode, res.Reason, tc.code)
			}
			if tc.hdr != "" && headerOf(res, tc.hdr) != tc.val {
				t.Errorf("%s: %q, want %q", tc.hdr, headerOf(res, tc.hdr), tc.val)
			}
			if tc.code == 200 {
				l.nextNotify()
			}
		})
	}
}

func deflate(t testing.TB, s string) []byte {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// RFC 5367 as liblinphone sends it: Require: recipient-list-subscribe, a
// zlib-compressed resource-lists body; the list lives with the dialog and a
// body-less refresh keeps it, a refresh with a new body replaces it.
func TestRequestContainedListDeflate(t *testing.T) {
	l := newLab(t, labState(t, false), nil)
	doc := `<?xml version="1.0" encoding="UTF-8"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">` +
		`<list><entry uri="sip:bob@b.example"/><entry uri="sip:carol@b.example"><display-name>Carol</display-name></entry></list></resource-lists>`
	body := deflate(t, doc)
	if body[0] != 0x78 {
		t.Fatalf("not a zlib stream: %x", body[:2])
	}
	o := subOpts{require: "recipient-list-subscribe", body: body, encoding: "deflate", callID: "lin1", fromTag: "lt"}
	res := l.serve(subscribeReq(t, "alice", "sip:rls@lists.hub.example", o), "a")
	if res.StatusCode != 200 {
		t.Fatalf("5367 SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
	}
	_, n := l.nextNotify()
	if n.RLMI.URI != "sip:rls@lists.hub.example" || len(n.RLMI.Resources) != 2 || n.RLMI.Resources[1].Names[0] != "Carol" {
		t.Fatalf("ad-hoc list NOTIFY: %+v", n.RLMI)
	}
	waitFor(t, "two back ends", func() bool { _, b := l.svc.Counts(); return b == 2 })

	// liblinphone's refresh keeps Require: recipient-list-subscribe and
	// sends no body (found by the interop suite: it got 400).
	o.toTag, o.body, o.encoding = tagOf(res.To().Params), nil, ""
	if r := l.serve(subscribeReq(t, "alice", "sip:rls@lists.hub.example", o), "a"); r.StatusCode != 200 {
		t.Fatalf("body-less refresh: %d %s", r.StatusCode, r.Reason)
	}
	if _, n := l.nextNotify(); len(n.RLMI.Resources) != 2 || !n.RLMI.FullState {
		t.Fatalf("refresh lost the list: %+v", n.RLMI)
	}
	o.require, o.body = "recipient-list-subscribe", []byte(`<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><entry uri="sip:dave@b.example"/></list></resource-lists>`)
	if r := l.serve(subscribeReq(t, "alice", "sip:rls@lists.hub.example", o), "a"); r.StatusCode != 200 {
		t.Fatalf("refresh with a new list: %d", r.StatusCode)
	}
	if _, n := l.nextNotify(); len(n.RLMI.Resources) != 1 || n.RLMI.Resources[0].URI != "sip:dave@b.example" {
		t.Fatalf("new list not applied: %+v", n.RLMI)
	}
	waitFor(t, "one back end", func() bool { _, b := l.svc.Counts(); return b == 1 })

	// Unsubscribe: terminated NOTIFY; the list and its back ends go.
	o.expires, o.body, o.require = "0", nil, ""
	if r := l.serve(subscribeReq(t, "alice", "sip:rls@lists.hub.example", o), "a"); r.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", r.StatusCode)
	}
	s, _ := l.nextNotify()
	if got := headerValue(s.req, "Subscription-State"); got != "terminated;reason=timeout" {
		t.Fatalf("unsubscribe NOTIFY: %s", got)
	}
	waitFor(t, "nothing left", func() bool { n, b := l.svc.Counts(); return n == 0 && b == 0 })
}

// N watchers in a, each with a personal list of the same presentities in
// b: with b's shared view granted to a there is one back-end subscription
// per presentity (from the view identity); without it, one per watcher per
// presentity. Every watcher still gets the presentity's state.
func TestViewSharingCount(t *testing.T) {
	const watchers, presentities = 20, 5
	for _, share := range []bool{true, false} {
		t.Run(fmt.Sprintf("share=%v", share), func(t *testing.T) {
			var ls []*hubv1.ResourceList
			var pres []string
			for p := range presentities {
				pres = append(pres, fmt.Sprintf("sip:p%d@b.example", p))
			}
			for w := range watchers {
				pl := publicList(fmt.Sprintf("sip:w%d-buddies@lists.hub.example", w), pres...)
				pl.Owner = fmt.Sprintf("sip:w%d@a.example", w)
				ls = append(ls, pl)
			}
			l := newLab(t, labState(t, share, ls...), nil)
			for w := range watchers {
				if r := l.serve(subscribeReq(t, fmt.Sprintf("w%d", w), ls[w].Uri, subOpts{}), "a"); r.StatusCode != 200 {
					t.Fatalf("watcher %d: %d", w, r.StatusCode)
				}
				l.nextNotify()
			}
			want := presentities
			if !share {
				want = watchers * presentities
			}
			waitFor(t, "back-end SUBSCRIBEs", func() bool { return len(l.snd.subscribes()) == want })
			if got := l.svc.BackendsToward("b"); got != want {
				t.Fatalf("back ends toward b: %d, want %d", got, want)
			}
			first := l.snd.subscribes()[0]
			if share && first.req.From().Address.String() != "sip:view.a@lists.hub.example" {
				t.Errorf("shared view From: %s", first.req.From().Address.String())
			}
			// One presentity changes: every watcher hears about it.
			var p0 []sent
			for _, s := range l.snd.subscribes() {
				if s.req.Recipient.User == "p0" {
					p0 = append(p0, s)
				}
			}
			for _, s := range p0 {
				l.serve(backendNotifyReq(s, "active", pidf("sip:p0@b.example", "hi")), "b")
			}
			for range watchers {
				_, n := l.nextNotify()
				if len(n.RLMI.Resources) != 1 || n.RLMI.Resources[0].Instances[0].State != stateActive {
					t.Fatalf("fan-out NOTIFY: %+v", n.RLMI)
				}
			}
		})
	}
}

// At most one fan-out per back end per Throttle, carrying the latest state.
func TestThrottleLatestStateWins(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example")), nil)
	l.serve(subscribeReq(t, "alice", buddies, subOpts{}), "a")
	l.nextNotify()
	waitFor(t, "back end", func() bool { return len(l.snd.subscribes()) == 1 })
	be := l.snd.subscribes()[0]
	note := func(n *Notify) string {
		in := n.RLMI.Resources[0].Instances[0]
		return string(n.Parts[in.CID].Body)
	}
	l.serve(backendNotifyReq(be, "active", pidf("sip:bob@b.example", "one")), "b")
	if _, n := l.nextNotify(); !strings.Contains(note(n), "one") {
		t.Fatal("first change not sent at once")
	}
	l.clock.Advance(time.Second)
	l.serve(backendNotifyReq(be, "active", pidf("sip:bob@b.example", "two")), "b")
	l.clock.Advance(time.Second)
	l.serve(backendNotifyReq(be, "active", pidf("sip:bob@b.example", "three")), "b")
	l.noNotify()
	l.clock.Advance(2900 * time.Millisecond) // 4.9 s after the first
	l.noNotify()
	l.clock.Advance(100 * time.Millisecond)
	_, n := l.nextNotify()
	if !strings.Contains(note(n), "three") || n.RLMI.Version != 2 {
		t.Fatalf("throttled NOTIFY: v%d %s", n.RLMI.Version, note(n))
	}
	l.noNotify()
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// The cap on back ends toward one network refuses visibly: the resource
// shows terminated;reason=noresource, a log line says why (at most every
// 10 s) and a counter counts every refusal. Policy refusals and unknown
// domains show up too, each with its reason.
func TestCapsAndRefusedResources(t *testing.T) {
	var logs logBuf
	reg := prometheus.NewRegistry()
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example", "sip:carol@b.example", "sip:x@c.example", "sip:y@nowhere.example")),
		func(c *Config) {
			c.MaxBackendsPerNetwork = 1
			c.Log = slog.New(slog.NewTextHandler(&logs, nil))
			c.Registerer = reg
		})
	l.serve(subscribeReq(t, "alice", buddies, subOpts{}), "a")
	_, n := l.nextNotify()
	got := resourceStates(n)
	want := map[string]string{
		"sip:bob@b.example":     "pending/",
		"sip:carol@b.example":   "terminated/noresource",
		"sip:x@c.example":       "terminated/rejected",
		"sip:y@nowhere.example": "terminated/noresource",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if !strings.Contains(logs.String(), "cap toward network reached") || !strings.Contains(logs.String(), "network=b") {
		t.Errorf("no log line for the cap: %s", logs.String())
	}
	// Only the back end within the cap was asked for.
	waitFor(t, "back end", func() bool { return len(l.snd.subscribes()) == 1 })
	if got := l.svc.BackendsToward("b"); got != 1 {
		t.Errorf("back ends toward b: %d", got)
	}
	// A second watcher (its own default view) is refused both: counted
	// each time, though the log line is not repeated within 10 s.
	l.serve(subscribeReq(t, "dave", buddies, subOpts{}), "a")
	if _, n := l.nextNotify(); resourceStates(n)["sip:bob@b.example"] != "terminated/noresource" {
		t.Errorf("dave's bob: %v", resourceStates(n))
	}
	var m dto.Metric
	if err := l.svc.m.refused.WithLabelValues("backends", "b").Write(&m); err != nil || m.GetCounter().GetValue() != 3 {
		t.Errorf("refused_total{cap=backends,network=b} = %v (%v), want 3", m.GetCounter().GetValue(), err)
	}
	if got := strings.Count(logs.String(), "cap toward network reached"); got != 1 {
		t.Errorf("%d cap log lines, want 1 (rate-limited)", got)
	}
	fams, err := reg.Gather()
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	for _, want := range []string{"clearhub_lists_refused_total", "clearhub_lists_backends", "clearhub_lists_subscriptions"} {
		if !names[want] {
			t.Errorf("%s not exported (%v)", want, err)
		}
	}
}

// A back end that refuses shows as terminated;reason=rejected; one that
// times out as giveup and is retried later.
func TestBackendRefusalShown(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example", "sip:carol@b.example")), nil)
	l.snd.answer = func(req *sip.Request, dst string) int {
		switch {
		case req.Method != sip.SUBSCRIBE:
			return 200
		case req.Recipient.User == "bob":
			return 403
		}
		return 0 // no edge answered
	}
	l.serve(subscribeReq(t, "alice", buddies, subOpts{}), "a")
	// The failures may land in the first NOTIFY or in later ones.
	states := map[string]string{}
	for !strings.HasPrefix(states["sip:bob@b.example"], stateTerminated) || !strings.HasPrefix(states["sip:carol@b.example"], stateTerminated) {
		_, n := l.nextNotify()
		for k, v := range resourceStates(n) {
			states[k] = v
		}
	}
	if states["sip:bob@b.example"] != "terminated/rejected" || states["sip:carol@b.example"] != "terminated/giveup" {
		t.Fatalf("states: %v", states)
	}
	before := len(l.snd.subscribes())
	l.clock.Advance(2 * time.Second) // first retry soon, then doubling
	waitFor(t, "retry of the timed-out back end", func() bool { return len(l.snd.subscribes()) == before+1 })
	l.clock.Advance(3 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if got := len(l.snd.subscribes()); got != before+1 {
		t.Fatalf("second retry before its 4 s: %d SUBSCRIBEs", got-before)
	}
	l.clock.Advance(time.Second)
	waitFor(t, "second retry", func() bool { return len(l.snd.subscribes()) == before+2 })
}

// A subscription that is not refreshed ends with terminated;reason=timeout.
func TestSubscriptionExpires(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example")), nil)
	l.serve(subscribeReq(t, "alice", buddies, subOpts{expires: "120"}), "a")
	l.nextNotify()
	// The back end must have been sent before the expiry: one dropped
	// before its goroutine ran is never sent, so it has nothing to end (on
	// a loaded CI box the clock moved first and no un-SUBSCRIBE came).
	waitFor(t, "back-end SUBSCRIBE sent", func() bool { return len(l.snd.subscribes()) == 1 })
	l.clock.Advance(121 * time.Second)
	s, _ := l.nextNotify()
	if got := headerValue(s.req, "Subscription-State"); got != "terminated;reason=timeout" {
		t.Fatalf("expiry NOTIFY: %s", got)
	}
	waitFor(t, "un-SUBSCRIBE of the back end", func() bool {
		l.snd.mu.Lock()
		defer l.snd.mu.Unlock()
		for _, r := range l.snd.reqs {
			if r.req.Method == sip.SUBSCRIBE && headerValue(r.req, "Expires") == "0" {
				return true
			}
		}
		return false
	})
}

// NOTIFYs on dialogs the hub does not have, or from the wrong network.
func TestBackendNotifyChecks(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example")), nil)
	l.serve(subscribeReq(t, "alice", buddies, subOpts{}), "a")
	l.nextNotify()
	waitFor(t, "back end", func() bool { return len(l.snd.subscribes()) == 1 })
	be := l.snd.subscribes()[0]
	if r := l.serve(backendNotifyReq(be, "active", pidf("sip:bob@b.example", "x")), "c"); r.StatusCode != 403 {
		t.Errorf("NOTIFY from another network: %d", r.StatusCode)
	}
	bad := backendNotifyReq(be, "active", "")
	bad.ReplaceHeader(sip.NewHeader("Subscription-State", "bogus"))
	if r := l.serve(bad, "b"); r.StatusCode != 400 {
		t.Errorf("NOTIFY with a bad Subscription-State: %d", r.StatusCode)
	}
	other := backendNotifyReq(be, "active", "")
	cid := sip.CallIDHeader("nope")
	other.ReplaceHeader(&cid)
	if r := l.serve(other, "b"); r.StatusCode != 481 {
		t.Errorf("NOTIFY on an unknown dialog: %d", r.StatusCode)
	}
	// A watcher that answers 481 to a NOTIFY loses its subscription.
	l.snd.mu.Lock()
	l.snd.answer = func(req *sip.Request, _ string) int {
		if req.Method == sip.NOTIFY {
			return 481
		}
		return 200
	}
	l.snd.mu.Unlock()
	l.serve(backendNotifyReq(be, "active", pidf("sip:bob@b.example", "y")), "b")
	l.nextNotify()
	waitFor(t, "subscription dropped", func() bool { n, b := l.svc.Counts(); return n == 0 && b == 0 })
}

// Event: buddylist (the draft package) is served from the same lists: the
// changed member's presence document as the body.
func TestBuddylistPackage(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example", "sip:carol@b.example")), nil)
	res := l.serve(subscribeReq(t, "alice", buddies, subOpts{event: "buddylist", supported: "-"}), "a")
	if res.StatusCode != 200 || headerOf(res, "Require") != "" {
		t.Fatalf("buddylist SUBSCRIBE: %d require %q", res.StatusCode, headerOf(res, "Require"))
	}
	s, _ := l.nextNotify()
	if len(s.req.Body()) != 0 {
		t.Errorf("nothing known yet, body %q", s.req.Body())
	}
	waitFor(t, "back ends", func() bool { return len(l.snd.subscribes()) == 2 })
	doc := pidf("sip:bob@b.example", "b")
	for _, be := range l.snd.subscribes() {
		if be.req.Recipient.User == "bob" {
			l.serve(backendNotifyReq(be, "active", doc), "b")
		}
	}
	s, _ = l.nextNotify()
	if string(s.req.Body()) != doc || headerValue(s.req, "Content-Type") != "application/pidf+xml" || headerValue(s.req, "Event") != "buddylist" {
		t.Fatalf("buddylist NOTIFY: %s", s.req.String())
	}
}

// RFC 6446: max-rate holds partial NOTIFYs back (changes wait and go out
// together), min-rate sends the state again when nothing changed, both
// echoed in Subscription-State; min-rate is floored at once a minute; a
// bad rate is refused.
func TestRateControl(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example", "sip:carol@b.example")),
		func(c *Config) { c.Throttle = -1 }) // the back-end throttle off: only the watcher's rates
	res := l.serve(subscribeReq(t, "alice", buddies, subOpts{event: "presence;max-rate=0.1;min-rate=1"}), "a")
	if res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE with rates: %d", res.StatusCode)
	}
	s, _ := l.nextNotify()
	if got := headerValue(s.req, "Subscription-State"); !strings.HasSuffix(got, ";max-rate=0.1;min-rate=0.0166666667") {
		t.Fatalf("applied rates not echoed: %s", got)
	}
	waitFor(t, "back ends", func() bool { return len(l.snd.subscribes()) == 2 })
	for _, be := range l.snd.subscribes() {
		l.serve(backendNotifyReq(be, "active", pidf(be.req.Recipient.String(), "x")), "b")
	}
	l.noNotify() // within 10 s of the first NOTIFY
	l.clock.Advance(10 * time.Second)
	_, n := l.nextNotify()
	if len(n.RLMI.Resources) != 2 || n.RLMI.FullState || n.RLMI.Version != 1 {
		t.Fatalf("held changes: %+v", n.RLMI)
	}
	l.noNotify()
	l.clock.Advance(time.Minute) // min-rate floored to one a minute
	if _, n := l.nextNotify(); !n.RLMI.FullState || n.RLMI.Version != 2 {
		t.Fatalf("min-rate NOTIFY: %+v", n.RLMI)
	}

	if r := l.serve(subscribeReq(t, "alice", buddies, subOpts{event: "presence;max-rate=-1"}), "a"); r.StatusCode != 400 {
		t.Fatalf("negative max-rate: %d", r.StatusCode)
	}
}

// A back end nobody wants any more while its SUBSCRIBE is in flight is
// un-SUBSCRIBEd once the 200 arrives, not left to expire at the
// presentity's network.
func TestDropWhileSubscribeInFlight(t *testing.T) {
	l := newLab(t, labState(t, false, publicList(buddies, "sip:bob@b.example")), nil)
	release := make(chan struct{})
	inFlight := make(chan struct{}, 1)
	l.snd.answer = func(req *sip.Request, _ string) int {
		if req.Method == sip.SUBSCRIBE && headerValue(req, "Expires") != "0" {
			select {
			case inFlight <- struct{}{}:
			default:
			}
			<-release
		}
		return 200
	}
	o := subOpts{callID: "inflight", fromTag: "f1"}
	res := l.serve(subscribeReq(t, "alice", buddies, o), "a")
	l.nextNotify()
	// The back-end SUBSCRIBE must really be in flight before the watcher
	// goes (on a loaded machine its goroutine may not have sent it yet).
	select {
	case <-inFlight:
	case <-time.After(5 * time.Second):
		t.Fatal("the back-end SUBSCRIBE was never sent")
	}
	o.toTag, o.expires = tagOf(res.To().Params), "0"
	l.serve(subscribeReq(t, "alice", buddies, o), "a") // unsubscribe: the back end is dropped
	l.nextNotify()
	close(release)
	waitFor(t, "un-SUBSCRIBE after the late 200", func() bool {
		l.snd.mu.Lock()
		defer l.snd.mu.Unlock()
		for _, r := range l.snd.reqs {
			if r.req.Method == sip.SUBSCRIBE && headerValue(r.req, "Expires") == "0" && r.req.To().Params.Has("tag") {
				return true
			}
		}
		return false
	})
}
