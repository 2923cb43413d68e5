package msrp

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A file transfer offer (RFC 5547 section 8.1) with a chat section beside it.
const offerFT = "v=0\r\n" +
	"o=alice 2890844526 2890844527 IN IP4 alicepc.example.com\r\n" +
	"s=-\r\n" +
	"c=IN IP4 192.0.2.10\r\n" +
	"t=0 0\r\n" +
	"m=message 7654 TCP/MSRP *\r\n" +
	"i=This is my latest picture\r\n" +
	"a=sendonly\r\n" +
	"a=accept-types:message/cpim\r\n" +
	"a=accept-wrapped-types:image/jpeg text/plain\r\n" +
	"a=path:msrp://alicepc.example.com:7654/jshA7we;tcp\r\n" +
	"a=setup:actpass\r\n" +
	"a=file-selector:name:\"My cool picture.jpg\" type:image/jpeg size:32349 hash:sha-1:72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E\r\n" +
	"a=file-transfer-id:vBnG916bdberum2fFEABR1FR3ExZMUrd\r\n" +
	"a=file-disposition:attachment\r\n" +
	"a=file-date:creation:\"Mon, 15 May 2006 15:01:31 +0300\"\r\n" +
	"a=file-icon:cid:id2@alicepc.example.com\r\n" +
	"a=max-size:40000\r\n"

func TestRewriteSDPGolden(t *testing.T) {
	tests := []struct {
		name string
		in   string
		rw   map[int]Rewrite
		want string
	}{
		{
			name: "file transfer offer toward the answerer: session c= (only section), port, path, setup",
			in:   offerFT,
			rw:   map[int]Rewrite{0: {Path: "msrp://10.0.0.1:2855/hubB1;tcp", Host: "10.0.0.1", Port: 2855, Setup: "actpass"}},
			want: strings.NewReplacer(
				"c=IN IP4 192.0.2.10", "c=IN IP4 10.0.0.1",
				"m=message 7654 TCP/MSRP *", "m=message 2855 TCP/MSRP *",
				"a=path:msrp://alicepc.example.com:7654/jshA7we;tcp", "a=path:msrp://10.0.0.1:2855/hubB1;tcp",
			).Replace(offerFT),
		},
		{
			name: "TLS answer with media-level c= and fingerprint, LF line ends, audio left alone",
			in: "v=0\n" +
				"o=bob 1 1 IN IP4 b.example\n" +
				"s=-\n" +
				"c=IN IP4 198.51.100.7\n" +
				"t=0 0\n" +
				"m=audio 4000 RTP/AVP 0\n" +
				"m=message 9000 TCP/TLS/MSRP *\n" +
				"c=IN IP4 198.51.100.8\n" +
				"a=accept-types:text/plain message/cpim\n" +
				"a=path:msrps://198.51.100.8:9000/bobS;tcp\n" +
				"a=fingerprint:SHA-256 00:11\n" +
				"a=setup:passive\n",
			rw: map[int]Rewrite{1: {Path: "msrps://[2001:db8::1]:2856/hubA1;tcp", Host: "2001:db8::1", Port: 2856, Setup: "passive", Fingerprint: "sha-256 AA:BB"}},
			want: "v=0\n" +
				"o=bob 1 1 IN IP4 b.example\n" +
				"s=-\n" +
				"c=IN IP4 198.51.100.7\n" +
				"t=0 0\n" +
				"m=audio 4000 RTP/AVP 0\n" +
				"m=message 2856 TCP/TLS/MSRP *\n" +
				"c=IN IP6 2001:db8::1\n" +
				"a=accept-types:text/plain message/cpim\n" +
				"a=path:msrps://[2001:db8::1]:2856/hubA1;tcp\n" +
				"a=fingerprint:sha-256 AA:BB\n" +
				"a=setup:passive\n",
		},
		{
			name: "section without c= beside audio that uses the session c=: a media c= is added, and the setup and fingerprint it lacked",
			in:   "v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=message 7000 TCP/TLS/MSRP *\r\na=path:msrps://192.0.2.1:7000/s;tcp\r\na=accept-types:*\r\n",
			rw:   map[int]Rewrite{1: {Path: "msrps://10.0.0.1:2856/h;tcp", Host: "10.0.0.1", Port: 2856, Setup: "active", Fingerprint: "sha-256 AA"}},
			want: "v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=message 2856 TCP/TLS/MSRP *\r\nc=IN IP4 10.0.0.1\r\na=path:msrps://10.0.0.1:2856/h;tcp\r\na=setup:active\r\na=fingerprint:sha-256 AA\r\na=accept-types:*\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RewriteSDP([]byte(tt.in), tt.rw)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(strings.Split(tt.want, "\n"), strings.Split(string(got), "\n")); d != "" {
				t.Fatalf("rewritten SDP (-want +got):\n%s", d)
			}
		})
	}
}

// Only m=, c=, a=path, a=setup and a=fingerprint may differ, line by line.
func TestRewriteSDPKeepsOtherLines(t *testing.T) {
	got, err := RewriteSDP([]byte(offerFT), map[int]Rewrite{0: {Path: "msrp://h:1/s;tcp", Host: "10.1.1.1", Port: 1, Setup: "passive"}})
	if err != nil {
		t.Fatal(err)
	}
	in, out := strings.Split(offerFT, "\r\n"), strings.Split(string(got), "\r\n")
	if len(in) != len(out) {
		t.Fatalf("%d lines became %d", len(in), len(out))
	}
	changed := 0
	for i := range in {
		if in[i] == out[i] {
			continue
		}
		changed++
		ok := false
		for _, p := range []string{"m=", "c=", "a=path:", "a=setup:", "a=fingerprint:"} {
			ok = ok || strings.HasPrefix(in[i], p) && strings.HasPrefix(out[i], p)
		}
		if !ok {
			t.Errorf("line %d changed: %q -> %q", i, in[i], out[i])
		}
	}
	if changed != 4 {
		t.Fatalf("%d lines changed, want 4 (c=, m=, a=path, a=setup)", changed)
	}
}

func TestParseSDP(t *testing.T) {
	got := ParseSDP([]byte(offerFT + "m=message 0 TCP/MSRP *\r\nm=message 5 TCP/WS/MSRP *\r\n"))
	want := []Media{
		{Index: 0, Port: 7654, Proto: ProtoTCP, Path: []string{"msrp://alicepc.example.com:7654/jshA7we;tcp"}, Setup: "actpass", Direction: "sendonly",
			FileSelector:   `name:"My cool picture.jpg" type:image/jpeg size:32349 hash:sha-1:72:24:5F:E8:65:3D:DA:F3:71:36:2F:86:D4:71:91:3E:E4:A2:CE:2E`,
			FileTransferID: "vBnG916bdberum2fFEABR1FR3ExZMUrd", AcceptTypes: "message/cpim", MaxSize: 40000},
		{Index: 1, Port: 0, Proto: ProtoTCP, Direction: "sendrecv"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("media (-want +got):\n%s", d)
	}
}

func TestRewriteSDPRefuses(t *testing.T) {
	if _, err := RewriteSDP([]byte(offerFT), map[int]Rewrite{3: {}}); err == nil {
		t.Fatal("rewrote a section that does not exist")
	}
	if _, err := RewriteSDP([]byte(offerFT), map[int]Rewrite{0: {Path: "msrp://h:1/s;tcp\r\na=evil"}}); err == nil {
		t.Fatal("accepted a line break in a value")
	}
}

func FuzzRewriteSDP(f *testing.F) {
	f.Add([]byte(offerFT))
	f.Add([]byte("v=0\nm=message 1 TCP/TLS/MSRP *\na=path:x\nm=message 2 TCP/MSRP *\n"))
	f.Fuzz(func(t *testing.T, sdp []byte) {
		ms := ParseSDP(sdp)
		rw := map[int]Rewrite{}
		for _, m := range ms {
			rw[m.Index] = Rewrite{Path: "msrp://10.0.0.1:2855/s" + string(rune('a'+m.Index%26)) + ";tcp", Host: "10.0.0.1", Port: 2855, Setup: "passive", Fingerprint: "sha-256 AA"}
		}
		out, err := RewriteSDP(sdp, rw)
		if err != nil {
			t.Fatalf("rewrite of parsed sections failed: %v", err)
		}
		again := ParseSDP(out)
		if len(again) != len(ms) {
			t.Fatalf("%d sections became %d", len(ms), len(again))
		}
		for _, m := range again {
			if m.Port != 2855 {
				t.Fatalf("section %d port %d after rewrite", m.Index, m.Port)
			}
		}
	})
}
