package msrp

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const rawHead = "MSRP tid12345 SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\nMessage-ID: m1\r\n"

// A reader keeping raw bytes gives back each frame exactly as it arrived
// (what interception delivers), whatever the header order, case or body
// framing; a reader without them keeps none.
func TestRawBytesAreTheWire(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames []string
	}{
		{"RFC 4975 SEND", []string{rfcSend}},
		{"headers in an unusual order and case", []string{"MSRP tid12345 SEND\r\nfrom-path: msrp://b:2/y;tcp\r\nTO-PATH: msrp://a:1/x;tcp\r\nContent-Type: text/plain\r\nMessage-ID: m1\r\nX-Other:  spaced \r\n\r\nhi\r\n-------tid12345$\r\n"}},
		{"bodiless SEND", []string{rawHead + "Byte-Range: 1-0/0\r\n-------tid12345$\r\n"}},
		{"empty body, no data line", []string{rawHead + "Content-Type: text/plain\r\n\r\n-------tid12345$\r\n"}},
		{"empty data line", []string{rawHead + "Content-Type: text/plain\r\n\r\n\r\n-------tid12345$\r\n"}},
		{"body with CRLFs and a fake end-line", []string{rawHead + "Content-Type: a/b\r\n\r\nl1\r\n-------tid12346$\r\n\nl2\r\n-------tid12345#\r\n"}},
		{"response then chunks in sequence", []string{
			"MSRP a786hjs2 200 OK\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\n-------a786hjs2$\r\n",
			rawHead + "Byte-Range: 1-3/6\r\nContent-Type: text/plain\r\n\r\nabc\r\n-------tid12345+\r\n",
			strings.Replace(rawHead, "tid12345", "tid99999", 1) + "Byte-Range: 4-6/6\r\nContent-Type: text/plain\r\n\r\ndef\r\n-------tid99999$\r\n",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.Join(tc.frames, "")
			rd := NewReader(strings.NewReader(in), Limits{})
			rd.keepRaw = true
			plain := NewReader(strings.NewReader(in), Limits{})
			for i, want := range tc.frames {
				f, err := rd.ReadFrame()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if got := string(f.AppendRaw(nil)); got != want {
					t.Fatalf("frame %d raw\n%q\nwant\n%q", i, got, want)
				}
				rd.Release(f)
				g, err := plain.ReadFrame()
				if err != nil || len(g.Raw.Head)+len(g.Raw.Tail) != 0 || g.AppendRaw(nil) != nil {
					t.Fatalf("frame %d without keepRaw: %v, raw %q %q", i, err, g.Raw.Head, g.Raw.Tail)
				}
			}
		})
	}
}

// FuzzRawBytes: the raw bytes of the frames a reader accepts, in order,
// are a prefix of its input.
func FuzzRawBytes(f *testing.F) {
	f.Add([]byte(rfcSend + rfcSend))
	f.Add([]byte(rawHead + "Content-Type: t/p\r\n\r\n\r\n-------tid12345$\r\n"))
	f.Add([]byte(rawHead + "-------tid12345$\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader(bytes.NewReader(data), Limits{MaxLine: 512, MaxHeaders: 2048, MaxBody: 4096})
		rd.keepRaw = true
		var got []byte
		for range 8 {
			fr, err := rd.ReadFrame()
			if err != nil {
				break
			}
			got = fr.AppendRaw(got)
			rd.Release(fr)
		}
		if !bytes.HasPrefix(data, got) {
			t.Fatalf("raw bytes\n%q\nare not a prefix of the input\n%q", got, data)
		}
	})
}

type countTap struct{ wants, taps int }

func (c *countTap) WantsMSRP(string, string, *sip.Uri, *sip.Uri) bool { c.wants++; return false }
func (c *countTap) TapMSRP(TapChunk)                                  { c.taps++ }

// With no tap, or a tap that wants nothing, the per-chunk hook allocates
// nothing.
func TestTapAllocationFree(t *testing.T) {
	f := &Frame{TID: "t", Method: "SEND", ToPath: []string{"msrp://a:1/x;tcp"}, FromPath: []string{"msrp://b:2/y;tcp"},
		ContentType: "text/plain", Body: []byte("hello"), Flag: FlagEnd}
	for _, tc := range []struct {
		name string
		tap  ContentTap
	}{{"no tap", nil}, {"tap wants nothing", &countTap{}}} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Relay{cfg: Config{Tap: tc.tap}}
			s := &session{r: r, callID: "c", tapFrom: ParseParty("sip:alice@a.example"), tapTo: ParseParty("sip:bob@b.example")}
			s.legs[0] = &leg{s: s, side: 0, net: "neta"}
			s.legs[1] = &leg{s: s, side: 1, net: "netb"}
			now := time.Now()
			if n := testing.AllocsPerRun(1000, func() { s.legs[0].tap(f, now) }); n != 0 {
				t.Fatalf("%v allocations per chunk", n)
			}
			if c, ok := tc.tap.(*countTap); ok && (c.wants == 0 || c.taps != 0) {
				t.Fatalf("asked %d times, tapped %d", c.wants, c.taps)
			}
		})
	}
}

// A wanted chunk reaches the tap with both networks, the parties, the
// Call-ID and the connection's addresses.
type recordTap struct{ got []TapChunk }

func (r *recordTap) WantsMSRP(string, string, *sip.Uri, *sip.Uri) bool { return true }
func (r *recordTap) TapMSRP(c TapChunk)                                { r.got = append(r.got, c) }

func TestTapChunkFields(t *testing.T) {
	rt := &recordTap{}
	r := &Relay{cfg: Config{Tap: rt}}
	s := &session{r: r, callID: "c1", tapFrom: ParseParty("sip:alice@a.example"), tapTo: ParseParty("not a uri\x00")}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	s.legs[0] = &leg{s: s, side: 0, net: "neta", secure: true, conn: a, remote: "192.0.2.1:40000"}
	s.legs[1] = &leg{s: s, side: 1, net: "netb"}
	f := &Frame{TID: "t", Method: "SEND", ToPath: []string{"msrp://a:1/x;tcp"}, FromPath: []string{"msrp://b:2/y;tcp"},
		ContentType: "text/plain", Body: []byte("hello"), Flag: FlagEnd}
	at := time.Unix(1_800_000_000, 0)
	s.legs[0].tap(f, at)
	if len(rt.got) != 1 {
		t.Fatalf("%d chunks tapped", len(rt.got))
	}
	c := rt.got[0]
	if c.SrcNet != "neta" || c.DstNet != "netb" || c.CallID != "c1" || c.Transport != "tls" || c.Src != "192.0.2.1:40000" || c.Dst != "pipe" ||
		!c.Time.Equal(at) || c.From == nil || c.From.User != "alice" || c.To != nil || !bytes.Equal(c.Wire, f.Append(nil)) {
		t.Fatalf("chunk %+v", c)
	}
}
