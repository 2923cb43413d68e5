package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"clearhub/ops/console"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// consoleWiring is the operator web console (ops/console): its HTTPS
// listener and the ConsoleService on the admin listener.
type consoleWiring struct {
	srv   *console.Server
	http  *http.Server
	url   string
	done  chan struct{}
	login string // bootstrap login link (console.bootstrap_login), printed in the banner
	// off says why the console is not served (address taken).
	off string
}

// startConsole serves the console on console.addr and registers
// ConsoleService on the admin gRPC server (call before it serves). A
// taken address is a warning, not a failed start: the console is an aid,
// and several nodes on one host all have the default address.
func (n *hubNode) startConsole(ca *pki.CA, reg prometheus.Gatherer) error {
	cfg := n.cfg.Console
	if cfg.Addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		n.log.Warn("console not served: cannot listen", "addr", cfg.Addr, "err", err)
		n.console = &consoleWiring{off: err.Error()}
		return nil
	}
	url := "https://" + consoleHost(ln.Addr().String())
	srv, err := console.New(console.Options{
		NodeID:     n.id,
		CA:         ca,
		State:      n.raft.State,
		AdminAddr:  loopbackAddr(n.adminAdr),
		Gatherer:   reg,
		Auditor:    n.ledger,
		URL:        url,
		Secure:     true,
		LoginTTL:   cfg.LoginTTL,
		SessionTTL: cfg.SessionTTL,
		Logger:     n.log.With("component", "console"),
		// The network test presents what the SIP plane presents to edges.
		ProbeCert: func() *tls.Certificate {
			c := n.certs.Current()
			return &c
		},
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("console: %w", err)
	}
	hubv1.RegisterConsoleServiceServer(n.grpc, console.Service{S: srv})
	w := &consoleWiring{srv: srv, url: url, done: make(chan struct{})}
	w.http = &http.Server{
		Handler:           srv.Handler(),
		TLSConfig:         serveReloaded(&tls.Config{MinVersion: tls.VersionTLS12}, n.certs),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		defer close(w.done)
		if err := w.http.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("console stopped", "err", err)
		}
	}()
	n.console = w
	if cfg.BootstrapLogin {
		w.login = n.bootstrapLogin(srv)
	}
	n.log.Info("console serving", "url", url)
	return nil
}

// bootstrapLogin mints a login link for the development operator
// certificate hubd keeps in data_dir/pki ("" when it cannot).
func (n *hubNode) bootstrapLogin(srv *console.Server) string {
	pair, err := tls.LoadX509KeyPair(filepath.Join(n.pkiDir, "operator.crt"), filepath.Join(n.pkiDir, "operator.key"))
	if err == nil && pair.Leaf == nil {
		err = errors.New("no leaf")
	}
	if err != nil {
		n.log.Warn("console: no bootstrap login link", "err", err)
		return ""
	}
	id, err := srv.Identify([]*x509.Certificate{pair.Leaf})
	if err != nil {
		n.log.Warn("console: no bootstrap login link", "err", err)
		return ""
	}
	link, _, err := srv.CreateLogin(id)
	if err != nil {
		n.log.Warn("console: no bootstrap login link", "err", err)
		return ""
	}
	return link
}

// consoleHost is the host:port in the console's links: an unspecified
// listen address is reached as localhost (the node certificate covers it).
func consoleHost(addr string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		h = "localhost"
	}
	return net.JoinHostPort(h, p)
}

// loopbackAddr is how the console dials this node's own admin listener.
func loopbackAddr(addr string) string {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		h = "127.0.0.1"
	}
	return net.JoinHostPort(h, p)
}

// printBanner adds the console's lines to the start banner.
func (w *consoleWiring) printBanner(out io.Writer) {
	switch {
	case w == nil:
		return
	case w.off != "":
		fmt.Fprintf(out, "  %-18s off: %s\n", "console", w.off)
		return
	}
	fmt.Fprintf(out, "  %-18s %s\n", "console (HTTPS)", w.url)
	if w.login != "" {
		fmt.Fprintf(out, "open the console (one-time link for the local operator certificate, valid briefly):\n  %s\n"+
			"or get a fresh link: hubctl console login\n", w.login)
	}
}

func (w *consoleWiring) close(ctx context.Context) error {
	if w == nil || w.srv == nil {
		return nil
	}
	// SSE handlers never end by themselves: end them, then shut down.
	err := w.srv.Close()
	if serr := w.http.Shutdown(ctx); serr != nil {
		err = errors.Join(err, w.http.Close())
	}
	<-w.done
	return err
}
