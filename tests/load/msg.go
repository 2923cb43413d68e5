package load

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SeqWidth is the number of decimal digits of the sequence number written
// into every Call-ID, branch and From tag: fixed width, so a datagram is
// made by copying the template and overwriting the digits in place.
const SeqWidth = 12

// MaxSeq is the largest sequence number that fits SeqWidth digits.
const MaxSeq = 999_999_999_999

// MessageParams describe the MESSAGE requests of one run.
type MessageParams struct {
	Transport  string // UDP, TCP or TLS (the Via transport, RFC 3261 18.1)
	Host       string // sent-by host in Via
	Port       int    // sent-by port in Via
	RunID      string // makes Call-IDs unique across runs: [A-Za-z0-9]+
	FromUser   string
	FromDomain string
	ToUser     string
	ToDomain   string
	Body       string
}

// Template is a request with SeqWidth-digit holes.
type Template struct {
	buf  []byte
	offs []int // where each copy of the sequence digits starts
}

// CallIDPrefix is what every Call-ID of the run starts with, before the
// sequence digits; ParseResponse matches responses to it.
func (p MessageParams) CallIDPrefix() string { return "ld" + p.RunID + "-" }

// NewMessageTemplate builds the MESSAGE template. The Via carries rport
// over UDP (RFC 3581) so answers come back to the sending socket, and a
// magic-cookie branch (RFC 3261 8.1.1.7) unique per request.
func NewMessageTemplate(p MessageParams) (*Template, error) {
	switch p.Transport {
	case "UDP", "TCP", "TLS":
	default:
		return nil, fmt.Errorf("transport %q: want UDP, TCP or TLS", p.Transport)
	}
	if p.RunID == "" || !isAlnum(p.RunID) {
		return nil, fmt.Errorf("run id %q: want letters and digits", p.RunID)
	}
	hole := string(bytes.Repeat([]byte{'0'}, SeqWidth))
	rport := ""
	if p.Transport == "UDP" {
		rport = ";rport"
	}
	head := "MESSAGE sip:" + p.ToUser + "@" + p.ToDomain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + p.Transport + " " + hostPort(p.Host, p.Port) + ";branch=z9hG4bK" + p.RunID + "x" + hole + rport + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + p.FromUser + "@" + p.FromDomain + ">;tag=" + p.RunID + "t" + hole + "\r\n" +
		"To: <sip:" + p.ToUser + "@" + p.ToDomain + ">\r\n" +
		"Call-ID: " + p.CallIDPrefix() + hole + "@" + p.FromDomain + "\r\n" +
		"CSeq: 1 MESSAGE\r\n" +
		"Content-Type: text/plain\r\n" +
		"Content-Length: " + strconv.Itoa(len(p.Body)) + "\r\n\r\n" + p.Body
	t := &Template{buf: []byte(head)}
	// The holes are the only runs of SeqWidth zeros preceded by the run id
	// and a marker; find them by those markers, not by the zeros alone.
	for _, marker := range []string{p.RunID + "x", p.RunID + "t", p.CallIDPrefix()} {
		i := bytes.Index(t.buf, []byte(marker+hole))
		if i < 0 {
			return nil, errors.New("template: sequence hole not found")
		}
		t.offs = append(t.offs, i+len(marker))
	}
	return t, nil
}

// Len is the size of every request made from the template.
func (t *Template) Len() int { return len(t.buf) }

// Fill writes the request with sequence number seq into dst (which must
// hold Len bytes) and returns dst[:Len]. It does not allocate.
func (t *Template) Fill(dst []byte, seq uint64) []byte {
	dst = dst[:len(t.buf)]
	copy(dst, t.buf)
	var digits [SeqWidth]byte
	for i := SeqWidth - 1; i >= 0; i-- {
		digits[i] = byte('0' + seq%10)
		seq /= 10
	}
	for _, o := range t.offs {
		copy(dst[o:o+SeqWidth], digits[:])
	}
	return dst
}

func hostPort(h string, port int) string {
	if strings.IndexByte(h, ':') >= 0 {
		h = "[" + h + "]"
	}
	return h + ":" + strconv.Itoa(port)
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
