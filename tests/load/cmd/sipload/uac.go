package main

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"clearhub/tests/load"

	"golang.org/x/net/ipv4"
)

type uacConfig struct {
	transport  string // udp, tcp, tls
	target     string
	local      string
	sockets    int
	conns      int
	rates      []int
	step       time.Duration
	timeout    time.Duration
	gap        time.Duration
	overload   []float64
	minOffered float64
	pid        int
	tree       bool
	label      string
	tsv        string
	cert, key  string
	fromUser   string
	fromDomain string
	toUser     string
	toDomain   string
	body       string
}

// epoch is the zero of every timestamp the driver stores (monotonic).
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) + 1 } // never 0: 0 means "none"

// step is one rate step: the send time of each request, by sequence
// number, and the counters.
type step struct {
	base    uint64
	sent    []atomic.Int64 // send time; 0: not sent, or answered
	timeout int64

	offered, answered, ok, failed, shed, late, foreign atomic.Int64

	mu    sync.Mutex
	hist  load.Hist
	codes map[int]int
}

func newStep(base uint64, size int, timeout time.Duration) *step {
	return &step{base: base, sent: make([]atomic.Int64, size), timeout: int64(timeout), codes: map[int]int{}}
}

// answer accounts for one response. Only the first final response to a
// request counts (RFC 3261 17.1.2: later ones are retransmissions).
func (s *step) answer(seq uint64, status int, now int64) {
	if status < 200 {
		return
	}
	if seq < s.base || seq-s.base >= uint64(len(s.sent)) {
		return // a request of an earlier step, already counted as timed out
	}
	t := s.sent[seq-s.base].Swap(0)
	if t == 0 {
		return
	}
	s.answered.Add(1)
	rtt := now - t
	if rtt > s.timeout {
		s.late.Add(1)
		return
	}
	switch {
	case status < 300:
		s.ok.Add(1)
		s.mu.Lock()
		s.hist.Record(rtt / 1000)
		s.mu.Unlock()
	case status == 503:
		s.shed.Add(1)
	default:
		s.failed.Add(1)
		s.mu.Lock()
		s.codes[status]++
		s.mu.Unlock()
	}
}

// driver runs the ramp over one set of senders.
type driver struct {
	cfg    uacConfig
	prefix []byte
	seq    atomic.Uint64
	cur    atomic.Pointer[step]
	log    *slog.Logger
	sends  []sender
}

// sender is one UDP socket or one stream connection with its own pacing.
type sender interface {
	// run sends at rate for dur into st; it returns when done.
	run(st *step, rate float64, dur time.Duration)
	close()
}

func parseUACFlags(args []string, ceiling bool) (uacConfig, error) {
	name := "uac"
	if ceiling {
		name = "ceiling"
	}
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	var c uacConfig
	fs.StringVar(&c.transport, "transport", "udp", "udp, tcp or tls")
	fs.StringVar(&c.target, "target", "127.0.0.1:5060", "proxy `address` (ceiling: where the in-process UAS listens)")
	fs.StringVar(&c.local, "local", "127.0.0.2", "local `IP` to send from (the member network's address)")
	fs.IntVar(&c.sockets, "sockets", 4, "UDP sockets (each its own port and pacing)")
	fs.IntVar(&c.conns, "conns", 8, "TCP/TLS connections, requests pipelined on each")
	rates := fs.String("rates", "1000 2000 4000", "rate steps in requests/s (space or comma separated)")
	fs.DurationVar(&c.step, "step", 10*time.Second, "duration of each step")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Second, "a request without a final answer this long is a timeout (no retransmissions)")
	fs.DurationVar(&c.gap, "gap", time.Second, "pause between steps")
	over := fs.String("overload", "", "after the ramp, steps at these multiples of the highest clean rate (e.g. \"2 5\")")
	fs.Float64Var(&c.minOffered, "min-offered", 0.97, "a step that offered less than this share of its target is not clean (the driver fell short)")
	fs.IntVar(&c.pid, "pid", 0, "proxy process to sample CPU and memory of (0: none)")
	fs.BoolVar(&c.tree, "tree", false, "sample the process with all its descendants (Kamailio's workers)")
	fs.StringVar(&c.label, "label", "", "case name printed on every row and in the TSV")
	fs.StringVar(&c.tsv, "tsv", "", "append one tab-separated row per step to this `file`")
	fs.StringVar(&c.cert, "cert", "", "TLS client certificate `file` (PEM; the member's)")
	fs.StringVar(&c.key, "key", "", "TLS client key `file` (PEM)")
	fs.StringVar(&c.fromUser, "from-user", "load", "From user")
	fs.StringVar(&c.fromDomain, "from-domain", "a.example", "From domain (the sending network)")
	fs.StringVar(&c.toUser, "to-user", "bob", "Request-URI and To user")
	fs.StringVar(&c.toDomain, "to-domain", "b.example", "Request-URI and To domain (the receiving network)")
	fs.StringVar(&c.body, "body", "bench message", "MESSAGE body (text/plain)")
	_ = fs.Parse(args)
	c.transport = strings.ToLower(c.transport)
	switch c.transport {
	case "udp", "tcp", "tls":
	default:
		return c, fmt.Errorf("-transport %q: want udp, tcp or tls", c.transport)
	}
	var err error
	if c.rates, err = parseInts(*rates); err != nil || len(c.rates) == 0 {
		return c, fmt.Errorf("-rates %q: want positive integers: %v", *rates, err)
	}
	if *over != "" {
		for _, f := range strings.FieldsFunc(*over, isSep) {
			m, err := strconv.ParseFloat(f, 64)
			if err != nil || m <= 0 {
				return c, fmt.Errorf("-overload %q: want positive numbers", *over)
			}
			c.overload = append(c.overload, m)
		}
	}
	if c.sockets < 1 || c.conns < 1 {
		return c, errors.New("-sockets and -conns must be at least 1")
	}
	return c, nil
}

func isSep(r rune) bool { return r == ' ' || r == ',' || r == '\t' }

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.FieldsFunc(s, isSep) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func runUAC(args []string, ceiling bool) error {
	cfg, err := parseUACFlags(args, ceiling)
	if err != nil {
		return err
	}
	if ceiling {
		// The UAS in this process, on the target address; the proxy
		// columns stay empty (there is none).
		u := &uas{log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
		var udpA, tcpA, tlsA string
		switch cfg.transport {
		case "udp":
			udpA = cfg.target
		case "tcp":
			tcpA = cfg.target
		case "tls":
			tlsA = cfg.target
		}
		if err := u.start(udpA, tcpA, tlsA, "", "", 2); err != nil {
			return err
		}
		defer u.stop()
		cfg.pid = 0
		if cfg.label == "" {
			cfg.label = "ceiling-" + cfg.transport
		}
	}
	d, err := newDriver(cfg)
	if err != nil {
		return err
	}
	defer d.close()
	return d.ramp(os.Stdout)
}

func newDriver(cfg uacConfig) (*driver, error) {
	var rid [4]byte
	if _, err := rand.Read(rid[:]); err != nil {
		return nil, fmt.Errorf("run id: %w", err)
	}
	p := load.MessageParams{RunID: hex.EncodeToString(rid[:]), FromUser: cfg.fromUser, FromDomain: cfg.fromDomain,
		ToUser: cfg.toUser, ToDomain: cfg.toDomain, Body: cfg.body, Host: cfg.local}
	d := &driver{cfg: cfg, prefix: []byte(p.CallIDPrefix()), log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	switch cfg.transport {
	case "udp":
		raddr, err := net.ResolveUDPAddr("udp", cfg.target)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", cfg.target, err)
		}
		for i := 0; i < cfg.sockets; i++ {
			s, err := newUDPSender(d, p, cfg.local, raddr)
			if err != nil {
				d.close()
				return nil, err
			}
			d.sends = append(d.sends, s)
		}
	default:
		var tcfg *tls.Config
		if cfg.transport == "tls" {
			// The driver does not verify the proxy: it measures it. The
			// client certificate is what identifies the member to the hub.
			tcfg = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
			if cfg.cert != "" {
				c, err := tls.LoadX509KeyPair(cfg.cert, cfg.key)
				if err != nil {
					return nil, fmt.Errorf("client certificate: %w", err)
				}
				tcfg.Certificates = []tls.Certificate{c}
			}
		}
		for i := 0; i < cfg.conns; i++ {
			s, err := newStreamSender(d, p, cfg, tcfg)
			if err != nil {
				d.close()
				return nil, err
			}
			d.sends = append(d.sends, s)
		}
	}
	return d, nil
}

func (d *driver) close() {
	for _, s := range d.sends {
		s.close()
	}
}

// result is one step's row.
type result struct {
	phase                          string
	target                         int
	offered, ok, failed, shed, tmo int64
	foreign                        int64
	secs                           float64
	p50, p99, p999                 int64 // µs
	cpuPct, cpuUS, drvUS           float64
	memMB                          float64
	haveProc                       bool
	clean                          bool
	codes                          string
}

func (d *driver) runStep(rate int, phase string) result {
	cfg := d.cfg
	size := int(float64(rate)*cfg.step.Seconds()*1.05) + 1024
	st := newStep(d.seq.Load(), size, cfg.timeout)
	d.cur.Store(st)

	before, perr := load.ReadProc(cfg.pid, cfg.tree)
	self0, _ := load.ReadProc(os.Getpid(), false)
	t0 := time.Now()
	var wg sync.WaitGroup
	per := float64(rate) / float64(len(d.sends))
	for _, s := range d.sends {
		wg.Add(1)
		go func(s sender) {
			defer wg.Done()
			s.run(st, per, cfg.step)
		}(s)
	}
	wg.Wait()
	sendSecs := time.Since(t0).Seconds()
	// Drain: wait for the answers still due, at most one timeout.
	end := time.Now().Add(cfg.timeout + 50*time.Millisecond)
	for time.Now().Before(end) && st.answered.Load() < st.offered.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	wall := time.Since(t0).Seconds()
	after, perr2 := load.ReadProc(cfg.pid, cfg.tree)
	self1, _ := load.ReadProc(os.Getpid(), false)

	r := result{phase: phase, target: rate, secs: sendSecs}
	r.offered = st.offered.Load()
	r.ok = st.ok.Load()
	r.failed = st.failed.Load()
	r.shed = st.shed.Load()
	r.tmo = r.offered - r.ok - r.failed - r.shed // never answered, or too late
	r.foreign = st.foreign.Load()
	st.mu.Lock()
	r.p50, r.p99, r.p999 = st.hist.Quantile(0.5), st.hist.Quantile(0.99), st.hist.Quantile(0.999)
	type kv struct{ code, n int }
	var codes []kv
	for c, n := range st.codes {
		codes = append(codes, kv{c, n})
	}
	st.mu.Unlock()
	sort.Slice(codes, func(i, j int) bool { return codes[i].n > codes[j].n })
	for i, c := range codes {
		if i == 3 {
			break
		}
		r.codes += fmt.Sprintf(" %dx%d", c.n, c.code)
	}
	answered := r.ok + r.failed + r.shed
	if cfg.pid != 0 && perr == nil && perr2 == nil {
		r.haveProc = true
		cpu := (after.CPU - before.CPU).Seconds()
		r.cpuPct = 100 * cpu / wall
		if answered > 0 {
			r.cpuUS = cpu * 1e6 / float64(answered)
		}
		r.memMB = float64(after.Mem) / (1 << 20)
	}
	if r.offered > 0 {
		r.drvUS = (self1.CPU - self0.CPU).Seconds() * 1e6 / float64(r.offered)
	}
	r.clean = r.failed == 0 && r.shed == 0 && r.tmo == 0 &&
		float64(r.offered) >= cfg.minOffered*float64(rate)*cfg.step.Seconds()
	return r
}

const header = "%-22s %8s %9s %9s %7s %7s %7s %8s %8s %8s %6s %7s %7s %6s  %s\n"
const rowFmt = "%-22s %8d %9.0f %9.0f %7d %7d %7d %8.2f %8.2f %8.2f %6s %7s %7s %6.1f  %s\n"

func (d *driver) ramp(w io.Writer) error {
	cfg := d.cfg
	var tsv *os.File
	if cfg.tsv != "" {
		f, err := os.OpenFile(cfg.tsv, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("tsv: %w", err)
		}
		defer f.Close()
		tsv = f
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# %s: MESSAGE over %s to %s from %s, %s per step, timeout %s, no retransmissions; p50/p99/p99.9 of 2xx round trips in ms;\n# proxy cpu%% of one core, proxy cpu µs per answered request, proxy memory MB, driver cpu µs per request\n",
		cfg.label, strings.ToUpper(cfg.transport), cfg.target, cfg.local, cfg.step, cfg.timeout)
	fmt.Fprintf(bw, header, "case", "target/s", "offered/s", "ok/s", "failed", "shed", "timeout", "p50", "p99", "p99.9", "cpu%", "µs/msg", "mem MB", "drvµs", "note")
	bw.Flush()
	maxClean, limit := 0, "completed all steps"
	emit := func(r result) {
		cpuPct, cpuUS, mem := "-", "-", "-"
		if r.haveProc {
			cpuPct = fmt.Sprintf("%.0f", r.cpuPct)
			cpuUS = fmt.Sprintf("%.1f", r.cpuUS)
			mem = fmt.Sprintf("%.0f", r.memMB)
		}
		note := r.phase
		if !r.clean {
			note += " NOT-CLEAN"
		}
		note += r.codes
		if r.foreign > 0 {
			note += fmt.Sprintf(" %d-unparsed", r.foreign)
		}
		fmt.Fprintf(bw, rowFmt, cfg.label, r.target, float64(r.offered)/r.secs, float64(r.ok)/r.secs, r.failed, r.shed, r.tmo,
			ms(r.p50), ms(r.p99), ms(r.p999), cpuPct, cpuUS, mem, r.drvUS, note)
		bw.Flush()
		if tsv != nil {
			clean := 0
			if r.clean {
				clean = 1
			}
			fmt.Fprintf(tsv, "%s\t%s\t%s\t%d\t%.0f\t%.0f\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\t%s\t%s\t%s\t%.2f\t%d\n",
				cfg.label, cfg.transport, r.phase, r.target, float64(r.offered)/r.secs, float64(r.ok)/r.secs,
				r.failed, r.shed, r.tmo, ms(r.p50), ms(r.p99), ms(r.p999), cpuPct, cpuUS, mem, r.drvUS, clean)
		}
	}
	for i, rate := range cfg.rates {
		if i > 0 {
			time.Sleep(cfg.gap)
		}
		r := d.runStep(rate, "ramp")
		emit(r)
		if !r.clean {
			limit = fmt.Sprintf("%d/s: %d failed, %d shed, %d timeouts, offered %.0f/s", rate, r.failed, r.shed, r.tmo, float64(r.offered)/r.secs)
			break
		}
		maxClean = rate
	}
	if maxClean > 0 {
		for _, m := range cfg.overload {
			time.Sleep(cfg.gap)
			emit(d.runStep(int(m*float64(maxClean)), fmt.Sprintf("overload-%gx", m)))
		}
	}
	fmt.Fprintf(bw, "RESULT %s max_clean=%d ended=%q\n", cfg.label, maxClean, limit)
	return bw.Flush()
}

func ms(us int64) float64 { return float64(us) / 1000 }

// pace returns how many requests are due now after sent of them at rate
// since start, at most max.
func pace(start time.Time, rate float64, sent int64, max int64) (due int64, wait time.Duration) {
	el := time.Since(start).Seconds()
	due = int64(rate*el) - sent
	if due > max {
		due = max
	}
	if due > 0 {
		return due, 0
	}
	// Sleep until the next one is due, but in whole slices of at least
	// half a millisecond: a timer per request would cost more than the
	// send.
	next := float64(sent+1)/rate - el
	wait = time.Duration(next * float64(time.Second))
	if wait < 500*time.Microsecond {
		wait = 500 * time.Microsecond
	}
	if wait > 5*time.Millisecond {
		wait = 5 * time.Millisecond
	}
	return 0, wait
}

// reserve takes n sequence numbers for st; ok is false when the step's
// table is full (it is sized for the target rate plus 5%).
func (d *driver) reserve(st *step, n int64) (first uint64, ok bool) {
	first = d.seq.Add(uint64(n)) - uint64(n)
	if first+uint64(n)-st.base > uint64(len(st.sent)) || first+uint64(n) > load.MaxSeq {
		return 0, false
	}
	return first, true
}

// --- UDP ---------------------------------------------------------------

type udpSender struct {
	d    *driver
	c    *net.UDPConn
	pc   *ipv4.PacketConn
	tmpl *load.Template
	dst  net.Addr
	wg   sync.WaitGroup
}

const udpBatch = 64

func newUDPSender(d *driver, p load.MessageParams, local string, dst *net.UDPAddr) (*udpSender, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(local)})
	if err != nil {
		return nil, fmt.Errorf("udp socket on %s: %w", local, err)
	}
	_ = c.SetReadBuffer(8 << 20)
	_ = c.SetWriteBuffer(8 << 20)
	p.Transport = "UDP"
	p.Port = c.LocalAddr().(*net.UDPAddr).Port
	t, err := load.NewMessageTemplate(p)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	s := &udpSender{d: d, c: c, pc: ipv4.NewPacketConn(c), tmpl: t, dst: dst}
	s.wg.Add(1)
	go s.readLoop()
	return s, nil
}

func (s *udpSender) close() {
	_ = s.c.Close()
	s.wg.Wait()
}

func (s *udpSender) readLoop() {
	defer s.wg.Done()
	ms := make([]ipv4.Message, udpBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 65536)}
	}
	for {
		n, err := s.pc.ReadBatch(ms, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond)
			continue
		}
		now := nanotime()
		st := s.d.cur.Load()
		for i := 0; i < n; i++ {
			status, seq, err := load.ParseResponse(ms[i].Buffers[0][:ms[i].N], s.d.prefix)
			if err != nil {
				if st != nil {
					st.foreign.Add(1)
				}
				continue
			}
			if st != nil {
				st.answer(seq, status, now)
			}
		}
	}
}

func (s *udpSender) run(st *step, rate float64, dur time.Duration) {
	ms := make([]ipv4.Message, udpBatch)
	bufs := make([][]byte, udpBatch)
	for i := range ms {
		bufs[i] = make([]byte, s.tmpl.Len())
		ms[i].Buffers = [][]byte{nil}
		ms[i].Addr = s.dst
	}
	start := time.Now()
	var sent int64
	for time.Since(start) < dur {
		n, wait := pace(start, rate, sent, udpBatch)
		if n == 0 {
			time.Sleep(wait)
			continue
		}
		first, ok := s.d.reserve(st, n)
		if !ok {
			return
		}
		now := nanotime()
		for k := int64(0); k < n; k++ {
			seq := first + uint64(k)
			ms[k].Buffers[0] = s.tmpl.Fill(bufs[k], seq)
			st.sent[seq-st.base].Store(now)
		}
		for w := 0; w < int(n); {
			m, err := s.pc.WriteBatch(ms[w:n], 0)
			if err != nil {
				// A send the kernel refused is a request never offered.
				for k := w; k < int(n); k++ {
					st.sent[first+uint64(k)-st.base].Store(0)
				}
				n = int64(w)
				break
			}
			w += m
		}
		st.offered.Add(n)
		sent += n
	}
}

// --- TCP and TLS ---------------------------------------------------------

type streamSender struct {
	d    *driver
	cfg  uacConfig
	tcfg *tls.Config
	p    load.MessageParams

	mu   sync.Mutex
	c    net.Conn
	tmpl *load.Template
	dead bool
	shut bool // closing: a lost connection is expected, not news
	wg   sync.WaitGroup
}

func newStreamSender(d *driver, p load.MessageParams, cfg uacConfig, tcfg *tls.Config) (*streamSender, error) {
	s := &streamSender{d: d, cfg: cfg, tcfg: tcfg, p: p}
	if err := s.dial(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *streamSender) dial() error {
	dl := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(s.cfg.local)}, Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if s.tcfg != nil {
		c, err = tls.DialWithDialer(dl, "tcp", s.cfg.target, s.tcfg)
	} else {
		c, err = dl.Dial("tcp", s.cfg.target)
	}
	if err != nil {
		return fmt.Errorf("dial %s %s: %w", s.cfg.transport, s.cfg.target, err)
	}
	p := s.p
	p.Transport = strings.ToUpper(s.cfg.transport)
	p.Port = c.LocalAddr().(*net.TCPAddr).Port
	t, err := load.NewMessageTemplate(p)
	if err != nil {
		_ = c.Close()
		return err
	}
	s.mu.Lock()
	s.c, s.tmpl, s.dead = c, t, false
	s.mu.Unlock()
	s.wg.Add(1)
	go s.readLoop(c)
	return nil
}

func (s *streamSender) close() {
	s.mu.Lock()
	s.shut = true
	if s.c != nil {
		_ = s.c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *streamSender) markDead(c net.Conn, err error) {
	s.mu.Lock()
	if s.c == c && !s.dead {
		s.dead = true
		if !s.shut {
			s.d.log.Warn("connection lost", "local", c.LocalAddr().String(), "err", err)
		}
	}
	s.mu.Unlock()
	_ = c.Close()
}

func (s *streamSender) readLoop(c net.Conn) {
	defer s.wg.Done()
	buf := make([]byte, 256<<10)
	r := 0
	for {
		n, err := c.Read(buf[r:])
		if n == 0 && err != nil {
			s.markDead(c, err)
			return
		}
		r += n
		now := nanotime()
		st := s.d.cur.Load()
		p := 0
		for p < r {
			skip, size, _, ferr := load.FrameLen(buf[p:r])
			if ferr != nil {
				s.markDead(c, ferr)
				return
			}
			if skip > 0 {
				p += skip
				continue
			}
			if size == 0 {
				break
			}
			status, seq, perr := load.ParseResponse(buf[p:p+size], s.d.prefix)
			if st != nil {
				if perr != nil {
					st.foreign.Add(1)
				} else {
					st.answer(seq, status, now)
				}
			}
			p += size
		}
		copy(buf, buf[p:r])
		r -= p
		if r == len(buf) {
			s.markDead(c, errors.New("stream buffer full"))
			return
		}
	}
}

func (s *streamSender) run(st *step, rate float64, dur time.Duration) {
	s.mu.Lock()
	dead := s.dead
	s.mu.Unlock()
	if dead {
		s.wg.Wait()
		if err := s.dial(); err != nil {
			s.d.log.Warn("redial", "err", err)
			return
		}
	}
	s.mu.Lock()
	c, t := s.c, s.tmpl
	s.mu.Unlock()
	bw := bufio.NewWriterSize(c, 64<<10)
	buf := make([]byte, t.Len())
	start := time.Now()
	var sent int64
	for time.Since(start) < dur {
		n, wait := pace(start, rate, sent, 256)
		if n == 0 {
			time.Sleep(wait)
			continue
		}
		first, ok := s.d.reserve(st, n)
		if !ok {
			return
		}
		// Pipelining: everything due goes out in one write; the deadline
		// keeps a proxy that stops reading from stalling the ramp.
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.timeout))
		now := nanotime()
		for k := int64(0); k < n; k++ {
			seq := first + uint64(k)
			st.sent[seq-st.base].Store(now)
			_, _ = bw.Write(t.Fill(buf, seq))
		}
		if err := bw.Flush(); err != nil {
			for k := int64(0); k < n; k++ {
				st.sent[first+uint64(k)-st.base].Store(0)
			}
			s.markDead(c, err)
			return
		}
		st.offered.Add(n)
		sent += n
	}
}
