package msrptest

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"clearhub/hub/msrp"
)

// Relay is a small RFC 4976 relay behaving like Kamailio 5.6's msrp module
// with the configuration in tests/interop/kamailio/msrp-relay.cfg: AUTH
// is challenged with Digest (401), then answered 200 with Use-Path and
// Expires; a request from an authenticated client goes to the next To-Path
// hop (dialled by address), a request from anyone else to the client whose
// Use-Path session-id is first in To-Path; responses from outside go back
// to that client, responses from a client are dropped (the relay answers
// the outside's SENDs hop by hop). Frames whose body exceeds MaxBody are
// refused with 413 like Kamailio's 10240-byte limit.
type Relay struct {
	URI      msrp.URI // the relay's own URI (session-id "relay")
	User     string
	Password string
	Realm    string
	Expires  int
	MaxBody  int

	ln net.Listener
	mu sync.Mutex
	// clients: Use-Path session-id -> the AUTH connection
	clients map[string]*relayConn
	byConn  map[*relayConn]bool
	out     map[string]*relayConn // next-hop address -> connection
	Auths   int                   // 200 answers to AUTH
	Refused int                   // frames refused over MaxBody
	Bodies  []int                 // body sizes of SENDs relayed from clients
	nonce   int
}

type relayConn struct {
	c   net.Conn
	wmu sync.Mutex
}

func (rc *relayConn) write(f *msrp.Frame) {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	_, _ = rc.c.Write(f.Append(nil))
}

// ListenRelay starts a relay on host.
func ListenRelay(host, user, password string) (*Relay, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("msrptest relay: %w", err)
	}
	r := &Relay{URI: msrp.URI{Scheme: "msrp", Host: host, Port: ln.Addr().(*net.TCPAddr).Port, Session: "relay", Transport: "tcp"},
		User: user, Password: password, Realm: "relay.test", Expires: 3600, MaxBody: 10240, ln: ln,
		clients: map[string]*relayConn{}, byConn: map[*relayConn]bool{}, out: map[string]*relayConn{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(&relayConn{c: c})
		}
	}()
	return r, nil
}

// Close stops the relay.
func (r *Relay) Close() { r.ln.Close() }

// Addr is the relay's URI without a session-id, as a member would give it.
func (r *Relay) Addr() string { return fmt.Sprintf("msrp://%s:%d;tcp", r.URI.Host, r.URI.Port) }

// Stats returns the AUTH count and the body sizes relayed from clients.
func (r *Relay) Stats() (auths int, bodies []int, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Auths, append([]int(nil), r.Bodies...), r.Refused
}

func (r *Relay) serve(rc *relayConn) {
	defer rc.c.Close()
	rd := msrp.NewReader(rc.c, msrp.Limits{MaxBody: 1 << 20})
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return
		}
		r.frame(rc, f)
	}
}

func (r *Relay) reply(rc *relayConn, f *msrp.Frame, code int, phrase string, hdrs ...msrp.Header) {
	rc.write(&msrp.Frame{TID: f.TID, Code: code, Phrase: phrase, ToPath: f.FromPath[:1], FromPath: []string{r.URI.String()}, Other: hdrs})
}

func (r *Relay) frame(rc *relayConn, f *msrp.Frame) {
	r.mu.Lock()
	isClient := r.byConn[rc]
	r.mu.Unlock()
	if f.Method == "AUTH" {
		r.auth(rc, f)
		return
	}
	first, err := msrp.ParseURI(f.ToPath[0])
	if err != nil {
		return
	}
	r.mu.Lock()
	client := r.clients[first.Session]
	r.mu.Unlock()
	if !f.IsRequest() {
		if !isClient && client != nil {
			f.ToPath = f.ToPath[1:]
			if len(f.ToPath) == 0 {
				f.ToPath = []string{"msrp://unknown/x;tcp"}
			}
			client.write(f)
		}
		return
	}
	if len(f.Body) > r.MaxBody {
		r.mu.Lock()
		r.Refused++
		r.mu.Unlock()
		r.reply(rc, f, 413, "Too large")
		return
	}
	if len(f.ToPath) < 2 {
		r.reply(rc, f, 481, "No next hop")
		return
	}
	if !isClient && client != nil && f.Method == "SEND" && f.FailureReport != "no" && f.FailureReport != "partial" {
		// Hop by hop toward the outside (RFC 4976 section 7.3.1); the
		// client's own response is then dropped.
		r.reply(rc, f, 200, "OK")
	}
	// RFC 4976 section 7.3: pop this relay, prepend it to From-Path.
	self := f.ToPath[0]
	f.ToPath = f.ToPath[1:]
	f.FromPath = append([]string{self}, f.FromPath...)
	if isClient {
		if f.Method == "SEND" {
			r.mu.Lock()
			r.Bodies = append(r.Bodies, len(f.Body))
			r.mu.Unlock()
		}
		next, err := msrp.ParseURI(f.ToPath[0])
		if err != nil {
			return
		}
		oc, err := r.dial(next.Addr())
		if err != nil {
			return
		}
		oc.write(f)
		return
	}
	if client == nil {
		r.reply(rc, f, 481, "Session-does-not-exist")
		return
	}
	client.write(f)
}

func (r *Relay) dial(addr string) (*relayConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if oc := r.out[addr]; oc != nil {
		return oc, nil
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	oc := &relayConn{c: c}
	r.out[addr] = oc
	go r.serve(oc)
	return oc, nil
}

func (r *Relay) auth(rc *relayConn, f *msrp.Frame) {
	var authz string
	for _, h := range f.Other {
		if strings.EqualFold(h.Name, "Authorization") {
			authz = h.Value
		}
	}
	r.mu.Lock()
	r.nonce++
	nonce := "n" + strconv.Itoa(r.nonce)
	r.mu.Unlock()
	if authz == "" || !r.digestOK(authz) {
		r.reply(rc, f, 401, "Unauthorized", msrp.Header{Name: "WWW-Authenticate",
			Value: fmt.Sprintf(`Digest realm="%s", nonce="%s", qop="auth"`, r.Realm, nonce)})
		return
	}
	sid := "s." + randomID(6)
	r.mu.Lock()
	r.clients[sid] = rc
	r.byConn[rc] = true
	r.Auths++
	r.mu.Unlock()
	r.reply(rc, f, 200, "OK",
		msrp.Header{Name: "Use-Path", Value: fmt.Sprintf("msrp://%s:%d/%s;tcp", r.URI.Host, r.URI.Port, sid)},
		msrp.Header{Name: "Expires", Value: strconv.Itoa(r.Expires)})
}

// digestOK checks an RFC 2617 response with qop=auth and method AUTH.
func (r *Relay) digestOK(authz string) bool {
	_, rest, _ := strings.Cut(authz, " ")
	p := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		p[strings.ToLower(k)] = strings.Trim(v, `"`)
	}
	md := func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
	if p["username"] != r.User || p["realm"] != r.Realm {
		return false
	}
	ha1 := md(r.User + ":" + r.Realm + ":" + r.Password)
	ha2 := md("AUTH:" + p["uri"])
	want := md(ha1 + ":" + p["nonce"] + ":" + p["nc"] + ":" + p["cnonce"] + ":auth:" + ha2)
	return p["response"] == want
}
