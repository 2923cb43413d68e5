package msrp

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"
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
