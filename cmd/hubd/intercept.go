package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"clearhub/hub"
	"clearhub/hub/intercept"
	"clearhub/ledger"
	"clearhub/ops/admin"
	"clearhub/raft"
)

// interceptWiring is lawful interception and SIP capture on this node
// (hub/intercept, docs/interception.md): the interception ledger (a second
// ledger, data_dir/intercept.ledger, its own signed checkpoints), the
// interceptor and its mediation sender, the capturer and its collector
// sender, and the hub.Tap that offers both every forwarded message.
type interceptWiring struct {
	ledger    *ledger.Ledger
	li        *intercept.Interceptor
	liSender  *intercept.Sender // nil without intercept.address
	capture   *intercept.Capturer
	capSender *intercept.Sender // nil without capture.address
	// liMetrics counts only undelivered copies, warrant-agnostic;
	// capMetrics every capture frame (hub/intercept/metrics.go).
	liMetrics, capMetrics *intercept.Metrics
}

var _ hub.Tap = (*interceptWiring)(nil)

// interceptLedgerFile is the interception ledger inside data_dir.
const interceptLedgerFile = "intercept.ledger"

func (c *Config) validateIntercept() error {
	if d := c.Hub.ServiceDomain; d != "" {
		if !raft.ValidDNSName(strings.ToLower(d)) {
			return fmt.Errorf("hub.service_domain %q: not a DNS name", d)
		}
		if strings.EqualFold(d, c.Rooms.Domain) || strings.EqualFold(d, c.Lists.Domain) {
			return fmt.Errorf("hub.service_domain %q: also the rooms or lists domain; give each service its own", d)
		}
	}
	for _, a := range []struct{ key, v string }{{"intercept.address", c.Intercept.Address}, {"capture.address", c.Capture.Address}} {
		if a.v == "" {
			continue
		}
		if host, port, err := net.SplitHostPort(a.v); err != nil || host == "" || port == "" {
			return fmt.Errorf("%s %q: want host:port", a.key, a.v)
		}
	}
	if (c.Intercept.CertFile == "") != (c.Intercept.KeyFile == "") {
		return errors.New("intercept.key_file: intercept.cert_file and intercept.key_file go together")
	}
	switch c.Capture.Transport {
	case "udp", "tls":
	default:
		return fmt.Errorf("capture.transport %q: want udp or tls", c.Capture.Transport)
	}
	if c.Intercept.Queue < 0 || c.Capture.Queue < 0 {
		return errors.New("intercept.queue and capture.queue must not be negative")
	}
	return nil
}

// collectorTLS is the TLS configuration toward a collector: its CA (or the
// system roots), the expected name, and the hub's client certificate.
func collectorTLS(key, addr, caFile, serverName string, cert tls.Certificate) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ServerName: serverName}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_file: %w", key, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s.ca_file %s: no PEM certificate", key, caFile)
		}
	}
	return cfg, nil
}

// startIntercept opens the interception ledger and starts the senders.
// nodeCert is the default client certificate toward the mediation endpoint.
func startIntercept(ctx context.Context, cfg Config, id string, signer ed25519.PrivateKey, nodeCert tls.Certificate,
	state func() *raft.State, log *slog.Logger) (_ *interceptWiring, err error) {
	w := &interceptWiring{liMetrics: intercept.NewInterceptMetrics(), capMetrics: intercept.NewCaptureMetrics()}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	w.ledger, err = ledger.Open(ctx, ledger.Options{
		Path:   filepath.Join(cfg.DataDir, interceptLedgerFile),
		NodeID: id,
		Signer: signer,
		// Its own log: checkpoints never mix with the audit ledger's.
		Origin:             "clearhub-intercept/" + id,
		CheckpointEvery:    cfg.Ledger.CheckpointEvery,
		CheckpointInterval: cfg.Ledger.CheckpointInterval,
		Logger:             log.With("ledger", "intercept"),
	})
	if err != nil {
		return nil, fmt.Errorf("interception ledger: %w", err)
	}
	if a := cfg.Intercept.Address; a != "" {
		cert := nodeCert
		if cfg.Intercept.CertFile != "" {
			if cert, err = tls.LoadX509KeyPair(cfg.Intercept.CertFile, cfg.Intercept.KeyFile); err != nil {
				return nil, fmt.Errorf("intercept.cert_file/key_file: %w", err)
			}
		}
		tc, err := collectorTLS("intercept", a, cfg.Intercept.CAFile, cfg.Intercept.ServerName, cert)
		if err != nil {
			return nil, err
		}
		// The sender reports each frame's fate to the interceptor; it
		// reports only frames the interceptor queued, so li is set by then
		// (the queue's channel orders the two).
		var li *intercept.Interceptor
		w.liSender, err = intercept.NewSender(intercept.SenderConfig{Addr: a, Transport: "tls", TLS: tc, Queue: cfg.Intercept.Queue, Metrics: w.liMetrics,
			Logger: log.With("collector", "mediation"), OnResult: func(tag string, n int, ok bool) { li.OnResult()(tag, n, ok) }})
		if err != nil {
			return nil, fmt.Errorf("intercept.address: %w", err)
		}
		w.li, err = intercept.NewInterceptor(intercept.Config{Sender: w.liSender, AgentID: cfg.Intercept.AgentID, Ledger: w.ledger, State: state,
			Metrics: w.liMetrics, Logger: log})
		if err != nil {
			return nil, err
		}
		li = w.li
	} else if w.li, err = intercept.NewInterceptor(intercept.Config{AgentID: cfg.Intercept.AgentID, Ledger: w.ledger, State: state,
		Metrics: w.liMetrics, Logger: log}); err != nil {
		return nil, err
	}
	if a := cfg.Capture.Address; a != "" {
		sc := intercept.SenderConfig{Addr: a, Transport: cfg.Capture.Transport, Queue: cfg.Capture.Queue, Metrics: w.capMetrics,
			Logger: log.With("collector", "capture")}
		if sc.Transport == "tls" {
			if sc.TLS, err = collectorTLS("capture", a, cfg.Capture.CAFile, cfg.Capture.ServerName, nodeCert); err != nil {
				return nil, err
			}
		}
		if w.capSender, err = intercept.NewSender(sc); err != nil {
			return nil, fmt.Errorf("capture.address: %w", err)
		}
		w.capture = intercept.NewCapturer(w.capSender, cfg.Capture.AgentID)
	}
	return w, nil
}

// Wants is the proxy's pre-check: allocation-free in both parts.
func (w *interceptWiring) Wants(st *raft.State, srcNet, dstNet string, from, to *sip.Uri) bool {
	return w.li.Wants(st, srcNet, dstNet, from, to) || (w.capture != nil && w.capture.Wants(st, srcNet, dstNet, from, to))
}

// Tap hands the copy to interception and capture, each if it wants it.
func (w *interceptWiring) Tap(ev hub.TapEvent) {
	e := intercept.Event{State: ev.State, Time: ev.Time, Wire: ev.Wire, BodyOffset: ev.BodyOffset, Src: ev.Src, Dst: ev.Dst,
		Transport: ev.Transport, SrcNet: ev.SrcNet, DstNet: ev.DstNet, Response: ev.Response, Method: ev.Method, CallID: ev.CallID,
		From: ev.From, To: ev.To}
	if w.li.Wants(ev.State, ev.SrcNet, ev.DstNet, ev.From, ev.To) {
		w.li.Tap(e)
	}
	if w.capture != nil && w.capture.Wants(ev.State, ev.SrcNet, ev.DstNet, ev.From, ev.To) {
		w.capture.Tap(e)
	}
}

// register adds the interception and capture counters to reg. Both are
// registered on every node, configured or not, so dashboards and alerts
// see zeros rather than no series.
func (w *interceptWiring) register(reg prometheus.Registerer) error {
	if err := w.liMetrics.Register(reg); err != nil {
		return err
	}
	return w.capMetrics.Register(reg)
}

// captureCollector is the admin API's view of the capture sender (nil
// interface when capture is off).
func (w *interceptWiring) captureCollector() admin.CaptureCollector {
	if w == nil || w.capSender == nil {
		return nil
	}
	return w.capSender
}

// close stops the interceptor (its last delivery entries), the senders,
// then the ledger. Call it after the SIP plane stopped.
func (w *interceptWiring) close() error {
	if w == nil {
		return nil
	}
	var errs []error
	if w.li != nil {
		errs = append(errs, w.li.Close())
	}
	for _, s := range []*intercept.Sender{w.liSender, w.capSender} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	if w.ledger != nil {
		errs = append(errs, w.ledger.Close())
	}
	return errors.Join(errs...)
}
