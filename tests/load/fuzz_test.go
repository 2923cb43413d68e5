package load

import (
	"bytes"
	"testing"
)

// The driver's parsers read what the measured proxy sends: no input may
// panic them, and what they report must be consistent with the input.
func FuzzParsers(f *testing.F) {
	f.Add([]byte("SIP/2.0 200 OK\r\nCall-ID: ldab12-000000000042@a\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("MESSAGE sip:b SIP/2.0\r\nv: x\r\nf: a\r\nt: b\r\ni: c\r\nCSeq: 1 MESSAGE\r\nl: 2\r\n\r\nhi"))
	f.Add([]byte("\r\n\r\nSIP/2.0 503 X\r\n i: y\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\n\tcontinued\r\nl: 99999\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		status, _, err := ParseResponse(b, []byte("ldab12-"))
		if err == nil && (status < 100 || status > 999) {
			t.Fatalf("status %d accepted", status)
		}
		skip, n, _, err := FrameLen(b)
		if err == nil && (skip > len(b) || n > len(b) || (skip > 0 && n > 0)) {
			t.Fatalf("FrameLen(%d bytes) = %d, %d", len(b), skip, n)
		}
		out, ok := BuildResponse([]byte("p"), b, "tag")
		if !ok && !bytes.Equal(out, []byte("p")) {
			t.Fatalf("refused but wrote %q", out)
		}
		if ok && !bytes.HasSuffix(out, []byte("Content-Length: 0\r\n\r\n")) {
			t.Fatalf("answer not terminated: %q", out)
		}
	})
}
