package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"clearhub/chatroom"
	"clearhub/hub"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// roomsWiring joins the chat rooms (chatroom/) to the SIP plane: it is the
// hub's HostedService for rooms.domain before the service exists (the hub
// is built first), the service's Sender (hub.Originate, service chat), and
// its Store (the admin server's Propose: validated, forwarded to the
// leader, waited for locally).
type roomsWiring struct {
	domain string
	svc    atomic.Pointer[chatroom.Service]
	sip    atomic.Pointer[hub.Hub]
	queue  *queueWiring
}

var (
	_ hub.HostedService = (*roomsWiring)(nil)
	_ chatroom.Sender   = (*roomsWiring)(nil)
	_ chatroom.Deferrer = (*roomsWiring)(nil)
)

var errRoomsNotRunning = errors.New("chat rooms not running")

// ServeSIP hands a request the core attributed and audited to the rooms.
func (w *roomsWiring) ServeSIP(r *hub.HostedRequest) {
	s := w.svc.Load()
	if s == nil {
		r.Respond(sip.NewResponseFromRequest(r.Req, 503, "Service Unavailable: rooms starting", nil))
		return
	}
	s.Serve(&chatroom.Request{Req: r.Req, Source: r.Source, Transport: r.Transport, Respond: r.Respond, Contact: r.Contact, Ctx: r.Context()})
}

// Send originates a room's request: fan-out copies in the sender's
// network's name (the recipient network's peering policy for chat
// applies), replies and NOTIFYs as the hub's own service.
func (w *roomsWiring) Send(ctx context.Context, req *sip.Request, dst string, o chatroom.SendOptions) (*sip.Response, error) {
	h := w.sip.Load()
	if h == nil {
		return nil, errRoomsNotRunning
	}
	return h.Originate(ctx, req, dst, hub.OriginateOptions{Source: o.Source, Service: hubv1.Service_SERVICE_CHAT, Note: o.Note})
}

// Defer hands a failed fan-out copy to store and forward, when it runs.
func (w *roomsWiring) Defer(ctx context.Context, req *sip.Request, src, dst, note string) error {
	if w.queue == nil {
		return errors.New("store and forward is off (queue.enabled)")
	}
	_, err := w.queue.Defer(ctx, &hub.DeferredMessage{Req: req, Source: src, Destination: dst, Received: time.Now(), Cause: "room fan-out: " + note})
	return err
}

// roomStore is the replicated state as the rooms use it.
type roomStore struct{ n *hubNode }

func (s roomStore) State() *raft.State { return s.n.raft.State() }
func (s roomStore) IsLeader() bool     { return s.n.raft.IsLeader() }
func (s roomStore) Subscribe() (<-chan *raft.State, func()) {
	return s.n.raft.Subscribe()
}
func (s roomStore) Propose(ctx context.Context, cmd *hubv1.Command) (uint64, error) {
	return s.n.admin.Propose(ctx, cmd)
}

// startRooms builds the rooms service over the running hub.
func (n *hubNode) startRooms(w *roomsWiring, h *hub.Hub, reg prometheus.Registerer) error {
	c := n.cfg.Rooms
	cfg := chatroom.Config{
		Domain: w.domain, NodeID: n.id, Store: roomStore{n}, Sender: w, Auditor: n.ledger,
		Logger: n.log.With("component", "rooms"), MaxMembersCap: c.MaxMembers,
		Rate: rate.Limit(float64(c.RatePerMinute) / 60), Burst: c.Burst, BatchSize: c.FanoutBatch,
		TakeoverAfter: c.TakeoverAfter, RosterCoalesce: c.RosterCoalesce, Registerer: reg,
		// Session-mode rooms' MSRP goes to lawful interception like the
		// anchoring relay's (msrp.go).
		Tap: n.msrpTap(n.raft.State),
	}
	roomsSessionConfig(&cfg, n.cfg)
	if c.SessionTLSListen != "" {
		if cfg.SessionAddr == "" {
			return errors.New("rooms: session_tls_listen needs session_listen")
		}
		cfg.SessionTLSAddr = c.SessionTLSListen
		cfg.SessionTLS = &tls.Config{GetCertificate: n.certs.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	if n.queue != nil {
		w.queue = n.queue
		cfg.Deferrer = w
	}
	svc, err := chatroom.New(cfg)
	if err != nil {
		return fmt.Errorf("rooms: %w", err)
	}
	w.sip.Store(h)
	svc.Start()
	w.svc.Store(svc)
	return nil
}

// roomsSessionConfig sets the session-mode focus's listener, host and
// connection caps from the rooms.session_* keys.
func roomsSessionConfig(cfg *chatroom.Config, c Config) {
	r := c.Rooms
	cfg.SessionAddr, cfg.SessionHost = r.SessionListen, r.SessionHost
	if cfg.SessionAddr != "" && cfg.SessionHost == "" {
		cfg.SessionHost = c.SIP.Hostname
	}
	cfg.SessionMaxConns, cfg.SessionMaxConnsPerIP = r.SessionMaxConnections, r.SessionMaxConnectionsPerSource
	cfg.SessionMaxPendingPerIP, cfg.SessionFirstFrameTimeout = r.SessionMaxPendingPerSource, r.SessionFirstFrameTimeout
}

// close stops the rooms' background work. Unfinished fan-outs stay in the
// replicated state: this node resumes them at its next start, or the
// leader takes them over.
func (w *roomsWiring) close() {
	if w == nil {
		return
	}
	if s := w.svc.Load(); s != nil {
		s.Stop()
	}
}
