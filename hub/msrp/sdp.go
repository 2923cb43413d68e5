package msrp

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// SDP offer/answer for MSRP (RFC 4975 section 8, RFC 6135 a=setup, RFC
// 4572 a=fingerprint, RFC 5547 file transfer). The hub changes, per
// m=message section it anchors, only the m= port, the c= address, a=path,
// a=setup and a=fingerprint; every other line (accept-types,
// accept-wrapped-types, max-size, file-selector, file-transfer-id, o=, ...)
// is kept byte for byte, in place.

// Protocols of an m=message line the hub anchors.
const (
	ProtoTCP = "TCP/MSRP"
	ProtoTLS = "TCP/TLS/MSRP"
)

// Media is one m=message section of an SDP body.
type Media struct {
	Index       int // position among all m= lines, from 0
	Port        int
	Proto       string // ProtoTCP or ProtoTLS (others are not listed)
	Path        []string
	Setup       string // a=setup value, "" when absent
	Fingerprint string // a=fingerprint value
	Direction   string // sendrecv (default), sendonly, recvonly, inactive
	// RFC 5547 file transfer attributes, raw values.
	FileSelector   string
	FileTransferID string
	AcceptTypes    string
	MaxSize        int64 // a=max-size, 0 when absent
	CEMA           bool  // a=msrp-cema (RFC 6714)
}

// IsFileTransfer reports whether the section offers a file (RFC 5547).
func (m Media) IsFileTransfer() bool { return m.FileSelector != "" }

type sdpLine struct {
	text string // without its terminator
	eol  string // "\r\n", "\n" or "" (last line without one)
}

func splitSDP(sdp []byte) []sdpLine {
	var out []sdpLine
	for len(sdp) > 0 {
		i := bytes.IndexByte(sdp, '\n')
		if i < 0 {
			out = append(out, sdpLine{text: string(sdp)})
			break
		}
		l := sdpLine{text: string(sdp[:i]), eol: "\n"}
		if strings.HasSuffix(l.text, "\r") {
			l.text, l.eol = l.text[:len(l.text)-1], "\r\n"
		}
		out = append(out, l)
		sdp = sdp[i+1:]
	}
	return out
}

// section is a span of lines [start, end) beginning with an m= line.
type section struct {
	start, end int
	media      Media
	msrp       bool
}

func sections(lines []sdpLine) (sessionEnd int, secs []section) {
	sessionEnd = len(lines)
	for i, l := range lines {
		if strings.HasPrefix(l.text, "m=") {
			if len(secs) == 0 {
				sessionEnd = i
			} else {
				secs[len(secs)-1].end = i
			}
			secs = append(secs, section{start: i, end: len(lines)})
		}
	}
	for k := range secs {
		s := &secs[k]
		s.media.Index = k
		f := strings.Fields(strings.TrimPrefix(lines[s.start].text, "m="))
		if len(f) < 3 {
			continue
		}
		port, err := strconv.Atoi(strings.SplitN(f[1], "/", 2)[0])
		if err != nil || port < 0 || port > 65535 {
			port = 1 // unparsable: count it as active, never rewrite it
		}
		s.media.Port = port
		if !strings.HasPrefix(lines[s.start].text, "m=message ") || err != nil {
			continue
		}
		proto := strings.ToUpper(f[2])
		if proto != ProtoTCP && proto != ProtoTLS {
			continue
		}
		s.msrp = true
		s.media.Port, s.media.Proto, s.media.Direction = port, proto, "sendrecv"
		for _, l := range lines[s.start+1 : s.end] {
			name, value, _ := strings.Cut(strings.TrimPrefix(l.text, "a="), ":")
			if !strings.HasPrefix(l.text, "a=") {
				continue
			}
			value = strings.TrimSpace(value)
			switch strings.ToLower(name) {
			case "path":
				s.media.Path = strings.Fields(value)
			case "setup":
				s.media.Setup = strings.ToLower(value)
			case "fingerprint":
				s.media.Fingerprint = value
			case "sendonly", "recvonly", "inactive", "sendrecv":
				s.media.Direction = strings.ToLower(name)
			case "file-selector":
				s.media.FileSelector = value
			case "file-transfer-id":
				s.media.FileTransferID = value
			case "accept-types":
				s.media.AcceptTypes = value
			case "max-size":
				s.media.MaxSize, _ = strconv.ParseInt(value, 10, 64)
			case "msrp-cema":
				s.media.CEMA = true
			}
		}
	}
	return sessionEnd, secs
}

// ParseSDP lists the MSRP m=message sections of sdp, disabled ones (port
// 0) included so callers can see a refusal in an answer.
func ParseSDP(sdp []byte) []Media {
	_, secs := sections(splitSDP(sdp))
	var out []Media
	for _, s := range secs {
		if s.msrp {
			out = append(out, s.media)
		}
	}
	return out
}

// Rewrite is what the hub puts into one m=message section.
type Rewrite struct {
	Path string // the hub's URI for this leg (a=path)
	Host string // the hub's MSRP address (c=)
	Port int    // the hub's MSRP port (m=)
	// Setup is the a=setup value; "" keeps the line as it is (or absent).
	Setup string
	// Fingerprint is the hub's certificate fingerprint ("sha-256 AB:..."),
	// replacing the endpoint's; "" removes none and adds none.
	Fingerprint string
}

// RewriteSDP applies rw (keyed by Media.Index) to sdp. Lines are kept with
// their own terminators; lines the hub adds (a=setup, a=fingerprint or c=
// that the section lacked) use the style of the line before them.
func RewriteSDP(sdp []byte, rw map[int]Rewrite) ([]byte, error) {
	lines := splitSDP(sdp)
	sessionEnd, secs := sections(lines)
	for idx, r := range rw {
		if idx < 0 || idx >= len(secs) || !secs[idx].msrp {
			return nil, fmt.Errorf("msrp sdp: section %d is not an MSRP m=message line", idx)
		}
		if strings.ContainsAny(r.Path+r.Host+r.Setup+r.Fingerprint, "\r\n") {
			return nil, fmt.Errorf("msrp sdp: line break in a rewritten value")
		}
	}
	// Session-level c= may be rewritten only if every active section is
	// anchored; otherwise anchored sections without their own c= get one.
	sessionC := -1
	for i := 0; i < sessionEnd; i++ {
		if strings.HasPrefix(lines[i].text, "c=") {
			sessionC = i
		}
	}
	allAnchored := true
	for k, s := range secs {
		if _, ok := rw[k]; !ok && s.media.Port != 0 {
			allAnchored = false
		}
	}
	type insert struct {
		after int
		text  string
	}
	var inserts []insert
	var sessionHost string
	for k, s := range secs {
		r, ok := rw[k]
		if !ok {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(lines[s.start].text, "m="))
		f[1] = strconv.Itoa(r.Port)
		lines[s.start].text = "m=" + strings.Join(f, " ")
		hasC, hasSetup, hasFP := false, false, false
		last := s.start // where inserted attributes go: after a=path
		for i := s.start + 1; i < s.end; i++ {
			t := lines[i].text
			switch {
			case strings.HasPrefix(t, "c="):
				hasC = true
				lines[i].text = connLine(t, r.Host)
			case strings.HasPrefix(t, "a=path:"):
				lines[i].text = "a=path:" + r.Path
				last = i
			case strings.HasPrefix(t, "a=setup:"):
				hasSetup = true
				if r.Setup != "" {
					lines[i].text = "a=setup:" + r.Setup
				}
			case strings.HasPrefix(t, "a=fingerprint:"):
				hasFP = true
				if r.Fingerprint != "" {
					lines[i].text = "a=fingerprint:" + r.Fingerprint
				}
			}
		}
		if last == s.start {
			last = s.end - 1
		}
		if !hasC {
			switch {
			case allAnchored && sessionC >= 0:
				sessionHost = r.Host
			default:
				at := s.start // RFC 4566 5: c= after m= and i=
				if at+1 < s.end && strings.HasPrefix(lines[at+1].text, "i=") {
					at++
				}
				inserts = append(inserts, insert{at, connLine("c=IN IP4 0.0.0.0", r.Host)})
			}
		}
		if !hasSetup && r.Setup != "" {
			inserts = append(inserts, insert{last, "a=setup:" + r.Setup})
		}
		if !hasFP && r.Fingerprint != "" {
			inserts = append(inserts, insert{last, "a=fingerprint:" + r.Fingerprint})
		}
	}
	if sessionHost != "" {
		lines[sessionC].text = connLine(lines[sessionC].text, sessionHost)
	}
	var b bytes.Buffer
	b.Grow(len(sdp) + 256)
	for i, l := range lines {
		b.WriteString(l.text)
		eol := l.eol
		added := false
		for j := range inserts {
			if inserts[j].after == i {
				if eol == "" {
					eol = "\r\n"
				}
				if !added {
					b.WriteString(eol)
					added = true
				}
				b.WriteString(inserts[j].text)
				b.WriteString(eol)
			}
		}
		if !added {
			b.WriteString(eol)
		}
	}
	return b.Bytes(), nil
}

// connLine rewrites a c= line for host, keeping a TTL/count suffix away
// (unicast MSRP has none).
func connLine(t, host string) string {
	at := "IP4"
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		at = "IP6"
	}
	f := strings.Fields(strings.TrimPrefix(t, "c="))
	nt := "IN"
	if len(f) > 0 {
		nt = f[0]
	}
	return "c=" + nt + " " + at + " " + host
}
