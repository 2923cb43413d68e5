package hub

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"clearhub/ledger"
)

const (
	deadUDPEdge = "sip:127.0.0.3:1;transport=udp" // silent: times out
	deadTCPEdge = "sip:127.0.0.3:1;transport=tcp" // connection refused
)

// Dead edges (refused, silent) and an edge answering 503 are skipped in
// failover order until one answers.
func TestFailoverToNextEdge(t *testing.T) {
	busy := newMember(t, "busy", "b.example", "127.0.0.3", memberOpts{})
	busy.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil))
	})
	l := newLab(t, "udp", deadTCPEdge, deadUDPEdge, busy.edge())
	res := l.a.do(l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp))
	if res.StatusCode != 200 {
		t.Fatalf("got %d %s, want 200 from the last edge", res.StatusCode, res.Reason)
	}
	busy.expect(sip.MESSAGE)
	l.b.expect(sip.MESSAGE)
}

// With every edge down the sender gets an answer promptly: 408 when an edge
// stayed silent, 503 with Retry-After when all refused.
func TestAllEdgesDown(t *testing.T) {
	cases := []struct {
		name   string
		edges  []string
		status int
	}{
		{"silent", []string{deadTCPEdge, deadUDPEdge}, 408},
		{"refused", []string{deadTCPEdge}, 503},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, "udp")
			cs := labState(l.a, l.b)
			cs.Networks[1].Edges = tc.edges
			l.state.set(cs)
			start := time.Now()
			req := l.a.newRequest(sip.MESSAGE, "sip:bob@b.example", l.udp)
			res := l.a.do(req)
			if res.StatusCode != tc.status {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, tc.status)
			}
			if tc.status == 503 && res.GetHeader("Retry-After") == nil {
				t.Error("503 without Retry-After")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("answer took %v", d)
			}
			l.audit.waitAudit(t, ledger.KindResponse, "MESSAGE", tc.status, req.CallID().Value())
		})
	}
}

// A CANCELled INVITE: the caller gets 487, the callee sees the CANCEL.
func TestCancelledInvite(t *testing.T) {
	l := newLab(t, "udp")
	sawCancel := make(chan struct{})
	l.b.setHandler(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.Method != sip.INVITE {
			return
		}
		tx.OnCancel(func(*sip.Request) { close(sawCancel) })
		_ = tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		select {
		case <-tx.Done():
		case <-time.After(3 * time.Second):
		}
	})
	inv := l.a.newRequest(sip.INVITE, "sip:bob@b.example", l.udp)
	tx, err := l.a.cl.TransactionRequest(t.Context(), inv)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Terminate()
	waitStatus := func(want int) {
		t.Helper()
		timeout := time.After(3 * time.Second)
		for {
			select {
			case r := <-tx.Responses():
				if r.StatusCode == want {
					return
				}
			case <-timeout:
				t.Fatalf("no %d for the INVITE", want)
			}
		}
	}
	waitStatus(180)
	cancel := sip.NewRequest(sip.CANCEL, inv.Recipient)
	cancel.AppendHeader(sip.HeaderClone(inv.Via()))
	for _, n := range []string{"From", "To", "Call-ID"} {
		cancel.AppendHeader(sip.HeaderClone(inv.GetHeader(n)))
	}
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancel.SetTransport("UDP")
	cancel.SetDestination(l.udp)
	if res := l.a.do(cancel); res.StatusCode != 200 {
		t.Fatalf("CANCEL: %d", res.StatusCode)
	}
	waitStatus(487)
	select {
	case <-sawCancel:
	case <-time.After(3 * time.Second):
		t.Fatal("CANCEL not propagated downstream")
	}
	l.audit.waitAudit(t, ledger.KindResponse, "INVITE", 487, inv.CallID().Value())
}
