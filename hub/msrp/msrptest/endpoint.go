// Package msrptest is a small MSRP endpoint for tests and benchmarks,
// written on top of the hub's own frame reader: it listens or connects,
// sends chunked messages, answers SENDs with 200 (or a chosen code), and
// reassembles what it receives.
package msrptest

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"clearhub/hub/msrp"
)

// Endpoint is one MSRP endpoint with one connection.
type Endpoint struct {
	URI msrp.URI
	ln  net.Listener
	tls *tls.Config // client/server config for TLS legs

	mu      sync.Mutex
	conn    net.Conn
	wmu     sync.Mutex
	connCh  chan struct{}
	waiters map[string]chan *msrp.Frame // tid -> response
	msgs    map[string]*Message
	done    map[string]chan struct{}
	Reports chan *msrp.Frame
	Sends   chan *msrp.Frame // every SEND received (buffered, dropped when full)
	// reply, when set (SetReply), chooses the response code to a
	// received SEND (0: no response).
	reply    func(f *msrp.Frame) int
	slowRead time.Duration // delay per frame read (SetSlowRead)
	discard  bool          // count bodies, keep none (SetDiscard)
	rcvBuf   int
	closed   chan struct{}
}

// Message is what the endpoint reassembled for one Message-ID.
type Message struct {
	ContentType string
	Body        []byte
	Chunks      int
	Bytes       int64 // body bytes received, kept or not
	Complete    bool
	Ranges      []msrp.ByteRange
	ToPath      []string
	FromPath    []string
}

func newEndpoint(host string, port int, secure bool) *Endpoint {
	scheme := "msrp"
	if secure {
		scheme = "msrps"
	}
	return &Endpoint{
		URI:    msrp.URI{Scheme: scheme, Host: host, Port: port, Session: randomID(8), Transport: "tcp"},
		connCh: make(chan struct{}), waiters: map[string]chan *msrp.Frame{}, msgs: map[string]*Message{},
		done: map[string]chan struct{}{}, Reports: make(chan *msrp.Frame, 1024), Sends: make(chan *msrp.Frame, 64),
		closed: make(chan struct{}),
	}
}

// Listen makes a passive endpoint on host (a loopback IP). With conf
// non-nil it is a TLS server with that certificate.
func Listen(host string, conf *tls.Config) (*Endpoint, error) {
	return ListenBuffer(host, conf, 0)
}

// ListenBuffer is Listen with the accepted socket's receive buffer set to
// rcvBuf bytes (0: the system's), so that a slow reader pushes back soon.
func ListenBuffer(host string, conf *tls.Config, rcvBuf int) (*Endpoint, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("msrptest listen: %w", err)
	}
	e := newEndpoint(host, ln.Addr().(*net.TCPAddr).Port, conf != nil)
	e.ln, e.tls = ln, conf
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok && rcvBuf > 0 {
			_ = tc.SetReadBuffer(rcvBuf)
		}
		if conf != nil {
			tc := tls.Server(c, conf)
			if err := tc.Handshake(); err != nil {
				c.Close()
				return
			}
			c = tc
		}
		e.attach(c)
	}()
	return e, nil
}

// New makes an active endpoint (it will Connect); its URI names host and a
// port nobody listens on, as RFC 4975 endpoints that only connect do.
func New(host string, conf *tls.Config) *Endpoint {
	e := newEndpoint(host, 9, conf != nil)
	e.tls = conf
	return e
}

// SetReply sets the function choosing the response code to each SEND
// received (0: send none).
func (e *Endpoint) SetReply(f func(*msrp.Frame) int) {
	e.mu.Lock()
	e.reply = f
	e.mu.Unlock()
}

// SetSlowRead delays the reading of each frame by d.
func (e *Endpoint) SetSlowRead(d time.Duration) {
	e.mu.Lock()
	e.slowRead = d
	e.mu.Unlock()
}

// SetDiscard makes the endpoint count received bodies without keeping them.
func (e *Endpoint) SetDiscard(on bool) {
	e.mu.Lock()
	e.discard = on
	e.mu.Unlock()
}

// Path is the endpoint's a=path value.
func (e *Endpoint) Path() string { return e.URI.String() }

// SDP is a minimal offer or answer with the endpoint's path. extra lines
// (without terminators) go at the end of the media section.
func (e *Endpoint) SDP(extra ...string) []byte {
	proto := msrp.ProtoTCP
	if e.URI.Scheme == "msrps" {
		proto = msrp.ProtoTLS
	}
	lines := []string{"v=0", "o=- 1 1 IN IP4 " + e.URI.Host, "s=-", "c=IN IP4 " + e.URI.Host, "t=0 0",
		fmt.Sprintf("m=message %d %s *", e.URI.Port, proto), "a=accept-types:text/plain message/cpim application/octet-stream",
		"a=path:" + e.Path()}
	lines = append(lines, extra...)
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// Connect dials the first URI of path and binds the connection with a
// bodiless SEND (RFC 4975 section 5.4).
func (e *Endpoint) Connect(path []string, fingerprintOK func(*tls.ConnectionState) error) error {
	u, err := msrp.ParseURI(path[0])
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", u.Addr(), 5*time.Second)
	if err != nil {
		return fmt.Errorf("msrptest connect: %w", err)
	}
	if u.Scheme == "msrps" {
		conf := &tls.Config{InsecureSkipVerify: true}
		if e.tls != nil {
			conf.Certificates = e.tls.Certificates
		}
		if fingerprintOK != nil {
			conf.VerifyConnection = func(cs tls.ConnectionState) error { return fingerprintOK(&cs) }
		}
		tc := tls.Client(c, conf)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return fmt.Errorf("msrptest tls: %w", err)
		}
		c = tc
	}
	e.attach(c)
	res, err := e.request(&msrp.Frame{Method: "SEND", ToPath: path, MessageID: randomID(6), ByteRange: msrp.ByteRange{Start: 1, End: 0, Total: 0}, HasByteRange: true}, true)
	if err != nil {
		return err
	}
	if res.Code != 200 {
		return fmt.Errorf("msrptest bind: %d %s", res.Code, res.Phrase)
	}
	return nil
}

// WaitConnected waits for a passive endpoint's connection.
func (e *Endpoint) WaitConnected(d time.Duration) error {
	select {
	case <-e.connCh:
		return nil
	case <-time.After(d):
		return errors.New("msrptest: nobody connected")
	}
}

// Close drops the connection.
func (e *Endpoint) Close() {
	e.mu.Lock()
	c := e.conn
	e.mu.Unlock()
	if e.ln != nil {
		e.ln.Close()
	}
	if c != nil {
		c.Close()
	}
}

func (e *Endpoint) attach(c net.Conn) {
	e.mu.Lock()
	e.conn = c
	e.mu.Unlock()
	close(e.connCh)
	go e.readLoop(c)
}

func (e *Endpoint) write(f *msrp.Frame) error {
	e.mu.Lock()
	c := e.conn
	e.mu.Unlock()
	if c == nil {
		return errors.New("msrptest: not connected")
	}
	e.wmu.Lock()
	defer e.wmu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(f.Append(nil))
	return err
}

func (e *Endpoint) request(f *msrp.Frame, wait bool) (*msrp.Frame, error) {
	f.TID = randomID(6)
	f.FromPath = []string{e.Path()}
	if f.Flag == 0 {
		f.Flag = msrp.FlagEnd
	}
	var ch chan *msrp.Frame
	if wait {
		ch = make(chan *msrp.Frame, 1)
		e.mu.Lock()
		e.waiters[f.TID] = ch
		e.mu.Unlock()
	}
	if err := e.write(f); err != nil {
		return nil, err
	}
	if !wait {
		return nil, nil
	}
	select {
	case res := <-ch:
		return res, nil
	case <-e.closed:
		select { // the response may have come just before the close
		case res := <-ch:
			return res, nil
		default:
		}
		return nil, errors.New("msrptest: connection closed")
	case <-time.After(10 * time.Second):
		return nil, errors.New("msrptest: no response")
	}
}

// Send sends body as one message in chunks of chunk bytes, waiting for each
// chunk's response (waitEach) or not. It returns the first non-200 code.
func (e *Endpoint) Send(toPath []string, msgID, ctype string, body []byte, chunk int, hdr func(*msrp.Frame)) (int, error) {
	total := int64(len(body))
	for off := 0; ; {
		n := min(chunk, len(body)-off)
		f := &msrp.Frame{Method: "SEND", ToPath: toPath, MessageID: msgID, ContentType: ctype, Body: body[off : off+n],
			ByteRange: msrp.ByteRange{Start: int64(off) + 1, End: int64(off + n), Total: total}, HasByteRange: true, Flag: msrp.FlagMore}
		if off+n == len(body) {
			f.Flag = msrp.FlagEnd
		}
		if hdr != nil {
			hdr(f)
		}
		wait := f.FailureReport != "no" && f.FailureReport != "partial"
		res, err := e.request(f, wait)
		if err != nil {
			return 0, err
		}
		if res != nil && res.Code != 200 {
			return res.Code, nil
		}
		off += n
		if off >= len(body) {
			return 200, nil
		}
	}
}

// Wait returns the reassembled message once its last chunk arrived.
func (e *Endpoint) Wait(msgID string, d time.Duration) (*Message, error) {
	e.mu.Lock()
	ch := e.done[msgID]
	if ch == nil {
		ch = make(chan struct{})
		e.done[msgID] = ch
	}
	e.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(d):
		return nil, fmt.Errorf("msrptest: message %s not complete", msgID)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.msgs[msgID]
	if e.discard {
		delete(e.msgs, msgID)
		delete(e.done, msgID)
	}
	return m, nil
}

func (e *Endpoint) readLoop(c net.Conn) {
	defer close(e.closed)
	rd := msrp.NewReader(c, msrp.Limits{MaxBody: 1 << 20})
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return
		}
		e.mu.Lock()
		slow := e.slowRead
		e.mu.Unlock()
		if slow > 0 {
			time.Sleep(slow)
		}
		switch {
		case !f.IsRequest():
			e.mu.Lock()
			ch := e.waiters[f.TID]
			delete(e.waiters, f.TID)
			e.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		case f.Method == "REPORT":
			select {
			case e.Reports <- f:
			default:
			}
		case f.Method == "SEND":
			select {
			case e.Sends <- f:
			default:
			}
			code := 200
			e.mu.Lock()
			reply := e.reply
			e.mu.Unlock()
			if reply != nil {
				code = reply(f)
			}
			if f.ContentType != "" || len(f.Body) > 0 {
				e.collect(f)
			}
			if code != 0 && f.FailureReport != "no" && !(f.FailureReport == "partial" && code == 200) {
				res := &msrp.Frame{TID: f.TID, Code: code, Phrase: "x", ToPath: f.FromPath[:1], FromPath: []string{e.Path()}}
				_ = e.write(res)
			}
			if f.SuccessReport == "yes" && f.Flag == msrp.FlagEnd && code == 200 {
				e.mu.Lock()
				m := e.msgs[f.MessageID]
				e.mu.Unlock()
				if m != nil {
					rep := &msrp.Frame{TID: randomID(6), Method: "REPORT", ToPath: f.FromPath, FromPath: []string{e.Path()}, MessageID: f.MessageID,
						ByteRange: msrp.ByteRange{Start: 1, End: int64(len(m.Body)), Total: int64(len(m.Body))}, HasByteRange: true, Status: "000 200 OK", Flag: msrp.FlagEnd}
					_ = e.write(rep)
				}
			}
		}
	}
}

func (e *Endpoint) collect(f *msrp.Frame) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.msgs[f.MessageID]
	if m == nil {
		m = &Message{ContentType: f.ContentType, ToPath: f.ToPath, FromPath: f.FromPath}
		e.msgs[f.MessageID] = m
	}
	m.Chunks++
	m.Bytes += int64(len(f.Body))
	if !e.discard {
		m.Ranges = append(m.Ranges, f.ByteRange)
		if f.HasByteRange && f.ByteRange.Start == int64(len(m.Body))+1 {
			m.Body = append(m.Body, f.Body...)
		}
	}
	if f.Flag != msrp.FlagMore {
		m.Complete = f.Flag == msrp.FlagEnd
		ch := e.done[f.MessageID]
		if ch == nil {
			ch = make(chan struct{})
			e.done[f.MessageID] = ch
		}
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
