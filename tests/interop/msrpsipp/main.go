// Command msrpsipp is the MSRP side of the interop case msrp-sipp
// (tests/interop/msrp.sh). SIPp does the SIP signalling at both ends
// (tests/interop/scenarios/msrp_*_ua[cs].xml) and announces fixed MSRP
// URIs in its SDP; this program is the MSRP endpoint behind each of them:
//
//	msrpsipp recv   the callee's endpoint (behind SIPp bob, a=setup:passive):
//	                listens at the announced address, takes the hub's
//	                connection, answers every SEND with 200, reassembles one
//	                message and writes it to -out.
//	msrpsipp send   the caller's endpoint (behind SIPp alice, a=setup:active):
//	                connects to the hub's a=path from the 200 OK that SIPp
//	                logged (the script extracts it), binds with a bodiless
//	                SEND and sends -in as one message in chunks.
//
// Both then stay connected until the hub closes the leg, which it does when
// SIPp's BYE crosses it: a leg the hub does not close within -timeout is a
// failure, and so is a close before the message was complete. Output lines
// are what the script greps; the first error ends the program with status 1.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"clearhub/hub/msrp"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: msrpsipp recv|send [flags]")
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var err error
	switch os.Args[1] {
	case "recv":
		err = recvMain(os.Args[2:], logger)
	case "send":
		err = sendMain(os.Args[2:], logger)
	default:
		err = fmt.Errorf("unknown subcommand %q (want recv or send)", os.Args[1])
	}
	if err != nil {
		fmt.Println("FAIL:", err)
		os.Exit(1)
	}
}

// conn is one MSRP connection: frames in on a reader goroutine, responses
// to our requests matched by transaction id, SENDs from the peer handed
// to onSend (which runs on the reader goroutine, in order).
type conn struct {
	c      net.Conn
	self   string // our URI, From-Path of everything we send
	log    *slog.Logger
	wmu    sync.Mutex
	mu     sync.Mutex
	wait   map[string]chan *msrp.Frame
	closed chan struct{}
	err    error // why the reader stopped (io.EOF: the peer closed)
	onSend func(*msrp.Frame)
}

func newConn(c net.Conn, self string, log *slog.Logger, onSend func(*msrp.Frame)) *conn {
	k := &conn{c: c, self: self, log: log, wait: map[string]chan *msrp.Frame{}, closed: make(chan struct{}), onSend: onSend}
	go k.read()
	return k
}

func (k *conn) read() {
	defer close(k.closed)
	// Chunks toward members are at most max_chunk (8 KiB); 1 MiB leaves
	// room for a hub configured otherwise without accepting anything.
	rd := msrp.NewReader(k.c, msrp.Limits{MaxBody: 1 << 20})
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			k.err = err
			return
		}
		switch {
		case !f.IsRequest():
			k.mu.Lock()
			ch := k.wait[f.TID]
			delete(k.wait, f.TID)
			k.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		case f.Method == "SEND":
			// Responses are hop by hop (RFC 4975 section 7.1.2): to the
			// previous hop, the first URI of From-Path (here the hub's).
			if f.FailureReport != "no" && f.FailureReport != "partial" {
				res := &msrp.Frame{TID: f.TID, Code: 200, Phrase: "OK", ToPath: f.FromPath[:1], FromPath: []string{k.self}}
				if err := k.write(res); err != nil {
					k.err = err
					return
				}
			}
			k.onSend(f)
		default: // REPORTs: nobody here asks for success reports
			k.log.Info("ignored MSRP request", "method", f.Method, "tid", f.TID)
		}
	}
}

func (k *conn) write(f *msrp.Frame) error {
	k.wmu.Lock()
	defer k.wmu.Unlock()
	_ = k.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := k.c.Write(f.Append(nil)); err != nil {
		return fmt.Errorf("write %s: %w", f.Method, err)
	}
	return nil
}

// request sends f and waits for its response.
func (k *conn) request(f *msrp.Frame, d time.Duration) (*msrp.Frame, error) {
	f.TID = randomID(6)
	f.FromPath = []string{k.self}
	ch := make(chan *msrp.Frame, 1)
	k.mu.Lock()
	k.wait[f.TID] = ch
	k.mu.Unlock()
	if err := k.write(f); err != nil {
		return nil, err
	}
	select {
	case res := <-ch:
		return res, nil
	case <-k.closed:
		return nil, fmt.Errorf("connection closed while waiting for the response to %s: %w", f.Method, k.err)
	case <-time.After(d):
		return nil, fmt.Errorf("no response to %s (tid %s) within %v", f.Method, f.TID, d)
	}
}

// waitClosed waits until the peer closes the connection (the hub does on
// BYE) and reports how it ended.
func (k *conn) waitClosed(d time.Duration) error {
	select {
	case <-k.closed:
	case <-time.After(d):
		return fmt.Errorf("the hub did not close the MSRP leg within %v (no BYE crossed it?)", d)
	}
	if k.err != nil && !errors.Is(k.err, io.EOF) && !errors.Is(k.err, net.ErrClosed) && !isReset(k.err) {
		return fmt.Errorf("the leg ended with an error: %w", k.err)
	}
	return nil
}

func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

// message reassembles one MSRP message from its chunks.
type message struct {
	id, ctype   string
	body        []byte
	total       int64
	chunks      int
	largest     int
	fromPath    []string
	done        bool
	outOfOrder  bool
	completedAt time.Time
}

func (m *message) add(f *msrp.Frame) {
	m.chunks++
	m.largest = max(m.largest, len(f.Body))
	if f.HasByteRange && f.ByteRange.Total > 0 {
		m.total = f.ByteRange.Total
	}
	if f.HasByteRange && f.ByteRange.Start != int64(len(m.body))+1 {
		m.outOfOrder = true // a TCP leg delivers in order; anything else is a bug worth seeing
	}
	m.body = append(m.body, f.Body...)
	if f.Flag == msrp.FlagEnd {
		m.done = true
		m.completedAt = time.Now()
	}
}

func recvMain(args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("recv", flag.ContinueOnError)
	path := fs.String("path", "", "this endpoint's URI, exactly as the callee's SDP a=path announces it")
	out := fs.String("out", "", "file the received message body is written to")
	maxChunk := fs.Int("max-chunk", 8192, "largest chunk body allowed (the hub's max_chunk toward members)")
	timeout := fs.Duration("timeout", 30*time.Second, "for the hub to connect, the message to arrive and the leg to close")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *out == "" {
		return errors.New("recv: -path and -out are required")
	}
	u, err := msrp.ParseURI(*path)
	if err != nil {
		return fmt.Errorf("recv -path: %w", err)
	}
	ln, err := net.Listen("tcp", u.Addr())
	if err != nil {
		return fmt.Errorf("recv: listen at the announced %s: %w", u.Addr(), err)
	}
	defer ln.Close()
	fmt.Printf("listening at %s for %s\n", u.Addr(), *path)
	deadline := time.Now().Add(*timeout)
	_ = ln.(*net.TCPListener).SetDeadline(deadline)
	c, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("recv: nobody connected to %s (the hub connects to a passive callee once the answer crosses it): %w", u.Addr(), err)
	}
	defer c.Close()
	ln.Close() // one connection per leg
	fmt.Printf("connection from %s\n", c.RemoteAddr())

	var (
		mu       sync.Mutex
		msg      *message
		bound    bool
		problems []string
	)
	gotMsg := make(chan struct{})
	k := newConn(c, *path, log, func(f *msrp.Frame) {
		mu.Lock()
		defer mu.Unlock()
		if len(f.ToPath) == 0 || !sameURI(f.ToPath[len(f.ToPath)-1], *path) {
			problems = append(problems, fmt.Sprintf("SEND with To-Path %v, not ending with %s", f.ToPath, *path))
		}
		if len(f.Body) == 0 && f.ContentType == "" {
			// The active side's bodiless SEND (RFC 4975 section 5.4).
			if !bound {
				bound = true
				fmt.Printf("bound by the hub's bodiless SEND, From-Path %s\n", strings.Join(f.FromPath, " "))
			}
			return
		}
		if msg == nil {
			msg = &message{id: f.MessageID, ctype: f.ContentType, fromPath: f.FromPath}
		}
		if f.MessageID != msg.id || msg.done {
			problems = append(problems, "a chunk of "+f.MessageID+" after message "+msg.id+" (done: "+fmt.Sprint(msg.done)+")")
			return
		}
		msg.add(f)
		if msg.done {
			close(gotMsg)
		}
	})
	select {
	case <-gotMsg:
	case <-k.closed:
		mu.Lock()
		defer mu.Unlock()
		if msg == nil {
			return fmt.Errorf("the leg closed before any message arrived (%v; BYE before alice's endpoint sent? raise MSRP_SIPP_HOLD_MS)", k.err)
		}
		return fmt.Errorf("the leg closed with message %s incomplete: %d of %d bytes (BYE before the end? raise MSRP_SIPP_HOLD_MS)", msg.id, len(msg.body), msg.total)
	case <-time.After(time.Until(deadline)):
		return errors.New("no complete message within -timeout")
	}
	mu.Lock()
	m := msg
	mu.Unlock()
	if err := os.WriteFile(*out, m.body, 0o644); err != nil {
		return fmt.Errorf("recv: %w", err)
	}
	fmt.Printf("received message-id=%s content-type=%s bytes=%d chunks=%d largest=%d from-path=%s\n",
		m.id, m.ctype, len(m.body), m.chunks, m.largest, strings.Join(m.fromPath, " "))
	if err := k.waitClosed(time.Until(deadline)); err != nil {
		return err
	}
	closedAfter := time.Since(m.completedAt)
	fmt.Printf("leg closed by the hub %.1fs after the message was complete\n", closedAfter.Seconds())
	mu.Lock()
	defer mu.Unlock()
	switch {
	case len(problems) > 0:
		return errors.New(strings.Join(problems, "; "))
	case !bound:
		return errors.New("the hub sent no bodiless SEND first (RFC 4975 section 5.4)")
	case m.outOfOrder:
		return errors.New("chunks arrived out of order")
	case m.total > 0 && int64(len(m.body)) != m.total:
		return fmt.Errorf("%d bytes received, Byte-Range total %d", len(m.body), m.total)
	case m.largest > *maxChunk:
		return fmt.Errorf("a chunk of %d bytes arrived (the hub's max_chunk toward members is %d)", m.largest, *maxChunk)
	}
	return nil
}

func sendMain(args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	path := fs.String("path", "", "this endpoint's URI, exactly as the caller's SDP a=path announces it")
	to := fs.String("to", "", "the hub's a=path from the 200 OK's SDP")
	in := fs.String("in", "", "file to send as one message")
	msgID := fs.String("message-id", "", "Message-ID of the message (found again in the audit)")
	ctype := fs.String("content-type", "text/plain", "Content-Type of the message")
	chunk := fs.Int("chunk", 64<<10, "body bytes per chunk the caller sends (the hub re-chunks toward the callee)")
	timeout := fs.Duration("timeout", 30*time.Second, "for sending and for the hub to close the leg")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || *to == "" || *in == "" || *msgID == "" {
		return errors.New("send: -path, -to, -in and -message-id are required")
	}
	if *chunk <= 0 {
		return fmt.Errorf("send -chunk %d: must be positive", *chunk)
	}
	body, err := os.ReadFile(*in)
	if err != nil {
		return fmt.Errorf("send -in: %w", err)
	}
	hub, err := msrp.ParseURI(*to)
	if err != nil {
		return fmt.Errorf("send -to: %w", err)
	}
	if _, err := msrp.ParseURI(*path); err != nil {
		return fmt.Errorf("send -path: %w", err)
	}
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", hub.Addr(), 5*time.Second)
	if err != nil {
		return fmt.Errorf("send: connect to the hub's %s: %w", hub.Addr(), err)
	}
	defer c.Close()
	k := newConn(c, *path, log, func(f *msrp.Frame) {
		log.Warn("unexpected SEND toward the caller", "message_id", f.MessageID)
	})
	toPath := []string{*to}
	res, err := k.request(&msrp.Frame{Method: "SEND", ToPath: toPath, MessageID: randomID(6),
		ByteRange: msrp.ByteRange{Start: 1, End: 0, Total: 0}, HasByteRange: true, Flag: msrp.FlagEnd}, 10*time.Second)
	if err != nil {
		return fmt.Errorf("send: bind: %w", err)
	}
	if res.Code != 200 {
		return fmt.Errorf("send: the hub answered the bodiless SEND with %d %s", res.Code, res.Phrase)
	}
	fmt.Printf("bound to the hub at %s\n", *to)
	n := 0
	for off := 0; off < len(body); off += *chunk {
		end := min(off+*chunk, len(body))
		f := &msrp.Frame{Method: "SEND", ToPath: toPath, MessageID: *msgID, ContentType: *ctype, Body: body[off:end],
			ByteRange: msrp.ByteRange{Start: int64(off) + 1, End: int64(end), Total: int64(len(body))}, HasByteRange: true, Flag: msrp.FlagMore}
		if end == len(body) {
			f.Flag = msrp.FlagEnd
		}
		res, err := k.request(f, 10*time.Second)
		if err != nil {
			return fmt.Errorf("send: chunk at %d: %w", off+1, err)
		}
		if res.Code != 200 {
			return fmt.Errorf("send: chunk at %d answered %d %s", off+1, res.Code, res.Phrase)
		}
		n++
	}
	fmt.Printf("sent message-id=%s bytes=%d chunks=%d in %dms\n", *msgID, len(body), n, time.Since(t0).Milliseconds())
	// Stay on the leg until the BYE: closing it now would end the session
	// at the hub while chunks may still be on their way to the callee.
	if err := k.waitClosed(*timeout); err != nil {
		return err
	}
	fmt.Println("leg closed by the hub")
	return nil
}

// sameURI compares two MSRP URIs as the hub does (scheme, host, port,
// session, transport), falling back to the strings when one does not parse.
func sameURI(a, b string) bool {
	u, err1 := msrp.ParseURI(a)
	v, err2 := msrp.ParseURI(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return u.Equal(v)
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
