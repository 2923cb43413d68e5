package raft

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"clearhub/proto/hubv1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCA is a throwaway CA for tests; roles ride in the subject OU the way
// ops/pki puts them ("node", "member", "operator").
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
	pool *x509.CertPool
}

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool,
		pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

var serial sync.Mutex
var nextSerial int64 = 100

func (ca *testCA) issue(t testing.TB, ou, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	nextSerial++
	sn := nextSerial
	serial.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn),
		Subject:      pkix.Name{CommonName: cn, OrganizationalUnit: []string{ou}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// requireOU stands in for pki.VerifyRole: the peer's leaf must carry ou.
func requireOU(ou string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("no peer certificate")
		}
		if !slices.Contains(cs.PeerCertificates[0].Subject.OrganizationalUnit, ou) {
			return fmt.Errorf("peer %q is not a %s", cs.PeerCertificates[0].Subject.CommonName, ou)
		}
		return nil
	}
}

// tlsConfigs returns the server and client configs a node with cert uses.
func tlsConfigs(ca *testCA, cert tls.Certificate) (server, client *tls.Config) {
	server = &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        ca.pool,
		VerifyConnection: requireOU("node"),
	}
	client = &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		RootCAs:          ca.pool,
		VerifyConnection: requireOU("node"),
	}
	return server, client
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// recordHandler keeps every message logged through it.
type recordHandler struct {
	mu   *sync.Mutex
	msgs *[]string
}

func newRecorder() (*slog.Logger, func(substr string) int) {
	h := recordHandler{mu: &sync.Mutex{}, msgs: &[]string{}}
	count := func(substr string) int {
		h.mu.Lock()
		defer h.mu.Unlock()
		n := 0
		for _, m := range *h.msgs {
			if strings.Contains(m, substr) {
				n++
			}
		}
		return n
	}
	return slog.New(h), count
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.msgs = append(*h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// testNetwork returns a valid network with one domain and one edge.
func testNetwork(id string, domains ...string) *hubv1.Network {
	if len(domains) == 0 {
		domains = []string{id + ".example"}
	}
	return &hubv1.Network{
		Id:          id,
		DisplayName: "Network " + strings.ToUpper(id),
		Domains:     domains,
		Edges:       []string{"sips:edge." + domains[0] + ":5061;transport=tls"},
		Services:    []hubv1.Service{hubv1.Service_SERVICE_IM, hubv1.Service_SERVICE_PRESENCE},
		// A pin unique to the id: proposals must name some identity.
		Identity: &hubv1.Identity{Pins: []string{fmt.Sprintf("%x", sha256.Sum256([]byte(id)))}},
	}
}

var clock int64 = 1_700_000_000_000_000_000

func cmdAt(t int64, op any) *hubv1.Command {
	c := &hubv1.Command{Version: 1, TimeUnixNano: t, Actor: "test"}
	switch op := op.(type) {
	case *hubv1.AddNetwork:
		c.Op = &hubv1.Command_AddNetwork{AddNetwork: op}
	case *hubv1.UpdateNetwork:
		c.Op = &hubv1.Command_UpdateNetwork{UpdateNetwork: op}
	case *hubv1.SetNetworkStatus:
		c.Op = &hubv1.Command_SetNetworkStatus{SetNetworkStatus: op}
	case *hubv1.RemoveNetwork:
		c.Op = &hubv1.Command_RemoveNetwork{RemoveNetwork: op}
	case *hubv1.PolicyAllow:
		c.Op = &hubv1.Command_PolicyAllow{PolicyAllow: op}
	case *hubv1.PolicyDeny:
		c.Op = &hubv1.Command_PolicyDeny{PolicyDeny: op}
	case *hubv1.PutNode:
		c.Op = &hubv1.Command_PutNode{PutNode: op}
	case *hubv1.RemoveNode:
		c.Op = &hubv1.Command_RemoveNode{RemoveNode: op}
	case nil:
	default:
		panic(fmt.Sprintf("cmdAt: %T", op))
	}
	return c
}

func cmd(op any) *hubv1.Command { return cmdAt(clock, op) }

func addNet(id string, domains ...string) *hubv1.Command {
	return cmd(&hubv1.AddNetwork{Network: testNetwork(id, domains...)})
}
