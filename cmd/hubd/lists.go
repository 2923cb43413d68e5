package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/hub"
	"clearhub/hub/lists"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// listsWiring joins the resource list server (hub/lists) to the SIP plane:
// it is the hub's HostedService for lists.domain before the service exists
// (the hub is built first), and the service's Sender (hub.Originate).
type listsWiring struct {
	domain string
	svc    atomic.Pointer[lists.Service]
	sip    atomic.Pointer[hub.Hub]
	stop   func()
	wg     sync.WaitGroup
}

var (
	_ hub.HostedService = (*listsWiring)(nil)
	_ lists.Sender      = (*listsWiring)(nil)
)

var errListsNotRunning = errors.New("list server not running")

// ServeSIP hands a request the core attributed and audited to the list
// server.
func (w *listsWiring) ServeSIP(r *hub.HostedRequest) {
	s := w.svc.Load()
	if s == nil {
		r.Respond(sip.NewResponseFromRequest(r.Req, 503, "Service Unavailable: list server starting", nil))
		return
	}
	s.Serve(lists.Request{Req: r.Req, Source: r.Source, State: r.State, Respond: r.Respond, Contact: r.Contact, Ctx: r.Context()})
}

// Send originates a request of the list server: back-end SUBSCRIBEs in
// the watcher network's name (so its peering policy applies), NOTIFYs to
// watchers as the hub's own service.
func (w *listsWiring) Send(ctx context.Context, req *sip.Request, src, dst, note string, streamsOnly bool) (*sip.Response, error) {
	h := w.sip.Load()
	if h == nil {
		return nil, errListsNotRunning
	}
	return h.Originate(ctx, req, dst, hub.OriginateOptions{Source: src, Service: hubv1.Service_SERVICE_PRESENCE, Note: note, StreamsOnly: streamsOnly})
}

// edgeTransport is the transport of a member's first edge URI, which the
// hub's back-end Contact toward it must name: the presentity's server
// sends its NOTIFYs to that Contact, and a member reached over UDP may
// have no TLS socket to send from (Kamailio: "no corresponding socket").
func edgeTransport(st *raft.State, network string) string {
	n := st.Network(network)
	if n == nil || len(n.GetEdges()) == 0 {
		return "udp"
	}
	e := strings.ToLower(n.GetEdges()[0])
	switch {
	case strings.HasPrefix(e, "sips:"), strings.Contains(e, ";transport=tls"):
		return "tls"
	case strings.Contains(e, ";transport=tcp"):
		return "tcp"
	}
	return "udp"
}

// startLists builds the list server over the running hub and follows the
// replicated state (list edits, policy) until ctx ends.
func (n *hubNode) startLists(ctx context.Context, w *listsWiring, h *hub.Hub, reg prometheus.Registerer) error {
	c := n.cfg.Lists
	domain := strings.ToLower(c.Domain)
	svc, err := lists.New(lists.Config{
		Domain: domain, Sender: w, State: n.raft.State,
		Contact: func(user, dst string) sip.Uri {
			return h.HostedContact(domain, user, edgeTransport(n.raft.State(), dst))
		},
		Log:                   n.log.With("component", "lists"),
		Throttle:              c.Throttle,
		MaxBackendsPerNetwork: c.MaxBackendsPerNetwork,
		MaxSubscriptions:      c.MaxSubscriptions,
		Registerer:            reg,
	})
	if err != nil {
		return err
	}
	w.sip.Store(h)
	w.svc.Store(svc)
	states, cancel := n.raft.Subscribe()
	w.stop = func() { cancel(); svc.Close() }
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case st, ok := <-states:
				if !ok {
					return
				}
				svc.StateChanged(st)
			}
		}
	}()
	return nil
}

// close stops the list server (subscriptions are soft state: watchers
// re-subscribe elsewhere, back ends expire at the presentity's network).
func (w *listsWiring) close() {
	if w == nil || w.stop == nil {
		return
	}
	w.stop()
	w.wg.Wait()
}
