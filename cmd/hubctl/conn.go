package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

const (
	defaultDataDir   = "hub-data"
	defaultAdminAddr = "127.0.0.1:9443"
)

// addGlobalFlags declares the persistent flags every subcommand inherits.
func addGlobalFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.String("addr", "", "admin API address host:port (default: contents of DATA/admin.addr, else "+defaultAdminAddr+")")
	pf.String("data", defaultDataDir, "hub data directory holding pki/ca.crt, pki/operator.crt, pki/operator.key and admin.addr")
	pf.String("cert", "", "operator client certificate PEM (default DATA/pki/operator.crt)")
	pf.String("key", "", "operator client key PEM (default DATA/pki/operator.key)")
	pf.String("ca", "", "cluster CA certificate PEM that signed the node certificate (default DATA/pki/ca.crt)")
	// network add/update have their own --ca (a member network's CA); this
	// alias reaches the cluster CA there.
	pf.String("admin-ca", "", "same as the global --ca, for commands whose own --ca means something else")
	pf.String("server-name", "", "expected name in the node certificate (default: the host of --addr)")
	pf.StringP("output", "o", "table", "output format: table, json or yaml")
	pf.Duration("timeout", 10*time.Second, "deadline for each admin call")
}

// globalString reads a persistent flag of the root command.
func globalString(cmd *cobra.Command, name string) string {
	v, _ := cmd.Root().PersistentFlags().GetString(name)
	return v
}

// dataDir is the --data directory.
func dataDir(cmd *cobra.Command) string {
	return globalString(cmd, "data")
}

// adminAddr resolves --addr: the flag, else DATA/admin.addr, else the default.
func adminAddr(cmd *cobra.Command) (string, error) {
	if a := strings.TrimSpace(globalString(cmd, "addr")); a != "" {
		return a, nil
	}
	p := filepath.Join(dataDir(cmd), "admin.addr")
	b, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return defaultAdminAddr, nil
	case err != nil:
		return "", fmt.Errorf("--addr: %w", err)
	}
	a := strings.TrimSpace(string(b))
	if a == "" {
		return "", fmt.Errorf("--addr: %s is empty", p)
	}
	return a, nil
}

// tlsFiles are the files dialAdmin reads, and the flags that chose them.
type tlsFiles struct {
	cert, key, ca             string
	certFlag, keyFlag, caFlag string
}

func resolveTLSFiles(cmd *cobra.Command) tlsFiles {
	pkiDir := filepath.Join(dataDir(cmd), "pki")
	f := tlsFiles{
		cert: globalString(cmd, "cert"), certFlag: "--cert",
		key: globalString(cmd, "key"), keyFlag: "--key",
		ca: globalString(cmd, "ca"), caFlag: "--ca",
	}
	if a := globalString(cmd, "admin-ca"); a != "" {
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

// dialAdmin opens a client of the AdminService named by the global flags.
// The connection is lazy: a hub that is down shows up as Unavailable on the
// first call. The caller closes the returned connection.
func dialAdmin(cmd *cobra.Command) (hubv1.AdminServiceClient, *grpc.ClientConn, error) {
	// Refuse a bad -o before any call: a change must not be made and then
	// fail to print.
	if _, err := outputFormat(cmd); err != nil {
		return nil, nil, err
	}
	addr, err := adminAddr(cmd)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := clientTLS(cmd)
	if err != nil {
		return nil, nil, err
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, nil, fmt.Errorf("--addr %s: %w", addr, err)
	}
	return hubv1.NewAdminServiceClient(cc), cc, nil
}

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
