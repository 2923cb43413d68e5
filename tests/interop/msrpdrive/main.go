// Command msrpdrive is the Go side of the interop case msrp-relay
// (tests/interop/msrp.sh): it runs the hub's MSRP relay (hub/msrp, the code
// hubd runs) with network B behind a third-party RFC 4976 relay (Kamailio
// 5.6's msrp module), plays both MSRP endpoints, and sets up the sessions
// as the proxy would (Offer/Answer on the SDP). The hub's leg toward B
// AUTHs to Kamailio with Digest, then a 100 KB message crosses A -> hub ->
// Kamailio -> B, a reply B -> Kamailio -> hub -> A, and a 1 MB RFC 5547
// file A -> B. The audit entries are written as JSON lines to -audit.
package main

import (
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
	"clearhub/ledger"
)

type memAudit struct {
	mu sync.Mutex
	es []*ledger.Entry
}

func (m *memAudit) Append(_ context.Context, e *ledger.Entry) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.es = append(m.es, e)
	return uint64(len(m.es)), nil
}

func (m *memAudit) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.es)
}

func main() {
	relay := flag.String("relay", "msrp://127.0.0.5:2855;tcp", "network B's MSRP relay")
	user := flag.String("user", "hub", "Digest user")
	pass := flag.String("password", "", "Digest password")
	hubIP := flag.String("hub-ip", "127.0.0.1", "the hub's MSRP address")
	aIP := flag.String("a-ip", "127.0.0.2", "endpoint A's address")
	bIP := flag.String("b-ip", "127.0.0.3", "endpoint B's address")
	auditOut := flag.String("audit", "msrp-audit.jsonl", "audit entries (JSON lines)")
	flag.Parse()
	if err := run(*relay, *user, *pass, *hubIP, *aIP, *bIP, *auditOut); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("OK")
}

func run(relayURI, user, pass, hubIP, aIP, bIP, auditOut string) error {
	audit := &memAudit{}
	var bigChunks atomic.Bool // the negative case: 16 KiB chunks toward B
	r, err := msrp.New(msrp.Config{
		Host: hubIP, TCPAddr: hubIP + ":0", Audit: audit,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Network: func(n string) msrp.NetworkSettings {
			if n == "net-b" {
				ns := msrp.NetworkSettings{Relay: &msrp.RelayAccount{URI: relayURI, Username: user, Password: pass}}
				if bigChunks.Load() {
					ns.MaxChunk = 16 << 10
				}
				return ns
			}
			return msrp.NetworkSettings{}
		},
	})
	if err != nil {
		return err
	}
	go func() { _ = r.Run(context.Background()) }()
	defer r.Close()

	session := func(cid string, extra ...string) (a, b *msrptest.Endpoint, toHubA, bPath []string, err error) {
		a = msrptest.New(aIP, nil)
		if b, err = msrptest.Listen(bIP, nil); err != nil {
			return
		}
		d := msrp.Dialog{CallID: cid, OffererNet: "net-a", AnswererNet: "net-b", Offerer: "sip:alice@a.example", Answerer: "sip:bob@b.example"}
		offer, err := r.Offer(d, a.SDP(extra...))
		if err != nil {
			return a, b, nil, nil, fmt.Errorf("offer (AUTH to %s): %w", relayURI, err)
		}
		om := msrp.ParseSDP(offer)
		if len(om) != 1 || len(om[0].Path) != 2 {
			return a, b, nil, nil, fmt.Errorf("offer toward B has no relay Use-Path: %q", offer)
		}
		fmt.Printf("offer toward B: a=path:%s\n", strings.Join(om[0].Path, " "))
		answer, err := r.Answer(d, b.SDP())
		if err != nil {
			return a, b, nil, nil, err
		}
		am := msrp.ParseSDP(answer)
		if len(am) != 1 {
			return a, b, nil, nil, fmt.Errorf("answer %q", answer)
		}
		if err = a.Connect(am[0].Path, nil); err != nil {
			return a, b, nil, nil, fmt.Errorf("A connect: %w", err)
		}
		return a, b, am[0].Path, om[0].Path, nil
	}

	a, b, toHubA, bPath, err := session("interop-msrp-chat")
	if err != nil {
		return err
	}
	defer a.Close()
	defer b.Close()
	body := make([]byte, 100_000)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	if code, err := a.Send(toHubA, "chat-100k", "text/plain", body, 64<<10, nil); err != nil || code != 200 {
		return fmt.Errorf("A send 100 KB: %d %v", code, err)
	}
	m, err := b.Wait("chat-100k", 15*time.Second)
	if err != nil || string(m.Body) != string(body) {
		return fmt.Errorf("B did not get the 100 KB message through Kamailio: %v", err)
	}
	maxRange := int64(0)
	for _, br := range m.Ranges {
		maxRange = max(maxRange, br.End-br.Start+1)
	}
	fmt.Printf("100 KB message: %d chunks at B, largest %d bytes, From-Path %s\n", m.Chunks, maxRange, strings.Join(m.FromPath, " "))
	if code, err := b.Send(bPath, "reply-1", "text/plain", []byte("hi alice, via Kamailio"), 1000, nil); err != nil || code != 200 {
		return fmt.Errorf("B send through Kamailio: %d %v", code, err)
	}
	if m, err := a.Wait("reply-1", 10*time.Second); err != nil || string(m.Body) != "hi alice, via Kamailio" {
		return fmt.Errorf("A did not get B's reply: %v", err)
	}
	fmt.Println("reply B -> Kamailio -> hub -> A: delivered")

	file := make([]byte, 1<<20)
	for i := range file {
		file[i] = byte(i * 7)
	}
	sum := sha1.Sum(file)
	var hx []string
	for _, x := range sum {
		hx = append(hx, fmt.Sprintf("%02X", x))
	}
	fa, fb, fToHub, _, err := session("interop-msrp-file", "a=sendonly",
		fmt.Sprintf(`a=file-selector:name:"interop.bin" type:application/octet-stream size:%d hash:sha-1:%s`, len(file), strings.Join(hx, ":")),
		"a=file-transfer-id:interop-ft-1")
	if err != nil {
		return err
	}
	defer fa.Close()
	defer fb.Close()
	if code, err := fa.Send(fToHub, "file-1m", "application/octet-stream", file, 64<<10, nil); err != nil || code != 200 {
		return fmt.Errorf("A send 1 MB file: %d %v", code, err)
	}
	fm, err := fb.Wait("file-1m", 30*time.Second)
	if err != nil || sha1.Sum(fm.Body) != sum {
		return fmt.Errorf("B did not get the 1 MB file intact: %v", err)
	}
	fmt.Printf("1 MB file: %d chunks at B\n", fm.Chunks)

	// Without the hub's re-chunking: one 16 KiB chunk toward B does not
	// pass Kamailio 5.6 (frames over its 10240-byte body limit are not
	// relayed), which is why max_chunk defaults to 8 KiB.
	bigChunks.Store(true)
	ga, gb, gToHub, _, err := session("interop-msrp-16k")
	if err != nil {
		return err
	}
	defer ga.Close()
	defer gb.Close()
	_, _ = ga.Send(gToHub, "single-16k", "text/plain", make([]byte, 16<<10), 16<<10, nil)
	if _, err := gb.Wait("single-16k", 3*time.Second); err == nil {
		return errors.New("a 16 KiB chunk passed Kamailio: its 10240-byte limit is not what the hub assumes")
	}
	fmt.Println("16 KiB single chunk toward Kamailio: not relayed (as documented)")
	bigChunks.Store(false)

	deadline := time.Now().Add(5 * time.Second)
	for audit.count() < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	f, err := os.Create(auditOut)
	if err != nil {
		return err
	}
	defer f.Close()
	audit.mu.Lock()
	defer audit.mu.Unlock()
	for _, e := range audit.es {
		line, _ := json.Marshal(e)
		fmt.Fprintf(f, "%s\n", line)
	}
	if len(audit.es) < 4 {
		return errors.New("fewer than 4 audit entries")
	}
	return nil
}
