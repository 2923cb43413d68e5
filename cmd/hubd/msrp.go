package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/hub"
	"clearhub/hub/intercept"
	"clearhub/hub/msrp"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// msrpWiring runs the node's MSRP relay (hub/msrp, docs/msrp.md) and adapts
// it to hub.SessionAnchor.
type msrpWiring struct {
	relay *msrp.Relay
	done  chan struct{}
}

// msrpAnchor is the adapter: hub.AnchorDialog and msrp.Dialog have the same
// fields, so one converts into the other.
type msrpAnchor struct{ r *msrp.Relay }

func (a msrpAnchor) Offer(d hub.AnchorDialog, sdp []byte) ([]byte, error) {
	return a.r.Offer(msrp.Dialog(d), sdp)
}

func (a msrpAnchor) Answer(d hub.AnchorDialog, sdp []byte) ([]byte, error) {
	return a.r.Answer(msrp.Dialog(d), sdp)
}

func (a msrpAnchor) End(callID string) { a.r.End(callID) }

// startMSRP opens the msrp.* listeners and registers the relay's metrics
// on reg; the relay stops with ctx.
func (n *hubNode) startMSRP(ctx context.Context, cfg Config, reg prometheus.Registerer) (*msrpWiring, error) {
	host := cfg.MSRP.Host
	if host == "" {
		host = cfg.SIP.Hostname
	}
	if host == "" {
		for _, a := range []string{cfg.MSRP.TLS, cfg.MSRP.TCP} {
			if h, _, err := net.SplitHostPort(a); err == nil {
				if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
					host = h
					break
				}
			}
		}
	}
	if host == "" {
		return nil, errors.New("msrp.host: required when sip.hostname is empty and msrp listens on a wildcard address")
	}
	st := n.raft
	r, err := msrp.New(msrp.Config{
		Host:    host,
		TCPAddr: cfg.MSRP.TCP,
		TLSAddr: cfg.MSRP.TLS,
		// The node certificate, reloaded without a restart (reload.go).
		TLS:               &tls.Config{GetCertificate: n.certs.GetCertificate, MinVersion: tls.VersionTLS12},
		MaxChunk:          cfg.MSRP.MaxChunk,
		SessionBuffer:     cfg.MSRP.SessionBuffer,
		IdleTimeout:       cfg.MSRP.IdleTimeout,
		SetupTimeout:      cfg.MSRP.SetupTimeout,
		MaxMessageSize:    cfg.MSRP.MaxMessageSize,
		BytesPerSecond:    float64(cfg.MSRP.BytesPerSecond),
		MaxConns:          cfg.MSRP.MaxConnections,
		MaxConnsPerIP:     cfg.MSRP.MaxConnectionsPerSource,
		MaxPendingPerIP:   cfg.MSRP.MaxPendingPerSource,
		FirstFrameTimeout: cfg.MSRP.FirstFrameTimeout,
		RelayAuthTimeout:  cfg.MSRP.RelayAuthTimeout,
		Audit:             n.ledger,
		KeepBodies: func(network string) bool {
			v := st.State().Network(network)
			return v != nil && v.GetKeepBodies()
		},
		// Per-network limits and the member's own relay, from the
		// cluster state (Network.msrp; read per message, so an update
		// applies at once).
		Network: func(network string) msrp.NetworkSettings {
			v := st.State().Network(network)
			if v == nil {
				return msrp.NetworkSettings{}
			}
			return msrpSettings(v.GetMsrp())
		},
		Tap:    n.msrpTap(st.State),
		Logger: n.log.With("component", "msrp"),
	})
	if err != nil {
		return nil, fmt.Errorf("msrp: %w", err)
	}
	if err := r.RegisterMetrics(reg); err != nil {
		r.Close()
		return nil, err
	}
	w := &msrpWiring{relay: r, done: make(chan struct{})}
	go func() { defer close(w.done); _ = r.Run(ctx) }()
	tcp, tlsAddr := r.Addrs()
	n.log.Info("MSRP anchoring on", "tcp", fmt.Sprint(tcp), "tls", fmt.Sprint(tlsAddr), "host", host)
	return w, nil
}

func (w *msrpWiring) anchor() hub.SessionAnchor { return msrpAnchor{w.relay} }

// msrpTap adapts the node's interceptor to msrp.ContentTap: the MSRP
// content of sessions a warrant with msrp delivery covers goes to the
// mediation endpoint (docs/interception.md). nil without an interceptor.
type msrpTap struct {
	li    *intercept.Interceptor
	state func() *raft.State
}

func (n *hubNode) msrpTap(state func() *raft.State) msrp.ContentTap {
	if n.intercept == nil || n.intercept.li == nil {
		return nil // an untyped nil: the relay then skips the tap entirely
	}
	return msrpTap{li: n.intercept.li, state: state}
}

// WantsMSRP reads the current state (a pointer load): allocation-free.
func (t msrpTap) WantsMSRP(srcNet, dstNet string, from, to *sip.Uri) bool {
	return t.li.WantsMSRP(t.state(), srcNet, dstNet, from, to)
}

// TapMSRP matches again on the state it reads now: a warrant removed
// since WantsMSRP gets nothing.
func (t msrpTap) TapMSRP(c msrp.TapChunk) {
	t.li.TapMSRP(intercept.Event{State: t.state(), Time: c.Time, Wire: c.Wire, Src: c.Src, Dst: c.Dst, Transport: c.Transport,
		SrcNet: c.SrcNet, DstNet: c.DstNet, CallID: c.CallID, From: c.From, To: c.To})
}

// msrpSettings converts the cluster state's MsrpSettings.
func msrpSettings(m *hubv1.MsrpSettings) msrp.NetworkSettings {
	ns := msrp.NetworkSettings{MaxMessageSize: m.GetMaxFileSize(), BytesPerSecond: float64(m.GetBytesPerSecond()), MaxChunk: int(m.GetMaxChunk())}
	if u := m.GetRelayUri(); u != "" {
		ns.Relay = &msrp.RelayAccount{URI: u, Username: m.GetRelayUsername(), Password: m.GetRelayPassword()}
	}
	return ns
}

// close ends every session (endpoints see their connections close) and
// waits for the relay.
func (w *msrpWiring) close() {
	if w == nil {
		return
	}
	_ = w.relay.Close()
	<-w.done
}
