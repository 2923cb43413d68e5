package chatroom

import (
	"testing"

	"clearhub/hub/msrp"
)

// FuzzSessionFrames: whatever a session participant sends over its bound
// MSRP connection (frames of any method, any body, garbage), the focus
// neither panics nor posts a message under someone else's name.
func FuzzSessionFrames(f *testing.F) {
	f.Add("SEND", "message/cpim", []byte("From: <sip:bob@b.example>\r\nTo: <sip:team@rooms.hub.example>\r\n\r\nContent-Type: text/plain\r\n\r\nhi"), "")
	f.Add("SEND", "message/cpim", []byte("From: <sip:alice@a.example>\r\n\r\nContent-Type: text/plain\r\n\r\nspoof"), "")
	f.Add("NICKNAME", "", []byte(nil), `"x y"`)
	f.Add("SEND", "message/cpim", []byte("To: <sip:carol@b.example>\r\nFrom: <sip:bob@b.example>\r\n\r\n"), "")
	f.Add("FOO", "text/plain", []byte("\x00\xff"), "")
	e := newEnv(f, func(c *Config) { c.SessionAddr = "127.0.0.1:0" })
	c := newRawMSRP(&testing.T{})
	res := e.serve(invite(bob, "fuzz-bob", c.sdp()), "b")
	var path string
	for _, m := range msrp.ParseSDP(res.Body()) {
		path = m.Path[0]
	}
	f.Fuzz(func(t *testing.T, method, ct string, body []byte, nick string) {
		l := e.svc.focus.byCall["fuzz-bob"]
		if l == nil || !validToken(method) || !safeHeader(ct) || !safeHeader(nick) {
			return
		}
		fr := &msrp.Frame{TID: "t1", Method: method, ToPath: []string{path}, FromPath: []string{c.uri}, MessageID: "m" + randomHex(3),
			ContentType: ct, Body: body, ByteRange: msrp.ByteRange{Start: 1, End: int64(len(body)), Total: int64(len(body))}, HasByteRange: true, Flag: msrp.FlagEnd}
		if nick != "" {
			fr.Other = []msrp.Header{{Name: "Use-Nickname", Value: nick}}
		}
		if msrp.BodyHasEndLine(body, fr.TID) {
			return
		}
		l.handle(fr)
		for _, m := range e.store.State().Room(room).GetHistory() {
			if m.GetSender() != bob && m.GetSender() != "" {
				t.Fatalf("a message from %s was posted over bob's session", m.GetSender())
			}
		}
	})
}

func validToken(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
