package msrp

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

func TestDigestAuthorization(t *testing.T) {
	md := func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
	for _, tc := range []struct {
		name, challenge string
		wantErr         string
		qop             bool
	}{
		{"qop auth", `Digest realm="r", nonce="abc", qop="auth"`, "", true},
		{"qop list", `Digest realm="r", nonce="abc", qop="auth,auth-int", opaque="o1"`, "", true},
		{"no qop (RFC 2069)", `Digest realm="r",nonce="abc"`, "", false},
		{"Basic", `Basic realm="r"`, "not Digest", false},
		{"SHA-256 only", `Digest realm="r", nonce="abc", algorithm=SHA-256`, "unsupported", false},
		{"no nonce", `Digest realm="r"`, "without nonce", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := digestAuthorization(tc.challenge, "u", "p", "AUTH", "msrp://relay:2855;tcp")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := parseAuthParams(strings.TrimPrefix(got, "Digest "))
			ha1, ha2 := md("u:r:p"), md("AUTH:msrp://relay:2855;tcp")
			want := md(ha1 + ":abc:" + ha2)
			if tc.qop {
				want = md(ha1 + ":abc:" + p["nc"] + ":" + p["cnonce"] + ":auth:" + ha2)
			}
			if p["response"] != want || p["uri"] != "msrp://relay:2855;tcp" || p["username"] != "u" {
				t.Fatalf("authorization %q", got)
			}
			if strings.Contains(tc.challenge, "opaque") && p["opaque"] != "o1" {
				t.Fatalf("opaque not echoed: %q", got)
			}
		})
	}
}

func TestRelayAddr(t *testing.T) {
	for _, tc := range []struct {
		uri, addr string
		secure    bool
		bad       bool
	}{
		{"msrp://10.0.0.1:2856;tcp", "10.0.0.1:2856", false, false},
		{"msrps://relay.b.example;tcp", "relay.b.example:2855", true, false},
		{"msrps://relay.b.example:9000/abc;tcp", "relay.b.example:9000", true, false},
		{"msrp://[::1]:2856;tcp", "[::1]:2856", false, false},
		{"sip://x;tcp", "", false, true},
		{"msrp://;tcp", "", false, true},
	} {
		addr, secure, err := relayAddr(tc.uri)
		if (err != nil) != tc.bad || addr != tc.addr || secure != tc.secure {
			t.Errorf("relayAddr(%q) = %q %v %v", tc.uri, addr, secure, err)
		}
	}
}

// The challenge comes from a member's relay: nothing in it may crash the
// node, and the answer never carries a line break.
func FuzzDigestChallenge(f *testing.F) {
	f.Add(`Digest realm="r", nonce="abc", qop="auth"`)
	f.Add(`Digest realm="r, nonce=abc, qop=auth, opaque="`)
	f.Add(`Digest ,,,=,"`)
	f.Fuzz(func(t *testing.T, ch string) {
		if strings.ContainsAny(ch, "\r\n") {
			return // the frame reader refuses control characters in headers
		}
		got, err := digestAuthorization(ch, "u", "p", "AUTH", "msrp://r;tcp")
		if err == nil && strings.ContainsAny(got, "\r\n") {
			t.Fatalf("line break in %q", got)
		}
	})
}

// What a relay puts in its 200 is bounded: Expires is capped at a day (a
// huge value overflowed the refresh timer), absent or nonsense takes 30
// minutes, and a bad Use-Path is refused.
func TestAuthResponseBounds(t *testing.T) {
	for _, tc := range []struct {
		name, expires, usePath string
		want                   time.Duration
		wantErr                string
	}{
		{"relay's value", "600", "msrp://r:1/s1;tcp", 10 * time.Minute, ""},
		{"huge", "99999999999", "msrp://r:1/s1;tcp", 24 * time.Hour, ""},
		{"negative", "-5", "msrp://r:1/s1;tcp", 30 * time.Minute, ""},
		{"absent", "", "msrp://r:1/s1;tcp", 30 * time.Minute, ""},
		{"no Use-Path", "600", "", 0, "without Use-Path"},
		{"bad Use-Path", "600", "sip:r", 0, "Use-Path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &leg{relay: &RelayAccount{URI: "msrp://r:1;tcp", Username: "u", Password: "p"}, hubURI: URI{Scheme: "msrp", Host: "h", Port: 1, Session: "x", Transport: "tcp"}}
			var hdrs []Header
			if tc.usePath != "" {
				hdrs = append(hdrs, Header{"Use-Path", tc.usePath})
			}
			if tc.expires != "" {
				hdrs = append(hdrs, Header{"Expires", tc.expires})
			}
			_, exp, err := l.auth(func(f *Frame) (*Frame, error) { return &Frame{TID: f.TID, Code: 200, Other: hdrs}, nil })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || exp != tc.want {
				t.Fatalf("expires %v %v, want %v", exp, err, tc.want)
			}
		})
	}
}
