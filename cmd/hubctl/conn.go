package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

const (
	defaultDataDir   = "hub-data"
	defaultAdminAddr = "127.0.0.1:9443"
)

// Environment variables that stand in for the connection flags (flags win).
const (
	envEndpoints = "HUBCTL_ENDPOINTS"
	envCACert    = "HUBCTL_CACERT"
	envCert      = "HUBCTL_CERT"
	envKey       = "HUBCTL_KEY"
)

// addGlobalFlags declares the persistent flags every subcommand inherits.
func addGlobalFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.String("endpoints", "", "admin API addresses host:port, comma-separated; hubctl fails over to the next one when a node is unreachable (env "+envEndpoints+"; default: contents of DATA/admin.addr, else "+defaultAdminAddr+")")
	pf.String("addr", "", "same as --endpoints")
	pf.String("data", defaultDataDir, "hub data directory holding pki/ca.crt, pki/operator.crt, pki/operator.key and admin.addr")
	pf.String("cert", "", "operator client certificate PEM (env "+envCert+"; default DATA/pki/operator.crt)")
	pf.String("key", "", "operator client key PEM (env "+envKey+"; default DATA/pki/operator.key)")
	pf.String("ca", "", "cluster CA certificate PEM that signed the node certificates (env "+envCACert+"; default DATA/pki/ca.crt)")
	// Before network add/update named the member CA --member-ca, this
	// reached the cluster CA there; kept so old scripts still run.
	pf.String("admin-ca", "", "same as --ca")
	_ = pf.MarkDeprecated("admin-ca", "use --ca (network add/update name a member network's CA --member-ca)")
	pf.String("server-name", "", "expected name in the node certificates (default: the host of each endpoint)")
	pf.StringP("output", "o", formatTable, "output format: table, json or yaml (audit export: jsonl or csv)")
	pf.Duration("timeout", 10*time.Second, "deadline for each admin call")
}

// globalString reads a persistent flag of the root command.
func globalString(cmd *cobra.Command, name string) string {
	v, _ := cmd.Root().PersistentFlags().GetString(name)
	return v
}

// globalChanged reports whether a persistent flag was given.
func globalChanged(cmd *cobra.Command, name string) bool {
	f := cmd.Root().PersistentFlags().Lookup(name)
	return f != nil && f.Changed
}

// flagOrEnv returns the flag's value when given, else the environment
// variable's, and the name to blame in errors.
func flagOrEnv(cmd *cobra.Command, flag, env string) (value, source string) {
	if globalChanged(cmd, flag) {
		return globalString(cmd, flag), "--" + flag
	}
	if v := os.Getenv(env); v != "" {
		return v, env
	}
	return "", "--" + flag
}

// dataDir is the --data directory.
func dataDir(cmd *cobra.Command) string {
	return globalString(cmd, "data")
}

// endpoints resolves the admin addresses: --endpoints (or --addr), else
// HUBCTL_ENDPOINTS, else DATA/admin.addr, else the default. Each is
// host:port; the order is the failover order.
func endpoints(cmd *cobra.Command) ([]string, error) {
	var raw, source string
	switch e, a := globalChanged(cmd, "endpoints"), globalChanged(cmd, "addr"); {
	case e && a:
		return nil, usagef("--addr: same as --endpoints; give one of them")
	case a:
		raw, source = globalString(cmd, "addr"), "--addr"
	case e:
		raw, source = globalString(cmd, "endpoints"), "--endpoints"
	case os.Getenv(envEndpoints) != "":
		raw, source = os.Getenv(envEndpoints), envEndpoints
	default:
		p := filepath.Join(dataDir(cmd), "admin.addr")
		b, err := os.ReadFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return []string{defaultAdminAddr}, nil
		case err != nil:
			return nil, fmt.Errorf("--endpoints: %w", err)
		}
		raw, source = string(b), p
	}
	return parseEndpoints(source, raw)
}

// parseEndpoints splits a comma-separated list of host:port addresses.
func parseEndpoints(source, raw string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(raw, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			return nil, usagef("%s: %q is not host:port", source, a)
		}
		if slices.Contains(out, a) {
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, usagef("%s: no address given", source)
	}
	return out, nil
}

// tlsFiles are the files dialAdmin reads, and the flag or variable that
// chose each.
type tlsFiles struct {
	cert, key, ca             string
	certFlag, keyFlag, caFlag string
}

func resolveTLSFiles(cmd *cobra.Command) tlsFiles {
	pkiDir := filepath.Join(dataDir(cmd), "pki")
	var f tlsFiles
	f.cert, f.certFlag = flagOrEnv(cmd, "cert", envCert)
	f.key, f.keyFlag = flagOrEnv(cmd, "key", envKey)
	f.ca, f.caFlag = flagOrEnv(cmd, "ca", envCACert)
	if a := globalString(cmd, "admin-ca"); a != "" && !globalChanged(cmd, "ca") {
		f.ca, f.caFlag = a, "--admin-ca"
	}
	if f.cert == "" {
		f.cert = filepath.Join(pkiDir, "operator.crt")
	}
	if f.key == "" {
		f.key = filepath.Join(pkiDir, "operator.key")
	}
	if f.ca == "" {
		f.ca = filepath.Join(pkiDir, "ca.crt")
	}
	return f
}

// readTLSFile reads one credential file; a failure names the flag that
// selects it and, for a missing file, how to point hubctl elsewhere.
func readTLSFile(cmd *cobra.Command, flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return b, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		d := dataDir(cmd)
		return nil, fmt.Errorf("%s: %w (is the hub running with --data %s? pass --data or --cert/--key/--ca)", flag, err, d)
	}
	return nil, fmt.Errorf("%s: %w", flag, err)
}

// clientTLS builds the mutual-TLS client configuration from the flags.
func clientTLS(cmd *cobra.Command) (*tls.Config, error) {
	f := resolveTLSFiles(cmd)
	certPEM, err := readTLSFile(cmd, f.certFlag, f.cert)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readTLSFile(cmd, f.keyFlag, f.key)
	if err != nil {
		return nil, err
	}
	caPEM, err := readTLSFile(cmd, f.caFlag, f.ca)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--cert/--key: %s and %s: %w", f.cert, f.key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", f.caFlag, f.ca)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		Certificates: []tls.Certificate{pair},
		// Empty: gRPC fills in the host of the target address, which the
		// node certificate carries as a SAN.
		ServerName: globalString(cmd, "server-name"),
		// Member certificates come from the same CA in a lab and may serve
		// TLS too: only a hub node may answer as the admin API.
		VerifyConnection: pki.VerifyRole(pki.RoleNode),
	}, nil
}

// dialAdmin opens a client of the AdminService at the endpoints the global
// flags name. The connection is lazy: a hub that is down shows up as
// Unavailable on the first call. With several endpoints, gRPC's pick_first
// policy connects to the first that answers, in order, and moves on when
// the connected node goes away. The caller closes the returned connection.
func dialAdmin(cmd *cobra.Command) (hubv1.AdminServiceClient, *grpc.ClientConn, error) {
	// Refuse a bad -o before any call: a change must not be made and then
	// fail to print.
	if _, err := outputFormat(cmd); err != nil {
		return nil, nil, err
	}
	eps, err := endpoints(cmd)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := clientTLS(cmd)
	if err != nil {
		return nil, nil, err
	}
	addrs := make([]resolver.Address, len(eps))
	for i, ep := range eps {
		host, _, _ := net.SplitHostPort(ep)
		// Each node is checked against its own name: the host of its
		// endpoint, unless --server-name (in cfg) overrides it.
		addrs[i] = resolver.Address{Addr: ep, ServerName: host}
	}
	r := manual.NewBuilderWithScheme("hubctl")
	r.InitialState(resolver.State{Addresses: addrs})
	warn := &warnings{w: cmd.ErrOrStderr()}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithResolvers(r),
		grpc.WithChainUnaryInterceptor(warn.unary),
		grpc.WithChainStreamInterceptor(warn.stream),
	}
	if len(eps) > 1 {
		// A node that does not answer at all (a dropped SYN) must not use up
		// the whole --timeout before the next one is tried.
		opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.DefaultConfig, MinConnectTimeout: failoverConnectTimeout,
		}))
	}
	cc, err := grpc.NewClient(r.Scheme()+":///"+url.PathEscape(strings.Join(eps, ",")), opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("--endpoints %s: %w", strings.Join(eps, ","), err)
	}
	return hubv1.NewAdminServiceClient(cc), cc, nil
}

// warningHeader is admin.WarningHeader: the response header in which a
// call that succeeded says what the operator should know (a cluster shrunk
// below three voters, a list that was cut).
const warningHeader = "clearhub-warning"

// warnings prints every clearhub-warning header value of every admin call
// to stderr as "warning: ...", once per command for a repeated one (a tail
// that reconnects).
type warnings struct {
	w    io.Writer
	mu   sync.Mutex
	seen map[string]bool
}

func (p *warnings) print(md metadata.MD) {
	vals := md.Get(warningHeader)
	if len(vals) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	for _, v := range vals {
		if p.seen[v] {
			continue
		}
		p.seen[v] = true
		fmt.Fprintf(p.w, "warning: %s\n", strings.ReplaceAll(v, "\n", " "))
	}
}

func (p *warnings) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var md metadata.MD
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Header(&md))...)
	p.print(md)
	return err
}

func (p *warnings) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &warnStream{ClientStream: cs, p: p}, nil
}

// warnStream prints a stream's warnings once its headers are in: after the
// first RecvMsg returns (with a message or the stream's end) Header does
// not block.
type warnStream struct {
	grpc.ClientStream
	p    *warnings
	once sync.Once
}

func (s *warnStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.once.Do(func() {
		if md, herr := s.ClientStream.Header(); herr == nil {
			s.p.print(md)
		}
	})
	return err
}

// failoverConnectTimeout bounds one connection attempt when there is a next
// endpoint to try.
const failoverConnectTimeout = 3 * time.Second

// withAdmin dials, runs fn under the --timeout deadline, and closes.
func withAdmin(cmd *cobra.Command, fn func(ctx context.Context, c hubv1.AdminServiceClient) error) error {
	c, cc, err := dialAdmin(cmd)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := cmdContext(cmd)
	defer cancel()
	return fn(ctx, c)
}
