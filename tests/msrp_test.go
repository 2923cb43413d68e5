package tests

import (
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"clearhub/hub/msrp"
	"clearhub/hub/msrp/msrptest"
)

// sdpRequest is an INVITE with an SDP offer (the helpers in sipwire_test.go
// send text/plain bodies).
func sdpRequest(ruri, from, to, via, contact, callID string, sdp []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INVITE %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\n", ruri, via)
	fmt.Fprintf(&b, "From: <%s>;tag=%s\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n", from, callID[:6], to, callID)
	fmt.Fprintf(&b, "Contact: <%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", contact, len(sdp), sdp)
	return b.String()
}

// sdpAnswer is a 200 to req carrying an SDP answer.
func sdpAnswer(req *sipMsg, contact string, sdp []byte) string {
	r := response(req, 200, "OK")
	r = strings.TrimSuffix(r, "Content-Length: 0\r\n\r\n")
	return r + fmt.Sprintf("Contact: <%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", contact, len(sdp), sdp)
}

type msrpAuditEntry struct {
	Type       string `json:"type"`
	Kind       string `json:"kind"`
	Method     string `json:"method"`
	CallID     string `json:"call_id"`
	Status     int    `json:"status"`
	SrcNet     string `json:"src_net"`
	DstNet     string `json:"dst_net"`
	From       string `json:"from"`
	To         string `json:"to"`
	Reason     string `json:"reason"`
	BodyType   string `json:"body_type"`
	BodySHA256 string `json:"body_sha256"`
}

// An MSRP chat and an RFC 5547 file transfer set up by INVITEs between two
// member edges cross a real hubd: the SDP names the hub, a 100 KB message
// and a 1 MB file arrive intact (re-chunked to 8 KiB), and the audit export
// has the MSRP and MSRP-FILE entries with the hub-verified SHA-1.
func TestMSRPThroughHub(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	msrpAddr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "hubd.yaml")
	if err := os.WriteFile(cfg, []byte("msrp:\n  tcp: "+msrpAddr+"\n  host: 127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n1 := newNode(t, "n1")
	n1.start(t, "--config", cfg)
	n1.waitReady(t, 30*time.Second)
	a, b := newUDPPeer(t, "127.0.0.2"), newUDPPeer(t, "127.0.0.3")
	mustHubctl(t, n1, "network", "add", "net-a", "--domain", "a.example", "--edge", "sip:"+a.addr(), "--cidr", "127.0.0.2/32")
	mustHubctl(t, n1, "network", "add", "net-b", "--domain", "b.example", "--edge", "sip:"+b.addr(), "--cidr", "127.0.0.3/32")
	mustHubctl(t, n1, "policy", "allow", "net-b", "--from", "net-a", "--services", "session,file")
	mustHubctl(t, n1, "network", "update", "net-a", "--msrp-max-file-size", "2000000")

	// call runs one INVITE/200 with MSRP SDP through the hub and connects
	// both MSRP endpoints to it; it returns a's To-Path (the hub's A leg).
	call := func(t *testing.T, cid string, offerExtra ...string) (ea, eb *msrptest.Endpoint, toHub []string) {
		t.Helper()
		ea = msrptest.New("127.0.0.2", nil)
		eb, err := msrptest.Listen("127.0.0.3", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ea.Close(); eb.Close() })
		a.send(t, n1.sip, sdpRequest("sip:bob@b.example", "sip:alice@a.example", "sip:bob@b.example",
			"SIP/2.0/UDP "+a.addr()+";branch=z9hG4bK"+cid, "sip:alice@"+a.addr(), cid, ea.SDP(offerExtra...)))
		inv, from := b.recv(t, 5*time.Second)
		for inv.status() != 0 { // a 100 Trying would come to a, not b; be safe
			inv, from = b.recv(t, 5*time.Second)
		}
		om := msrp.ParseSDP([]byte(inv.body))
		if len(om) != 1 || len(om[0].Path) != 1 || !strings.HasPrefix(om[0].Path[0], "msrp://"+msrpAddr+"/") {
			t.Fatalf("offer at b does not name the hub's MSRP listener %s: %q", msrpAddr, inv.body)
		}
		for _, l := range offerExtra {
			if !strings.Contains(inv.body, l) {
				t.Fatalf("offer at b lost %q", l)
			}
		}
		b.send(t, from, sdpAnswer(inv, "sip:bob@"+b.addr(), eb.SDP()))
		res := a.recvFinal(t, 5*time.Second)
		if res.status() != 200 {
			t.Fatalf("a got %q", res.start)
		}
		am := msrp.ParseSDP([]byte(res.body))
		if len(am) != 1 || !strings.HasPrefix(am[0].Path[0], "msrp://"+msrpAddr+"/") {
			t.Fatalf("answer at a does not name the hub: %q", res.body)
		}
		if err := ea.Connect(am[0].Path, nil); err != nil {
			t.Fatal(err)
		}
		if err := eb.WaitConnected(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		return ea, eb, am[0].Path
	}

	chatCID := callID()
	t.Run("100 KB message", func(t *testing.T) {
		ea, eb, toHub := call(t, chatCID)
		body := make([]byte, 100_000)
		for i := range body {
			body[i] = byte('a' + i%26)
		}
		if code, err := ea.Send(toHub, "chat-100k", "text/plain", body, 32<<10, nil); err != nil || code != 200 {
			t.Fatalf("send: %d %v", code, err)
		}
		m, err := eb.Wait("chat-100k", 10*time.Second)
		if err != nil || string(m.Body) != string(body) {
			t.Fatalf("b received %v", err)
		}
		if m.Chunks < 13 { // 100,000 bytes in chunks of at most 8 KiB
			t.Fatalf("%d chunks at b, want the hub's 8 KiB re-chunking", m.Chunks)
		}
	})

	file := make([]byte, 1<<20)
	for i := range file {
		file[i] = byte(i * 7)
	}
	sum := sha1.Sum(file)
	var hexColons []string
	for _, x := range sum {
		hexColons = append(hexColons, fmt.Sprintf("%02X", x))
	}
	fileCID := callID()
	t.Run("1 MB file", func(t *testing.T) {
		ea, eb, toHub := call(t, fileCID, "a=sendonly",
			fmt.Sprintf(`a=file-selector:name:"photo.bin" type:application/octet-stream size:%d hash:sha-1:%s`, len(file), strings.Join(hexColons, ":")),
			"a=file-transfer-id:ft-e2e-1")
		if code, err := ea.Send(toHub, "file-1m", "application/octet-stream", file, 64<<10, nil); err != nil || code != 200 {
			t.Fatalf("send: %d %v", code, err)
		}
		m, err := eb.Wait("file-1m", 20*time.Second)
		if err != nil || sha1.Sum(m.Body) != sum {
			t.Fatalf("b received %v", err)
		}
	})

	// net-b gets its own RFC 4976 relay through the admin API: the hub's
	// leg toward it AUTHs there and the offer carries its Use-Path; the
	// password never comes back out.
	relayCID := callID()
	t.Run("through net-b's relay", func(t *testing.T) {
		rel, err := msrptest.ListenRelay("127.0.0.4", "hub", "e2e-s3cret")
		if err != nil {
			t.Fatal(err)
		}
		defer rel.Close()
		pw := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(pw, []byte("e2e-s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		mustHubctl(t, n1, "network", "update", "net-b", "--msrp-relay", rel.Addr(), "--msrp-relay-user", "hub",
			"--msrp-relay-password-file", pw, "--msrp-max-chunk", "4096")
		if got := mustHubctl(t, n1, "network", "get", "net-b", "-o", "json"); strings.Contains(got, "e2e-s3cret") || !strings.Contains(got, `"relay_password_set": true`) {
			t.Fatalf("network get shows the password or no relay: %s", got)
		}
		ea := msrptest.New("127.0.0.2", nil)
		eb, err := msrptest.Listen("127.0.0.3", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ea.Close()
		defer eb.Close()
		a.send(t, n1.sip, sdpRequest("sip:bob@b.example", "sip:alice@a.example", "sip:bob@b.example",
			"SIP/2.0/UDP "+a.addr()+";branch=z9hG4bK"+relayCID, "sip:alice@"+a.addr(), relayCID, ea.SDP()))
		inv, from := b.recv(t, 5*time.Second)
		om := msrp.ParseSDP([]byte(inv.body))
		if len(om) != 1 || len(om[0].Path) != 2 || !strings.HasPrefix(om[0].Path[0], fmt.Sprintf("msrp://%s:%d/s.", rel.URI.Host, rel.URI.Port)) {
			t.Fatalf("offer at b lacks the relay's Use-Path: %q", inv.body)
		}
		b.send(t, from, sdpAnswer(inv, "sip:bob@"+b.addr(), eb.SDP()))
		res := a.recvFinal(t, 5*time.Second)
		am := msrp.ParseSDP([]byte(res.body))
		if res.status() != 200 || len(am) != 1 {
			t.Fatalf("a got %q", res.start)
		}
		if err := ea.Connect(am[0].Path, nil); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, 100_000)
		if code, err := ea.Send(am[0].Path, "via-relay-100k", "text/plain", body, 32<<10, nil); err != nil || code != 200 {
			t.Fatalf("send: %d %v", code, err)
		}
		if m, err := eb.Wait("via-relay-100k", 10*time.Second); err != nil || len(m.Body) != len(body) {
			t.Fatalf("b received %v", err)
		}
		auths, sizes, _ := rel.Stats()
		if auths != 1 || slices.Max(sizes) > 4096 {
			t.Fatalf("relay saw %d AUTHs, largest chunk %d (net-b's max is 4096)", auths, slices.Max(sizes))
		}
	})

	out := filepath.Join(t.TempDir(), "audit.jsonl")
	var got []msrpAuditEntry
	eventually(t, 10*time.Second, "MSRP audit entries", func() error {
		if _, err := hubctl(t, n1, "audit", "export", out, "--network", "net-a", "--kind", "msrp"); err != nil {
			return err
		}
		raw, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		got = got[:0]
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var e msrpAuditEntry
			if json.Unmarshal([]byte(line), &e) == nil && e.Type == "entry" && strings.HasPrefix(e.Method, "MSRP") {
				got = append(got, e)
			}
		}
		if len(got) < 4 {
			return fmt.Errorf("%d MSRP entries", len(got))
		}
		return nil
	})
	for _, want := range []struct {
		method, callID, sub string
	}{
		{msrp.MethodMessage, chatCID, "message-id=chat-100k bytes=100000"},
		{msrp.MethodMessage, fileCID, "message-id=file-1m bytes=1048576"},
		{msrp.MethodFile, fileCID, "sha1=verified"},
		{msrp.MethodMessage, relayCID, "message-id=via-relay-100k bytes=100000"},
	} {
		found := false
		for _, e := range got {
			if e.Kind == "msrp" && e.Method == want.method && e.CallID == want.callID && strings.Contains(e.Reason, want.sub) &&
				e.Status == 200 && e.SrcNet == "net-a" && e.DstNet == "net-b" && e.BodySHA256 != "" {
				found = true
				t.Logf("audit: %s %s status=%d %s", e.Kind, e.Method, e.Status, e.Reason)
			}
		}
		if !found {
			t.Errorf("no %s entry for call %s with %q in %+v", want.method, want.callID, want.sub, got)
		}
	}
}
