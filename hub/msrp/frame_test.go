package msrp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const rfcSend = "MSRP a786hjs2 SEND\r\n" +
	"To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n" +
	"From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n" +
	"Message-ID: 87652491\r\n" +
	"Byte-Range: 1-25/25\r\n" +
	"Success-Report: yes\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"Hey Bob, are you there?\r\n" +
	"-------a786hjs2$\r\n"

func TestReadFrame(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Frame
	}{
		{"RFC 4975 section 4 SEND", rfcSend, &Frame{
			TID: "a786hjs2", Method: "SEND",
			ToPath:    []string{"msrp://bob.example.com:8888/9di4eae923wzd;tcp"},
			FromPath:  []string{"msrp://alicepc.example.com:7777/iau39soe2843z;tcp"},
			MessageID: "87652491", ByteRange: ByteRange{1, 25, 25}, HasByteRange: true,
			SuccessReport: "yes", ContentType: "text/plain", Body: []byte("Hey Bob, are you there?"), Flag: '$',
		}},
		{"response without comment", "MSRP a786hjs2 200\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\n-------a786hjs2$\r\n", &Frame{
			TID: "a786hjs2", Code: 200, ToPath: []string{"msrp://a:1/x;tcp"}, FromPath: []string{"msrp://b:2/y;tcp"}, Flag: '$',
		}},
		{"response with comment", "MSRP d93kswow 413 Stop sending\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\n-------d93kswow$\r\n", &Frame{
			TID: "d93kswow", Code: 413, Phrase: "Stop sending", ToPath: []string{"msrp://a:1/x;tcp"}, FromPath: []string{"msrp://b:2/y;tcp"}, Flag: '$',
		}},
		{"REPORT with status, relay path", "MSRP dkei38sd REPORT\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrps://relay:2855/r;tcp msrp://b:2/y;tcp\r\nMessage-ID: 12339sdqwer\r\nByte-Range: 1-106/106\r\nStatus: 000 200 OK\r\n-------dkei38sd$\r\n", &Frame{
			TID: "dkei38sd", Method: "REPORT", ToPath: []string{"msrp://a:1/x;tcp"}, FromPath: []string{"msrps://relay:2855/r;tcp", "msrp://b:2/y;tcp"},
			MessageID: "12339sdqwer", ByteRange: ByteRange{1, 106, 106}, HasByteRange: true, Status: "000 200 OK", Flag: '$',
		}},
		{"first chunk of several, unknown total", "MSRP tid12345 SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\nMessage-ID: m1\r\nByte-Range: 1-*/*\r\nContent-Type: text/plain\r\n\r\nabc\r\n-------tid12345+\r\n", &Frame{
			TID: "tid12345", Method: "SEND", ToPath: []string{"msrp://a:1/x;tcp"}, FromPath: []string{"msrp://b:2/y;tcp"},
			MessageID: "m1", ByteRange: ByteRange{1, -1, -1}, HasByteRange: true, ContentType: "text/plain", Body: []byte("abc"), Flag: '+',
		}},
		{"aborted, body holds CRLFs and a fake end-line", "MSRP tid12345 SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\nMessage-ID: m1\r\nContent-Description: x\r\nContent-Type: application/octet-stream\r\n\r\nl1\r\n-------tid12346$\r\n\nl2\r\n-------tid12345#\r\n", &Frame{
			TID: "tid12345", Method: "SEND", ToPath: []string{"msrp://a:1/x;tcp"}, FromPath: []string{"msrp://b:2/y;tcp"},
			MessageID: "m1", Other: []Header{{"Content-Description", "x"}}, ContentType: "application/octet-stream",
			Body: []byte("l1\r\n-------tid12346$\r\n\nl2"), Flag: '#',
		}},
		{"empty body with Content-Type", "MSRP tid12345 SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\nMessage-ID: m1\r\nContent-Type: text/plain\r\n\r\n-------tid12345$\r\n", &Frame{
			TID: "tid12345", Method: "SEND", ToPath: []string{"msrp://a:1/x;tcp"}, FromPath: []string{"msrp://b:2/y;tcp"},
			MessageID: "m1", ContentType: "text/plain", Flag: '$',
		}},
		{"bodiless SEND (binds the connection)", "MSRP tid12345 SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\nMessage-ID: m1\r\nByte-Range: 1-0/0\r\n-------tid12345$\r\n", &Frame{
			TID: "tid12345", Method: "SEND", ToPath: []string{"msrp://a:1/x;tcp"}, FromPath: []string{"msrp://b:2/y;tcp"},
			MessageID: "m1", ByteRange: ByteRange{1, 0, 0}, HasByteRange: true, Flag: '$',
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewReader(strings.NewReader(tt.in), Limits{}).ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Fatalf("frame (-want +got):\n%s", d)
			}
			// Writing it back and reading again gives the same frame.
			again, err := NewReader(bytes.NewReader(got.Append(nil)), Limits{}).ReadFrame()
			if err != nil {
				t.Fatalf("re-read: %v\n%s", err, got.Append(nil))
			}
			if d := cmp.Diff(got, again); d != "" {
				t.Fatalf("round trip (-first +second):\n%s", d)
			}
		})
	}
}

func TestReadFrameWritesRFCBytes(t *testing.T) {
	f, err := NewReader(strings.NewReader(rfcSend), Limits{}).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	// Our header order puts Success-Report before Byte-Range.
	want := strings.Replace(rfcSend, "Byte-Range: 1-25/25\r\nSuccess-Report: yes\r\n", "Success-Report: yes\r\nByte-Range: 1-25/25\r\n", 1)
	if got := string(f.Append(nil)); got != want {
		t.Fatalf("wrote\n%q\nwant\n%q", got, want)
	}
}

func TestReadFrameErrors(t *testing.T) {
	head := "MSRP tid12345 SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\n"
	tests := []struct {
		name string
		in   string
		lim  Limits
		want error
	}{
		{"not MSRP", "HTTP/1.1 200 OK\r\n\r\n", Limits{}, ErrMalformed},
		{"short tid", "MSRP abc SEND\r\n", Limits{}, ErrMalformed},
		{"tid with a slash", "MSRP abc/defg SEND\r\n", Limits{}, ErrMalformed},
		{"lower-case method", "MSRP tid12345 send\r\n", Limits{}, ErrMalformed},
		{"status out of range", "MSRP tid12345 099 x\r\n", Limits{}, ErrMalformed},
		{"bare LF", "MSRP tid12345 SEND\n", Limits{}, ErrMalformed},
		{"header without colon", head + "Message-ID m1\r\n", Limits{}, ErrMalformed},
		{"bad Byte-Range", head + "Byte-Range: 10-5/20\r\n", Limits{}, ErrMalformed},
		{"Byte-Range beyond total", head + "Byte-Range: 1-30/20\r\n", Limits{}, ErrMalformed},
		{"Byte-Range start 0", head + "Byte-Range: 0-3/20\r\n", Limits{}, ErrMalformed},
		{"bad Failure-Report", head + "Failure-Report: maybe\r\n", Limits{}, ErrMalformed},
		{"body without Content-Type", head + "\r\nabc\r\n-------tid12345$\r\n", Limits{}, ErrMalformed},
		{"bad flag", head + "-------tid12345!\r\n", Limits{}, ErrMalformed},
		{"control character", head + "Message-ID: m\x001\r\n", Limits{}, ErrMalformed},
		{"line too long", head + "X-Long: " + strings.Repeat("a", 5000) + "\r\n", Limits{}, ErrTooLarge},
		{"headers too big", head + strings.Repeat("X-A: b\r\n", 200), Limits{MaxHeaders: 1024}, ErrTooLarge},
		{"body too big", head + "Content-Type: text/plain\r\n\r\n" + strings.Repeat("x", 2000) + "\r\n-------tid12345$\r\n", Limits{MaxBody: 1000}, ErrTooLarge},
		{"body too big without line breaks, never ended", head + "Content-Type: text/plain\r\n\r\n" + strings.Repeat("x", 100000), Limits{MaxBody: 1000}, ErrTooLarge},
		{"truncated in headers", head, Limits{}, io.ErrUnexpectedEOF},
		{"truncated in body", head + "Content-Type: text/plain\r\n\r\nabc", Limits{}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(strings.NewReader(tt.in), tt.lim).ReadFrame()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadFramesInSequence(t *testing.T) {
	in := rfcSend + "MSRP a786hjs2 200 OK\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\n-------a786hjs2$\r\n"
	r := NewReader(strings.NewReader(in), Limits{})
	for i, want := range []string{"SEND", ""} {
		f, err := r.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Method != want {
			t.Fatalf("frame %d: method %q, want %q", i, f.Method, want)
		}
		r.Release(f)
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		in   string
		want URI
		err  bool
	}{
		{"msrp://bob.example.com:8888/9di4eae923wzd;tcp", URI{"msrp", "bob.example.com", 8888, "9di4eae923wzd", "tcp"}, false},
		{"MSRPS://Relay.Example:2855/Abc;TCP", URI{"msrps", "relay.example", 2855, "Abc", "tcp"}, false},
		{"msrp://user@[2001:db8::1]:7777/s1;tcp;x=y", URI{"msrp", "2001:db8::1", 7777, "s1", "tcp"}, false},
		{"msrp://host/s1;tcp", URI{"msrp", "host", 0, "s1", "tcp"}, false},
		{"sip://host:1/s1;tcp", URI{}, true},
		{"msrp://host:1/s1", URI{}, true},
		{"msrp://host:99999/s1;tcp", URI{}, true},
		{"msrp://:1/s1;tcp", URI{}, true},
	}
	for _, tt := range tests {
		got, err := ParseURI(tt.in)
		if (err != nil) != tt.err {
			t.Fatalf("%q: err %v", tt.in, err)
		}
		if !tt.err && got != tt.want {
			t.Fatalf("%q: %+v, want %+v", tt.in, got, tt.want)
		}
	}
	a, _ := ParseURI("msrp://H:1/Sess;tcp")
	b, _ := ParseURI("msrp://h:1/sess;tcp")
	if a.Equal(b) {
		t.Fatal("session ids differing in case compared equal (RFC 4975 6.1: case-sensitive)")
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte(rfcSend))
	f.Add([]byte("MSRP tid12345 SEND\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\nMessage-ID: m1\r\nContent-Type: t/p\r\n\r\n\r\n-------tid12345$\r\n"))
	f.Add([]byte("MSRP dkei38sd REPORT\r\nTo-Path: msrp://a:1/x;tcp\r\nFrom-Path: msrp://b:2/y;tcp\r\nStatus: 000 200 OK\r\n-------dkei38sd$\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), Limits{MaxLine: 512, MaxHeaders: 2048, MaxBody: 4096})
		for i := 0; i < 8; i++ {
			fr, err := r.ReadFrame()
			if err != nil {
				return
			}
			if len(fr.Body) > 4096 {
				t.Fatalf("body of %d bytes passed a 4096 limit", len(fr.Body))
			}
			if BodyHasEndLine(fr.Body, fr.TID) {
				continue // a body that cannot be written back as is
			}
			wire := fr.Append(nil)
			again, err := NewReader(bytes.NewReader(wire), Limits{MaxLine: 1 << 16, MaxHeaders: 1 << 20, MaxBody: 1 << 20}).ReadFrame()
			if err != nil {
				t.Fatalf("re-read of a written frame: %v\n%q", err, wire)
			}
			if !bytes.Equal(again.Body, fr.Body) || again.TID != fr.TID || again.Flag != fr.Flag || again.MessageID != fr.MessageID {
				t.Fatalf("round trip changed the frame\n%q", wire)
			}
		}
	})
}
