package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bins builds hubd and hubctl once per test binary run.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func binaries(t *testing.T) (hubd, hubctl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "clearhub-e2e-bin")
		if buildErr != nil {
			return
		}
		for _, name := range []string{"hubd", "hubctl"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), "clearhub/cmd/"+name)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "hubd"), filepath.Join(binDir, "hubctl")
}

// Ports for hubd processes are picked below the kernel's ephemeral range
// (32768-60999 by default) and never handed out twice in one test binary:
// a node restarted on its ports must find them free, and a port taken from
// the ephemeral range could meanwhile become the local port of some other
// package's outgoing connection (packages run in parallel), which makes
// the restart fail with "address already in use".
var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// lowPort returns a loopback port below the ephemeral range that is free
// on TCP (and on UDP too when udp is set).
func lowPort(t *testing.T, udp bool) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 500 {
		p := 20000 + mrand.IntN(12000)
		if portsUsed[p] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		if udp {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				ln.Close()
				continue
			}
			pc.Close()
		}
		ln.Close()
		portsUsed[p] = true
		return addr
	}
	t.Fatal("no free loopback port below the ephemeral range")
	return ""
}

// freeAddr returns a loopback TCP address that was free a moment ago.
func freeAddr(t *testing.T) string { t.Helper(); return lowPort(t, false) }

// freeUDPTCP returns a port free on both UDP and TCP.
func freeUDPTCP(t *testing.T) string { t.Helper(); return lowPort(t, true) }

// node is one hubd process.
type node struct {
	id       string
	dir      string
	admin    string
	raft     string
	http     string
	sip      string // udp and tcp
	sipTLS   string
	extra    []string
	cmd      *exec.Cmd
	logs     *lockedWriter // the process writes it while tests read it: read through String
	exited   chan struct{}
	hubdPath string
}

func newNode(t *testing.T, id string) *node {
	hubd, _ := binaries(t)
	return &node{
		id: id, dir: filepath.Join(t.TempDir(), id),
		admin: freeAddr(t), raft: freeAddr(t), http: freeAddr(t),
		sip: freeUDPTCP(t), sipTLS: freeAddr(t), hubdPath: hubd,
	}
}

func (n *node) args() []string {
	a := []string{"--data", n.dir, "--node-id", n.id, "--admin", n.admin, "--raft", n.raft,
		"--http", n.http, "--sip-udp", n.sip, "--sip-tcp", n.sip, "--sip-tls", n.sipTLS,
		// No web console: every node would try the default 127.0.0.1:8443
		// and all but one lose it (the console has its own tests).
		"--console", ""}
	return append(a, n.extra...)
}

// start launches the process; it is killed at test cleanup.
func (n *node) start(t *testing.T, extra ...string) {
	t.Helper()
	// The tests read n.logs while exec's copier goroutine writes it; the
	// bare bytes.Buffer they used to read raced (-race failed
	// TestRestartServesOnlyRestoredState and TestRemovedNodeStopsServing).
	w := &lockedWriter{buf: &bytes.Buffer{}}
	n.logs = w
	n.cmd = exec.Command(n.hubdPath, append(n.args(), extra...)...)
	n.cmd.Stdout, n.cmd.Stderr = w, w
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.exited = make(chan struct{})
	cmd, exited := n.cmd, n.exited
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		n.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", n.id, w.String())
		}
	})
}

func (n *node) kill(sig syscall.Signal) {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.exited:
		return
	default:
	}
	n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
	}
}

// waitReady polls /readyz until it answers 200.
func (n *node) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-n.exited:
			t.Fatalf("%s exited before ready:\n%s", n.id, n.logs.String())
		default:
		}
		resp, err := http.Get("http://" + n.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %s", n.id, within)
}

type lockedWriter struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// hubctl runs the CLI against n and returns stdout; stderr is in the error.
func hubctl(t *testing.T, n *node, args ...string) (string, error) {
	t.Helper()
	_, ctl := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ctl, append([]string{"--addr", n.admin, "--data", n.dir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("hubctl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func mustHubctl(t *testing.T, n *node, args ...string) string {
	t.Helper()
	out, err := hubctl(t, n, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type clusterStatus struct {
	Leader       string          `json:"leader"`
	Term         json.RawMessage `json:"term"`
	AppliedIndex json.RawMessage `json:"applied_index"`
	Nodes        []struct {
		ID       string `json:"id"`
		Suffrage string `json:"suffrage"`
		State    string `json:"state"`
		Healthy  bool   `json:"healthy"`
		// PublicKey is the node's audit key as published in the cluster state.
		PublicKey string `json:"public_key"`
	} `json:"nodes"`
}

func status(t *testing.T, n *node) (clusterStatus, error) {
	t.Helper()
	out, err := hubctl(t, n, "cluster", "status", "-o", "json")
	if err != nil {
		return clusterStatus{}, err
	}
	var s clusterStatus
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return s, fmt.Errorf("cluster status json: %v: %s", err, out)
	}
	return s, nil
}

// eventually retries f until it returns nil or within passes.
func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, within, err)
}
