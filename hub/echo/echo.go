// Package echo is the hub's onboarding echo user, sip:echo@<service
// domain>: a member's MESSAGE to it gets 200 and then a MESSAGE back whose
// text/plain body says what the hub saw — the source network, how the
// connection proved it, From, To, the Via path as received, where it
// arrived and what the peering policy lets through — so a member can test
// its own set-up without an operator. An OPTIONS gets 200 with the same
// text as its body.
//
// It is a hosted service: it never imports the proxy core; cmd/hubd hands
// it each request (Request) and a way to send (Originator).
package echo

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/hub/routing"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// User is the echo user's name under the service domain.
const User = "echo"

// Request is one request to the service domain, as the hub admitted it.
type Request struct {
	Req *sip.Request // as received; never modified
	// Source is the member network the connection proved.
	Source string
	State  *raft.State
	// Transport (lower-case), Src (remote ip:port) and Local (the hub's
	// listener) say where it came from and arrived.
	Transport, Src, Local string
	// Certificate describes the TLS client certificate that proved
	// Source; LabPrefix the lab prefix holding Src (UDP/TCP).
	Certificate, LabPrefix string
	// Node is the hub node that handled it.
	Node string
	// Respond sends a response upstream (hub.HostedRequest.Respond).
	Respond func(*sip.Response)
}

// Originator sends a request from the hub itself to member network dst
// (hub.Hub.Originate with the hub as source) and returns the final
// response.
type Originator interface {
	Send(ctx context.Context, req *sip.Request, dst string) (*sip.Response, error)
}

// Service is the echo user of one service domain.
type Service struct {
	domain string
	out    Originator
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns the echo user of domain (lower-case), replying through out.
func New(domain string, out Originator, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{domain: strings.ToLower(domain), out: out, log: log}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Close cancels replies in flight and waits for them.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// Serve answers one request: it returns once it has responded; the
// MESSAGE back goes out afterwards on a goroutine Close waits for.
func (s *Service) Serve(r *Request) {
	req := r.Req
	if req.Method == sip.ACK {
		return
	}
	if !strings.EqualFold(req.Recipient.User, User) {
		r.Respond(sip.NewResponseFromRequest(req, 404, "No such user at the hub", nil))
		return
	}
	switch req.Method {
	case sip.OPTIONS:
		res := sip.NewResponseFromRequest(req, 200, "OK", []byte(Report(r)))
		res.AppendHeader(sip.NewHeader("Content-Type", "text/plain;charset=utf-8"))
		res.AppendHeader(sip.NewHeader("Allow", "MESSAGE, OPTIONS"))
		res.AppendHeader(sip.NewHeader("Accept", "text/plain"))
		r.Respond(res)
	case sip.MESSAGE:
		text := Report(r)
		r.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		back, err := s.reply(req, text)
		if err != nil {
			s.log.Warn("echo: cannot build the reply", "err", err)
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
			defer cancel()
			res, err := s.out.Send(ctx, back, r.Source)
			switch {
			case err != nil:
				s.log.Info("echo: reply not delivered", "network", r.Source, "err", err)
			case res.StatusCode >= 300:
				s.log.Info("echo: reply refused", "network", r.Source, "status", res.StatusCode, "reason", res.Reason)
			}
		}()
	default:
		res := sip.NewResponseFromRequest(req, 405, "Echo takes MESSAGE and OPTIONS only", nil)
		res.AppendHeader(sip.NewHeader("Allow", "MESSAGE, OPTIONS"))
		r.Respond(res)
	}
}

// reply is the MESSAGE back to the sender's From address (RFC 3428: a
// new request outside any dialog).
func (s *Service) reply(req *sip.Request, text string) (*sip.Request, error) {
	from := req.From()
	if from == nil {
		return nil, fmt.Errorf("request without From")
	}
	target := sip.Uri{Scheme: "sip", User: from.Address.User, Host: from.Address.Host, Port: from.Address.Port}
	out := sip.NewRequest(sip.MESSAGE, target)
	f := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: User, Host: s.domain}, Params: sip.NewParams()}
	f.Params.Add("tag", sip.GenerateTagN(10))
	out.AppendHeader(f)
	out.AppendHeader(&sip.ToHeader{Address: target, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(20) + "@" + s.domain)
	out.AppendHeader(&cid)
	out.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
	mf := sip.MaxForwardsHeader(70)
	out.AppendHeader(&mf)
	out.AppendHeader(sip.NewHeader("Content-Type", "text/plain;charset=utf-8"))
	out.SetBody([]byte(text))
	return out, nil
}

// maxVias bounds the Via lines reported.
const maxVias = 20

// Report is the text the echo user sends back.
func Report(r *Request) string {
	req := r.Req
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + ": " + clean(v) + "\r\n") }
	b.WriteString("clearhub echo: what the hub saw\r\n")
	line("source network", r.Source)
	switch {
	case r.Certificate != "":
		line("authenticated by", "TLS client certificate "+r.Certificate)
	case r.LabPrefix != "":
		line("authenticated by", "source address "+r.Src+" in lab prefix "+r.LabPrefix)
	default:
		line("authenticated by", "source address "+r.Src)
	}
	line("arrived", fmt.Sprintf("%s from %s on hub %s (node %s)", r.Transport, r.Src, r.Local, r.Node))
	line("edge", edgeOf(r))
	if f := req.From(); f != nil {
		line("from", f.Address.String())
	}
	if t := req.To(); t != nil {
		line("to", t.Address.String())
	}
	line("request-uri", req.Recipient.String())
	if c := req.CallID(); c != nil {
		line("call-id", c.Value())
	}
	vias := req.GetHeaders("Via")
	for i, v := range vias {
		if i == maxVias {
			line("via", fmt.Sprintf("... %d more", len(vias)-maxVias))
			break
		}
		line("via", v.Value())
	}
	out, in := policy(r.State, r.Source)
	line("you may reach", out)
	line("may reach you", in)
	return b.String()
}

// edgeOf says whether the request came from one of the network's
// configured edges (their host matched against the source IP).
func edgeOf(r *Request) string {
	n := r.State.Network(r.Source)
	if n == nil {
		return "unknown network"
	}
	host := r.Src
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = strings.Trim(host[:i], "[]")
	}
	for _, e := range n.GetEdges() {
		if raft.EdgeHost(e) == strings.ToLower(host) {
			return "from your configured edge " + e
		}
	}
	return fmt.Sprintf("not from one of your configured edges (%s): the hub sends to those, not here", strings.Join(n.GetEdges(), ", "))
}

var echoServices = []hubv1.Service{hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_PRESENCE, hubv1.Service_SERVICE_SESSION,
	hubv1.Service_SERVICE_CHAT, hubv1.Service_SERVICE_FILE}

// policy lists, for network src, whom it may reach and who may reach it,
// with the services: routing.Permits, the proxy's own decision.
func policy(st *raft.State, src string) (out, in string) {
	me := st.Network(src)
	if me == nil {
		return "-", "-"
	}
	var outs, ins []string
	for _, n := range st.Networks() {
		if n.GetId() == src {
			continue
		}
		peer := st.Network(n.GetId())
		var o, i []string
		for _, svc := range echoServices {
			name := strings.ToLower(strings.TrimPrefix(svc.String(), "SERVICE_"))
			if routing.Permits(st, me, peer, svc) == "" {
				o = append(o, name)
			}
			if routing.Permits(st, peer, me, svc) == "" {
				i = append(i, name)
			}
		}
		if len(o) > 0 {
			outs = append(outs, n.GetId()+" ("+strings.Join(o, ", ")+")")
		}
		if len(i) > 0 {
			ins = append(ins, n.GetId()+" ("+strings.Join(i, ", ")+")")
		}
	}
	out, in = strings.Join(outs, "; "), strings.Join(ins, "; ")
	if out == "" {
		out = "nobody (no peering policy admits you yet)"
	}
	if in == "" {
		in = "nobody (your policy admits no network yet)"
	}
	return out, in
}

// clean keeps a header value on one line of printable text.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
