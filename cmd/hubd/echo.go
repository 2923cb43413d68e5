package main

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub"
	"clearhub/hub/echo"
	"clearhub/proto/hubv1"
)

// echoWiring joins the echo user (hub/echo) to the SIP plane: the
// HostedService of hub.service_domain and the service's Originator (the
// hub's own MESSAGE back, service im).
type echoWiring struct {
	domain string
	node   string
	svc    *echo.Service
	sip    atomic.Pointer[hub.Hub]
}

var (
	_ hub.HostedService = (*echoWiring)(nil)
	_ echo.Originator   = (*echoWiring)(nil)
)

func newEchoWiring(domain, node string) *echoWiring {
	w := &echoWiring{domain: domain, node: node}
	w.svc = echo.New(domain, w, nil)
	return w
}

// ServeSIP hands the echo user a request the core attributed and audited,
// with how its connection was attributed.
func (w *echoWiring) ServeSIP(r *hub.HostedRequest) {
	p := r.Peer()
	w.svc.Serve(&echo.Request{Req: r.Req, Source: r.Source, State: r.State, Transport: p.Transport, Src: p.Source, Local: p.Local,
		Certificate: p.Certificate, LabPrefix: p.LabPrefix, Node: w.node, Respond: r.Respond})
}

// Send originates the echo's MESSAGE back as the hub's own service.
func (w *echoWiring) Send(ctx context.Context, req *sip.Request, dst string) (*sip.Response, error) {
	h := w.sip.Load()
	if h == nil {
		return nil, errors.New("echo: SIP plane not running")
	}
	return h.Originate(ctx, req, dst, hub.OriginateOptions{Service: hubv1.Service_SERVICE_IM, Note: "echo user's reply"})
}

func (w *echoWiring) close() {
	if w != nil {
		w.svc.Close()
	}
}
