package intercept

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// SenderConfig configures the delivery to one collector.
type SenderConfig struct {
	// Addr is the collector, host:port.
	Addr string
	// Transport is "udp" (Homer's usual), "tcp" (labs) or "tls" (the
	// mediation endpoint of lawful interception: TLS is required there).
	Transport string
	// TLS configures the "tls" transport: RootCAs and ServerName to
	// verify the collector, Certificates for the hub's own.
	TLS *tls.Config
	// Queue bounds the frames waiting for delivery (default 4096); when
	// it is full Enqueue drops and counts.
	Queue int
	// WriteTimeout bounds one write and one dial (default 5s).
	WriteTimeout time.Duration
	// OnResult, when set, is told on the delivery goroutine what became
	// of each dequeued frame (tag as given to Enqueue). It must be quick.
	OnResult func(tag string, bytes int, delivered bool)
	// Metrics counts each frame's outcome (nil: not counted; see
	// NewInterceptMetrics and NewCaptureMetrics for what each counts).
	Metrics *Metrics
	Logger  *slog.Logger
}

type item struct {
	b   []byte
	tag string
}

// Sender delivers HEP frames to one collector from its own goroutine,
// dialling again after a failure (with backoff; frames that arrive while
// the collector is unreachable are dropped and counted, never queued
// without bound).
type Sender struct {
	cfg     SenderConfig
	q       chan item
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
	sent    atomic.Uint64
	dropped atomic.Uint64

	conn      net.Conn // delivery goroutine only
	nextDial  time.Time
	backoff   time.Duration
	lastError string
	errMu     sync.Mutex
}

// NewSender checks cfg and starts the delivery goroutine; Close ends it.
func NewSender(cfg SenderConfig) (*Sender, error) {
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("collector address %q: %w", cfg.Addr, err)
	}
	switch cfg.Transport {
	case "udp", "tcp":
	case "tls":
		if cfg.TLS == nil {
			return nil, errors.New("collector transport tls needs a TLS configuration")
		}
	default:
		return nil, fmt.Errorf("collector transport %q: want udp, tcp or tls", cfg.Transport)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{cfg: cfg, q: make(chan item, cfg.Queue), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// Enqueue queues frame (which the sender now owns) without blocking; false
// means the queue was full and the frame was dropped (counted).
func (s *Sender) Enqueue(frame []byte, tag string) bool {
	select {
	case s.q <- item{b: frame, tag: tag}:
		return true
	default:
		s.dropped.Add(1)
		s.cfg.Metrics.count(OutcomeQueueFull)
		return false
	}
}

// Stats returns frames delivered and dropped so far.
func (s *Sender) Stats() (sent, dropped uint64) { return s.sent.Load(), s.dropped.Load() }

// Addr and Transport name the collector.
func (s *Sender) Addr() string      { return s.cfg.Addr }
func (s *Sender) Transport() string { return s.cfg.Transport }

// LastError is the latest dial or write failure ("" none yet).
func (s *Sender) LastError() string {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.lastError
}

// Close stops the delivery goroutine: what is queued is still sent, for
// at most one WriteTimeout, then the connection is closed.
func (s *Sender) Close() error {
	s.once.Do(func() {
		s.cancel()
		<-s.done
	})
	return nil
}

func (s *Sender) run() {
	defer close(s.done)
	defer func() {
		if s.conn != nil {
			_ = s.conn.Close()
		}
	}()
	for {
		select {
		case it := <-s.q:
			s.deliver(it)
		case <-s.ctx.Done():
			flushBy := time.Now().Add(s.cfg.WriteTimeout)
			for {
				select {
				case it := <-s.q:
					if time.Now().Before(flushBy) && s.conn != nil {
						s.write(it)
					} else {
						s.drop(it, OutcomeShutdown)
					}
				default:
					return
				}
			}
		}
	}
}

func (s *Sender) deliver(it item) {
	if s.conn == nil {
		if time.Now().Before(s.nextDial) {
			s.drop(it, OutcomeUnreachable)
			return
		}
		if err := s.dial(); err != nil {
			s.fail("dial", err)
			s.drop(it, OutcomeUnreachable)
			return
		}
	}
	s.write(it)
}

func (s *Sender) write(it item) {
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if _, err := s.conn.Write(it.b); err != nil {
		s.fail("write", err)
		_ = s.conn.Close()
		s.conn = nil
		s.drop(it, OutcomeWriteError)
		return
	}
	s.backoff = 0
	s.sent.Add(1)
	s.cfg.Metrics.count(OutcomeSent)
	if s.cfg.OnResult != nil {
		s.cfg.OnResult(it.tag, len(it.b), true)
	}
}

// drop counts a dequeued frame that was not delivered; why is its outcome.
func (s *Sender) drop(it item, why string) {
	s.dropped.Add(1)
	s.cfg.Metrics.count(why)
	if s.cfg.OnResult != nil {
		s.cfg.OnResult(it.tag, len(it.b), false)
	}
}

func (s *Sender) fail(what string, err error) {
	s.backoff = min(max(2*s.backoff, 100*time.Millisecond), 5*time.Second)
	s.nextDial = time.Now().Add(s.backoff)
	msg := fmt.Sprintf("%s %s %s: %v", what, s.cfg.Transport, s.cfg.Addr, err)
	s.errMu.Lock()
	changed := s.lastError != msg
	s.lastError = msg
	s.errMu.Unlock()
	if changed {
		s.cfg.Logger.Warn("HEP collector unreachable; frames dropped until it is back", "collector", s.cfg.Addr, "transport", s.cfg.Transport, "err", err)
	}
}

func (s *Sender) dial() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.WriteTimeout)
	defer cancel()
	var d net.Dialer
	var c net.Conn
	var err error
	switch s.cfg.Transport {
	case "tls":
		td := tls.Dialer{NetDialer: &d, Config: s.cfg.TLS}
		c, err = td.DialContext(ctx, "tcp", s.cfg.Addr)
	default:
		c, err = d.DialContext(ctx, s.cfg.Transport, s.cfg.Addr)
	}
	if err != nil {
		return err
	}
	s.conn = c
	return nil
}
