package msrp

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// errListener returns its errors in order, then blocks until closed.
type errListener struct {
	mu     sync.Mutex
	errs   []error
	closed chan struct{}
	once   sync.Once
}

func (l *errListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	<-l.closed
	return nil, net.ErrClosed
}

func (l *errListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *errListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2855} }
func (l *errListener) left() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errs)
}

// The relay's accept loop outlives Accept errors that are not the
// listener's closure (it used to return on the first non-timeout one,
// ending MSRP anchoring on the node) and ends when the listener closes.
func TestRelayAcceptSurvivesErrors(t *testing.T) {
	r, err := New(Config{Host: "127.0.0.1", TCPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ln := &errListener{closed: make(chan struct{}), errs: []error{
		&net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE},
		&net.OpError{Op: "accept", Net: "tcp", Err: syscall.ECONNABORTED},
		errors.New("something unknown"),
	}}
	done := make(chan struct{})
	go func() { defer close(done); r.accept(ln, false) }()
	deadline := time.Now().Add(5 * time.Second)
	for ln.left() > 0 && time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("accept loop returned with %d errors still to come", ln.left())
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case <-done:
		t.Fatal("accept loop returned after the errors")
	case <-time.After(50 * time.Millisecond):
	}
	ln.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("accept loop still running after its listener closed")
	}
}
