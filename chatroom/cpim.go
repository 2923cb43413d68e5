package chatroom

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
)

// CPIM (RFC 3862) message/cpim bodies: the room builds them for
// participants that announced CPIM, and unwraps the ones participants send.
//
// Interop traps (HOSTING.md 1.1/1.6): liblinphone's grammar is strict RFC
// 3862 ABNF; a quoted display name in From ("Bob" <uri>) is refused as
// invalid, the token form (Bob <uri>) parses. So the builder writes the
// name only when it is a run of tokens, and otherwise no name at all.

// CPIMMessage is a parsed message/cpim body.
type CPIMMessage struct {
	// Headers are the message headers (RFC 3862 3.3) in order, name as
	// written.
	Headers []CPIMHeader
	// ContentType is the encapsulated MIME content's Content-Type.
	ContentType string
	// Body is the encapsulated content, byte for byte.
	Body []byte
}

// CPIMHeader is one CPIM message header line.
type CPIMHeader struct{ Name, Value string }

// Get returns the first value of header name (case-insensitive), or "".
func (m *CPIMMessage) Get(name string) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

const maxCPIMHeaders = 64

var errCPIM = errors.New("not a valid message/cpim body")

// ParseCPIM parses a message/cpim body as SIP carries it (RFC 3862 3; the
// SIP Content-Type is the outer MIME header): the message headers, a blank
// line, the encapsulated MIME headers, a blank line and the content. Some
// clients repeat the outer "Content-Type: message/cpim" block first; it is
// skipped. Lines end with CRLF (bare LF accepted: clients are sloppy).
func ParseCPIM(b []byte) (*CPIMMessage, error) {
	msgHeaders, rest, err := cpimBlock(b)
	if err != nil {
		return nil, fmt.Errorf("cpim message headers: %w", err)
	}
	if len(msgHeaders) == 0 {
		return nil, fmt.Errorf("%w: no message headers", errCPIM)
	}
	if allContent(msgHeaders) {
		if hs, r2, err := cpimBlock(rest); err == nil && len(hs) > 0 && !allContent(hs) {
			msgHeaders, rest = hs, r2
		}
	}
	mimeHeaders, rest, err := cpimBlock(rest)
	if err != nil {
		return nil, fmt.Errorf("cpim content headers: %w", err)
	}
	m := &CPIMMessage{Headers: msgHeaders, Body: rest}
	for _, h := range mimeHeaders {
		if strings.EqualFold(h.Name, "Content-Type") {
			m.ContentType = h.Value
		}
	}
	if m.ContentType == "" {
		return nil, fmt.Errorf("%w: no encapsulated Content-Type", errCPIM)
	}
	return m, nil
}

func allContent(hs []CPIMHeader) bool {
	for _, h := range hs {
		if !strings.HasPrefix(strings.ToLower(h.Name), "content-") {
			return false
		}
	}
	return true
}

// cpimBlock reads header lines up to and including the blank line.
func cpimBlock(b []byte) ([]CPIMHeader, []byte, error) {
	var hs []CPIMHeader
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil, nil, fmt.Errorf("%w: header block not ended by a blank line", errCPIM)
		}
		line := string(bytes.TrimSuffix(b[:i], []byte{'\r'}))
		b = b[i+1:]
		if line == "" {
			return hs, b, nil
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, nil, fmt.Errorf("%w: bad header line %.40q", errCPIM, line)
		}
		if len(hs) == maxCPIMHeaders {
			return nil, nil, fmt.Errorf("%w: more than %d headers", errCPIM, maxCPIMHeaders)
		}
		hs = append(hs, CPIMHeader{Name: name, Value: strings.TrimSpace(value)})
	}
}

// BuildCPIM returns a message/cpim body: From names the sender (token-form
// display name when nick is a run of tokens, else none), To the room,
// DateTime the message's commit time (RFC 3339, UTC), extra headers
// (e.g. the sender's imdn.* headers with their NS line) as given, then the
// content with its Content-Type, unchanged.
func BuildCPIM(nick, sender, room string, at time.Time, extra []CPIMHeader, contentType string, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString("From: ")
	if isCPIMTokens(nick) {
		b.WriteString(nick)
		b.WriteByte(' ')
	}
	b.WriteString("<" + sender + ">\r\n")
	b.WriteString("To: <" + room + ">\r\n")
	b.WriteString("DateTime: " + at.UTC().Format(time.RFC3339) + "\r\n")
	for _, h := range extra {
		if safeHeader(h.Name) && safeHeader(h.Value) {
			b.WriteString(h.Name + ": " + h.Value + "\r\n")
		}
	}
	b.WriteString("\r\nContent-Type: " + contentType + "\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

func safeHeader(s string) bool { return !strings.ContainsAny(s, "\r\n") }

// isCPIMTokens reports whether s is a display name RFC 3862 allows
// unquoted: 1*(token SP) — here one or more tokens separated by single
// spaces, ASCII token characters only.
func isCPIMTokens(s string) bool {
	if s == "" {
		return false
	}
	for _, w := range strings.Split(s, " ") {
		if w == "" {
			return false
		}
		for i := 0; i < len(w); i++ {
			c := w[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// imdnHeaders returns the NS line for imdn and the imdn.* headers of m,
// to pass through to recipients (RFC 5438 receipts name the message id).
func imdnHeaders(m *CPIMMessage) []CPIMHeader {
	var out []CPIMHeader
	prefix := ""
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, "NS") && strings.Contains(h.Value, "urn:ietf:params:imdn") {
			out = append(out, h)
			if p, _, ok := strings.Cut(strings.TrimSpace(h.Value), " "); ok {
				prefix = p + "."
			}
		}
	}
	if prefix == "" {
		return nil
	}
	for _, h := range m.Headers {
		if strings.HasPrefix(h.Name, prefix) {
			out = append(out, h)
		}
	}
	return out
}
