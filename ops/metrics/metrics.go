// Package metrics serves the node's operator HTTP endpoints: Prometheus
// /metrics, /healthz (the process is up), /readyz (the node is a member,
// has re-applied the log it had at start, knows a Raft leader and has
// applied everything it knows to be committed) and, only when enabled,
// /debug/pprof (unauthenticated, so off by default).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"clearhub/raft"
)

// StatusSource is what readiness and the raft gauges read.
type StatusSource interface {
	Status() raft.Status
}

// Server is the HTTP endpoint. It owns one goroutine, stopped by Close.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	log  *slog.Logger
}

// NewRegistry returns a registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// RegisterRaft adds gauges that read src at scrape time, so the hot path
// pays nothing for them.
func RegisterRaft(reg prometheus.Registerer, src StatusSource) error {
	gauge := func(name, help string, f func(raft.Status) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "clearhub", Subsystem: "raft", Name: name, Help: help},
			func() float64 { return f(src.Status()) })
	}
	for _, c := range []prometheus.Collector{
		gauge("term", "Current Raft term.", func(s raft.Status) float64 { return float64(s.Term) }),
		gauge("commit_index", "Highest log index known committed.", func(s raft.Status) float64 { return float64(s.CommitIndex) }),
		gauge("applied_index", "Highest log index applied to the FSM; its rate is the apply rate.", func(s raft.Status) float64 { return float64(s.AppliedIndex) }),
		gauge("last_index", "Last log index stored.", func(s raft.Status) float64 { return float64(s.LastIndex) }),
		gauge("is_leader", "1 when this node is the leader.", func(s raft.Status) float64 { return b2f(s.State == "Leader") }),
		gauge("has_leader", "1 when this node knows a leader.", func(s raft.Status) float64 { return b2f(s.LeaderID != "") }),
		gauge("peers", "Servers in the Raft configuration.", func(s raft.Status) float64 { return float64(len(s.Servers)) }),
		gauge("restored", "1 once the node has re-applied the log it had at start (it serves nothing before).", func(s raft.Status) float64 { return b2f(s.Restored) }),
		gauge("removed", "1 when this node was removed from the cluster (its state is frozen; it serves nothing).", func(s raft.Status) float64 { return b2f(s.Removed) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register raft metrics: %w", err)
		}
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Ready reports whether the node can serve: it is still a member, it has
// re-applied the log it had at start, a leader is known and the FSM has
// caught up with the commit index this node knows.
func Ready(s raft.Status) error {
	if s.Removed {
		return errors.New("removed from the cluster: state frozen, SIP stopped")
	}
	if s.Restoring() {
		return fmt.Errorf("restoring state (applied %d of %d)", s.StateIndex, s.RestoreTarget)
	}
	if s.LeaderID == "" {
		return errors.New("no raft leader known")
	}
	if s.AppliedIndex < s.CommitIndex {
		return fmt.Errorf("applied index %d behind commit index %d", s.AppliedIndex, s.CommitIndex)
	}
	return nil
}

// Config is what Listen serves.
type Config struct {
	Addr     string
	Gatherer prometheus.Gatherer
	Source   StatusSource
	Logger   *slog.Logger
	// Pprof serves /debug/pprof. It has no authentication: anyone who can
	// reach the port can read heap contents and stall the process with
	// profiles, so it is off unless the operator turns it on.
	Pprof bool
	// Checks must each pass, after Ready, for /readyz to answer 200.
	Checks []func() error
}

// Listen binds cfg.Addr and starts serving; Close stops it.
func Listen(cfg Config) (*Server, error) {
	src, log, checks := cfg.Source, cfg.Logger, cfg.Checks
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", cfg.Addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		log.Warn("pprof enabled on the metrics port without authentication", "addr", ln.Addr().String())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		err := Ready(src.Status())
		for _, c := range checks {
			if err != nil {
				break
			}
			err = c()
		}
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:   ln,
		done: make(chan struct{}),
		log:  log,
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server and waits for its goroutine.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
