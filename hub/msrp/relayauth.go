package msrp

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Legs through a member's own RFC 4976 relay. When the network of a leg
// has a relay configured (NetworkSettings.Relay), the hub is that relay's
// client (RFC 4976 section 5): it connects to the relay, sends AUTH, answers
// the 401 Digest challenge, and gets a Use-Path and an Expires in the 200.
// The SDP toward the network then carries a=path "<Use-Path> <hub leg
// URI>" (RFC 4976 section 6: the client's path lists its relays first, so
// the far side sends to the relay, which forwards to the hub), and every
// request the hub sends on the leg has To-Path "<Use-Path> <endpoint's
// a=path>" (section 7.1: the client's own relays come first). The relay
// delivers the endpoint's frames on the hub's AUTH connection (or on a
// connection it opens toward the hub's listener, accepted only from the
// relay's address). The hub AUTHs again before Expires runs out.

// relayAddr turns a relay URI (session-id optional, RFC 4976 section 5
// lets a configured relay URI have none) into its dial address.
func relayAddr(uri string) (addr string, secure bool, err error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return "", false, fmt.Errorf("relay URI %q: no scheme", uri)
	}
	switch strings.ToLower(scheme) {
	case "msrp":
	case "msrps":
		secure = true
	default:
		return "", false, fmt.Errorf("relay URI %q: scheme", uri)
	}
	auth, _, _ := strings.Cut(rest, ";")
	auth, _, _ = strings.Cut(auth, "/")
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		auth = auth[at+1:]
	}
	host, port, err := net.SplitHostPort(auth)
	if err != nil {
		host, port = strings.Trim(auth, "[]"), "2855"
	}
	if host == "" {
		return "", false, fmt.Errorf("relay URI %q: no host", uri)
	}
	return net.JoinHostPort(host, port), secure, nil
}

func (l *leg) viaRelay() bool { return l.relay != nil }

// toPath is the To-Path of requests the hub sends on l: the relay's
// Use-Path (if any), then the endpoint's a=path. Called with s.mu held.
func (l *leg) toPathLocked() []string {
	if len(l.usePath) == 0 {
		return l.peerPath
	}
	return append(append(make([]string, 0, len(l.usePath)+len(l.peerPath)), l.usePath...), l.peerPath...)
}

// sdpPath is the a=path the hub puts into the SDP toward l's endpoint and
// the host/port of its first URI (for c= and m=).
func (l *leg) sdpPath() (path, host string, port int) {
	l.s.mu.Lock()
	up := append([]string(nil), l.usePath...)
	l.s.mu.Unlock()
	if len(up) == 0 {
		return l.hubURI.String(), l.s.r.cfg.Host, l.hubURI.Port
	}
	first, err := ParseURI(up[0])
	host, port = l.s.r.cfg.Host, l.hubURI.Port
	if err == nil {
		host, port = first.Host, first.Port
		if port == 0 {
			port = 2855
		}
	}
	return strings.Join(append(up, l.hubURI.String()), " "), host, port
}

// fromRelay: a connection the relay opened toward the hub comes from the
// address the hub's AUTH connection reached.
func (l *leg) fromRelay(c net.Conn) bool {
	l.mu.Lock()
	want := l.relayIP
	l.mu.Unlock()
	return want != "" && SourceIP(c.RemoteAddr()) == want
}

// extraReader reads a connection the member's relay opened toward the hub
// for leg l; what the hub sends still goes on its AUTH connection.
func (l *leg) extraReader(c net.Conn, rd *Reader, first *Frame) {
	_ = c.SetDeadline(time.Time{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-l.gone:
		case <-stop:
		}
		c.Close()
	}()
	l.handle(first)
	rd.Release(first)
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return
		}
		l.handle(f)
		rd.Release(f)
	}
}

// authenticate connects l to its network's relay and AUTHs (RFC 4976
// section 5); on success the connection is l's and the refresh runs.
func (l *leg) authenticate() (err error) {
	r := l.s.r
	defer func() {
		if err != nil {
			r.prom.refused(CauseRelayAuth)
		}
	}()
	acct := l.relay
	addr, secure, err := relayAddr(acct.URI)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.RelayAuthTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("msrp relay %s: %w", acct.URI, err)
	}
	if secure {
		host, _, _ := net.SplitHostPort(addr)
		conf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if r.cfg.TLS != nil {
			conf.Certificates = r.cfg.TLS.Certificates
			if g := r.cfg.TLS.GetCertificate; g != nil && len(conf.Certificates) == 0 {
				conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return g(&tls.ClientHelloInfo{ServerName: r.cfg.Host})
				}
			}
			// The relay's certificate chains to the roots the node
			// trusts (RFC 4976 section 9.2: relays use TLS with a
			// certificate for their host).
			conf.RootCAs = r.cfg.TLS.RootCAs
		}
		tc := tls.Client(c, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return fmt.Errorf("msrp relay %s: tls: %w", acct.URI, err)
		}
		c = tc
	}
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	rd := r.newReader(c)
	exchange := func(f *Frame) (*Frame, error) {
		if _, err := c.Write(f.Append(nil)); err != nil {
			return nil, err
		}
		for {
			res, err := rd.ReadFrame()
			if err != nil {
				return nil, err
			}
			if !res.IsRequest() && res.TID == f.TID {
				return res, nil
			}
		}
	}
	up, exp, err := l.auth(exchange)
	if err != nil {
		c.Close()
		return fmt.Errorf("msrp relay %s: %w", acct.URI, err)
	}
	_ = c.SetDeadline(time.Time{})
	l.s.mu.Lock()
	l.usePath = up
	l.s.mu.Unlock()
	l.mu.Lock()
	l.relayIP = SourceIP(c.RemoteAddr())
	l.mu.Unlock()
	l.dialed.Store(true)
	if !l.bind(c, rd) {
		c.Close()
		return errors.New("msrp relay: leg already bound")
	}
	r.prom.connected(LegMemberRelay, secure)
	r.log.Info("MSRP AUTH to member relay", "network", l.net, "relay", acct.URI, "use_path", strings.Join(up, " "), "expires", exp.String())
	r.goTracked(l.readLoop)
	r.goTracked(func() { l.refreshAuth(exp) })
	return nil
}

// auth runs AUTH, the Digest challenge and the authorised AUTH through
// exchange, and returns the Use-Path and Expires of the 200.
func (l *leg) auth(exchange func(*Frame) (*Frame, error)) ([]string, time.Duration, error) {
	acct := l.relay
	req := &Frame{TID: newTID(nil), Method: "AUTH", ToPath: []string{acct.URI}, FromPath: []string{l.hubURI.String()}}
	res, err := exchange(req)
	if err != nil {
		return nil, 0, fmt.Errorf("AUTH: %w", err)
	}
	if res.Code == 401 {
		ch := header(res, "WWW-Authenticate")
		authz, err := digestAuthorization(ch, acct.Username, acct.Password, "AUTH", acct.URI)
		if err != nil {
			return nil, 0, err
		}
		req = &Frame{TID: newTID(nil), Method: "AUTH", ToPath: []string{acct.URI}, FromPath: []string{l.hubURI.String()},
			Other: []Header{{Name: "Authorization", Value: authz}}}
		if res, err = exchange(req); err != nil {
			return nil, 0, fmt.Errorf("AUTH with credentials: %w", err)
		}
	}
	if res.Code != 200 {
		return nil, 0, fmt.Errorf("AUTH refused: %d %s", res.Code, res.Phrase)
	}
	up := strings.Fields(header(res, "Use-Path"))
	if len(up) == 0 {
		return nil, 0, errors.New("AUTH: 200 without Use-Path")
	}
	for _, u := range up {
		if _, err := ParseURI(u); err != nil {
			return nil, 0, fmt.Errorf("AUTH: Use-Path: %w", err)
		}
	}
	exp := 30 * time.Minute // RFC 4976 section 5.1: the relay says; assume OpenSIPS's default when it does not
	if v, err := strconv.Atoi(strings.TrimSpace(header(res, "Expires"))); err == nil && v > 0 {
		// A day at most: a huge value would overflow the Duration.
		exp = time.Duration(min(v, 86400)) * time.Second
	}
	return up, exp, nil
}

// refreshAuth AUTHs again on the leg's connection before Expires (at 80%
// of it, RFC 4976 section 5.1: the client refreshes before expiry). The
// relay may hand out another Use-Path: the SDP already sent keeps the old
// one, so the hub keeps sending with the old one and logs the change.
func (l *leg) refreshAuth(exp time.Duration) {
	for {
		wait := exp * 8 / 10
		if wait < time.Second {
			wait = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-l.gone:
			t.Stop()
			return
		case <-l.s.r.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		up, next, err := l.auth(l.controlExchange)
		if err != nil {
			l.s.r.log.Warn("MSRP re-AUTH to member relay failed", "network", l.net, "relay", l.relay.URI, "err", err)
			l.s.r.prom.refused(CauseRelayAuth)
			l.close("re-AUTH failed: "+err.Error(), true)
			return
		}
		l.s.mu.Lock()
		changed := strings.Join(up, " ") != strings.Join(l.usePath, " ")
		l.authCount++
		l.s.mu.Unlock()
		if changed {
			l.s.r.log.Info("MSRP relay changed Use-Path on re-AUTH; the session keeps the one in its SDP", "network", l.net, "new", strings.Join(up, " "))
		}
		exp = next
	}
}

// controlExchange sends an AUTH on the bound connection and waits for its
// response (read by the leg's readLoop, handed over in onResponse).
func (l *leg) controlExchange(f *Frame) (*Frame, error) {
	ch := make(chan *Frame, 1)
	l.s.mu.Lock()
	if l.authWait == nil {
		l.authWait = map[string]chan *Frame{}
	}
	l.authWait[f.TID] = ch
	l.s.mu.Unlock()
	defer func() {
		l.s.mu.Lock()
		delete(l.authWait, f.TID)
		l.s.mu.Unlock()
	}()
	if !l.out.push(f.Append(nil), false) {
		return nil, errors.New("leg closed")
	}
	t := time.NewTimer(l.s.r.cfg.RelayAuthTimeout)
	defer t.Stop()
	select {
	case res := <-ch:
		return res, nil
	case <-l.gone:
		return nil, errors.New("leg closed")
	case <-t.C:
		return nil, errors.New("no response")
	}
}

// takeAuthResponse hands a response to a waiting re-AUTH; false if none waits.
func (l *leg) takeAuthResponse(f *Frame) bool {
	l.s.mu.Lock()
	ch := l.authWait[f.TID]
	delete(l.authWait, f.TID)
	l.s.mu.Unlock()
	if ch == nil {
		return false
	}
	res := *f
	res.Body = nil
	res.Other = append([]Header(nil), f.Other...)
	ch <- &res
	return true
}

func header(f *Frame, name string) string {
	for _, h := range f.Other {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// digestAuthorization answers a Digest challenge (RFC 2617 section 3.2.2,
// MD5, qop=auth when offered; RFC 4976 section 5.1: the method is AUTH and
// the digest-uri the relay URI the AUTH was sent to).
func digestAuthorization(challenge, user, pass, method, uri string) (string, error) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(challenge), " ")
	if !strings.EqualFold(scheme, "Digest") {
		return "", fmt.Errorf("relay challenge %.40q: not Digest", challenge)
	}
	p := parseAuthParams(rest)
	if alg := p["algorithm"]; alg != "" && !strings.EqualFold(alg, "MD5") {
		return "", fmt.Errorf("relay challenge: algorithm %q unsupported", alg)
	}
	realm, nonce := p["realm"], p["nonce"]
	if nonce == "" {
		return "", errors.New("relay challenge without nonce")
	}
	md := func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
	ha1 := md(user + ":" + realm + ":" + pass)
	ha2 := md(method + ":" + uri)
	var b strings.Builder
	fmt.Fprintf(&b, `Digest username="%s", realm="%s", nonce="%s", uri="%s"`, user, realm, nonce, uri)
	qop := ""
	for _, q := range strings.Split(p["qop"], ",") {
		if strings.TrimSpace(q) == "auth" {
			qop = "auth"
		}
	}
	if qop != "" {
		cnonce, nc := randomID(8), "00000001"
		fmt.Fprintf(&b, `, response="%s", qop=auth, nc=%s, cnonce="%s"`, md(ha1+":"+nonce+":"+nc+":"+cnonce+":auth:"+ha2), nc, cnonce)
	} else {
		fmt.Fprintf(&b, `, response="%s"`, md(ha1+":"+nonce+":"+ha2))
	}
	if o, ok := p["opaque"]; ok {
		fmt.Fprintf(&b, `, opaque="%s"`, o)
	}
	b.WriteString(", algorithm=MD5")
	return b.String(), nil
}

// parseAuthParams reads name=value and name="quoted value" pairs.
func parseAuthParams(s string) map[string]string {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(strings.TrimSpace(s), ",") {
		s = strings.TrimSpace(s)
		name, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		name = strings.ToLower(strings.TrimSpace(name))
		rest = strings.TrimSpace(rest)
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				val, s = rest[1:], ""
			} else {
				val, s = rest[1:end+1], rest[end+2:]
			}
		} else {
			val, s, _ = strings.Cut(rest, ",")
			val = strings.TrimSpace(val)
		}
		out[name] = val
	}
	return out
}
