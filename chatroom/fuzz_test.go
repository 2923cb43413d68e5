package chatroom

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzCPIM: the parser never panics, and what the builder writes parses
// back to the same content, sender and time.
func FuzzCPIM(f *testing.F) {
	f.Add([]byte("From: Bob <sip:bob@b.example>\r\nTo: <sip:team@rooms.hub.example>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: 34jk324j\r\n\r\nContent-Type: text/plain\r\n\r\nhi"), "bob", "text/plain", []byte("hi"))
	f.Add([]byte("Content-Type: message/cpim\n\nFrom: <sip:a@b>\n\nContent-Type: text/plain\n\n"), "Alice Smith", "text/plain;charset=utf-8", []byte("\r\n\r\n"))
	f.Add([]byte("garbage"), "é", "image/png", []byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, raw []byte, nick, ct string, body []byte) {
		if m, err := ParseCPIM(raw); err == nil {
			_ = imdnHeaders(m)
		}
		if strings.TrimSpace(ct) == "" || !safeHeader(ct) || !safeHeader(nick) {
			return
		}
		at := time.Unix(1_700_000_000, 0)
		b := BuildCPIM(nick, "sip:alice@a.example", "sip:team@rooms.hub.example", at, nil, ct, body)
		m, err := ParseCPIM(b)
		if err != nil {
			t.Fatalf("built CPIM does not parse: %v\n%q", err, b)
		}
		if !bytes.Equal(m.Body, body) {
			t.Fatalf("content changed: %q -> %q", body, m.Body)
		}
		if m.Get("DateTime") != "2023-11-14T22:13:20Z" {
			t.Fatalf("DateTime = %q", m.Get("DateTime"))
		}
		if from := m.Get("From"); !bytes.HasSuffix([]byte(from), []byte("<sip:alice@a.example>")) || bytes.Contains([]byte(from), []byte(`"`)) {
			t.Fatalf("From = %q", from)
		}
	})
}

// FuzzParseCommand: never panics; a parsed command has a known name and
// arguments without spaces.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"#join", "#ban bob@b.example spam", "#topic ", "#HISTORY 5\r\n", "#\xff", "##"} {
		f.Add("text/plain", []byte(s))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		c, ok := ParseCommand(ct, body)
		if !ok {
			return
		}
		if _, known := commandHelp[c.Name]; !known {
			t.Fatalf("unknown command %q parsed", c.Name)
		}
		for _, a := range c.Args {
			if a == "" || bytes.ContainsAny([]byte(a), " \t\r\n") {
				t.Fatalf("bad argument %q", a)
			}
		}
	})
}
