package hub

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"golang.org/x/time/rate"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Per-member fairness: token buckets per member network and service class
// (presence, im, session, chat, file), plus one for all of a network's
// traffic (hubv1.Service_SERVICE_UNSPECIFIED). The limits are
// Config.RateLimits, overridden per network by Network.rate_limits in the
// replicated state. A request over a limit is answered 503 with
// Retry-After at once (RFC 3261 21.5.4; SIP has no 429), before any
// goroutine or ledger entry of its own, counted per member and reason in
// clearhub_sip_shed_total and in an aggregate ledger entry (guard.go).
//
// What counts: out-of-dialog requests, and in-dialog requests that start
// new work (MESSAGE, REFER, a re-INVITE offering a file transfer). Never:
// responses, ACK, CANCEL, BYE and the rest of a dialog's upkeep (NOTIFY,
// SUBSCRIBE refreshes, UPDATE, INFO, PRACK, plain re-INVITEs), so a limit
// cannot break calls or subscriptions already admitted.

// Limit is one token bucket: PerSecond sustained requests per second (0:
// unlimited) and Burst the bucket size (0: max(1, PerSecond)).
type Limit struct {
	PerSecond float64
	Burst     int
}

// numClasses indexes bucket arrays by hubv1.Service value: 0 is all
// traffic, 1..5 presence, im, session, chat, file.
const numClasses = int(hubv1.Service_SERVICE_FILE) + 1

// svcNone marks a request that counts against the all-traffic bucket only
// (OPTIONS, an event package the hub does not carry).
const svcNone = hubv1.Service(-2)

// DefaultRateLimits are the per-member limits used for services
// Config.RateLimits does not name. They are a backstop above one node's
// capacity for the light services, so that they never cut legitimate
// traffic; operators set limits per network (hubctl network update
// --rate-limit) for fairness below the hub's capacity.
func DefaultRateLimits() map[hubv1.Service]Limit {
	return map[hubv1.Service]Limit{
		hubv1.Service_SERVICE_UNSPECIFIED: {}, // all traffic: unlimited
		hubv1.Service_SERVICE_PRESENCE:    {PerSecond: 20000, Burst: 40000},
		hubv1.Service_SERVICE_IM:          {PerSecond: 20000, Burst: 40000},
		hubv1.Service_SERVICE_SESSION:     {PerSecond: 2000, Burst: 4000},
		hubv1.Service_SERVICE_CHAT:        {PerSecond: 20000, Burst: 40000},
		hubv1.Service_SERVICE_FILE:        {PerSecond: 500, Burst: 1000},
	}
}

// RateLimitClass maps a class name as operators write it ("all",
// "presence", "im", "session", "chat", "file") to its service.
func RateLimitClass(name string) (hubv1.Service, bool) {
	switch name {
	case "all":
		return hubv1.Service_SERVICE_UNSPECIFIED, true
	case "presence":
		return hubv1.Service_SERVICE_PRESENCE, true
	case "im":
		return hubv1.Service_SERVICE_IM, true
	case "session":
		return hubv1.Service_SERVICE_SESSION, true
	case "chat":
		return hubv1.Service_SERVICE_CHAT, true
	case "file":
		return hubv1.Service_SERVICE_FILE, true
	}
	return 0, false
}

// className is the inverse of RateLimitClass.
func className(svc hubv1.Service) string {
	if svc == hubv1.Service_SERVICE_UNSPECIFIED {
		return "all"
	}
	return serviceName(svc)
}

func (l Limit) check(name string) error {
	if math.IsNaN(l.PerSecond) || math.IsInf(l.PerSecond, 0) || l.PerSecond < 0 || l.PerSecond > raft.MaxRatePerSecond {
		return fmt.Errorf("hub config: rate limit %s: per second %v not in [0, %g]", name, l.PerSecond, raft.MaxRatePerSecond)
	}
	if l.Burst < 0 || l.Burst > raft.MaxRateBurst {
		return fmt.Errorf("hub config: rate limit %s: burst %d not in [0, %d]", name, l.Burst, int(raft.MaxRateBurst))
	}
	return nil
}

// bucketSpec is a Limit with its defaults applied; comparable, so a
// rebuild can tell whether a bucket changed.
type bucketSpec struct {
	perSecond float64 // 0: unlimited
	burst     int
}

func specOf(perSecond float64, burst int) bucketSpec {
	if perSecond <= 0 || math.IsNaN(perSecond) || math.IsInf(perSecond, 0) {
		return bucketSpec{}
	}
	if burst <= 0 {
		burst = max(1, int(perSecond))
	}
	return bucketSpec{perSecond: perSecond, burst: burst}
}

func (s bucketSpec) String() string {
	return strconv.FormatFloat(s.perSecond, 'f', -1, 64) + "/s, burst " + strconv.Itoa(s.burst)
}

// memberLoad is a network's share of the work in flight (overload.go); it
// survives state changes.
type memberLoad struct {
	inflight atomic.Int64
}

// memberBuckets are one network's buckets in one limitTable. The limiters
// and the load are shared with the tables before and after it; the struct
// itself is never modified once published.
type memberBuckets struct {
	spec [numClasses]bucketSpec
	lim  [numClasses]*rate.Limiter // nil: unlimited
	load *memberLoad
}

// limitTable is the buckets of every network for one state.
type limitTable struct {
	index uint64
	nets  map[string]*memberBuckets
}

// rateLimiter keeps the limitTable of the newest state seen. Requests read
// it without a lock; a state change rebuilds it once, under mu (no I/O),
// reusing the limiter of every bucket whose limit did not change.
type rateLimiter struct {
	defaults [numClasses]bucketSpec
	now      func() time.Time

	cur atomic.Pointer[limitTable]
	mu  sync.Mutex
}

func newRateLimiter(cfg Config) *rateLimiter {
	r := &rateLimiter{now: cfg.limitClock}
	if r.now == nil {
		r.now = time.Now
	}
	for svc, l := range cfg.RateLimits {
		r.defaults[svc] = specOf(l.PerSecond, l.Burst)
	}
	r.cur.Store(&limitTable{nets: map[string]*memberBuckets{}})
	return r
}

// table returns the buckets for st, rebuilding them when st is newer than
// the table. A request still holding an older state uses the newer table.
func (r *rateLimiter) table(st *raft.State) *limitTable {
	t := r.cur.Load()
	if st == nil || st.Index <= t.index {
		return t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t = r.cur.Load(); st.Index <= t.index {
		return t
	}
	t = r.rebuild(t, st)
	r.cur.Store(t)
	return t
}

func (r *rateLimiter) rebuild(old *limitTable, st *raft.State) *limitTable {
	now := r.now()
	nt := &limitTable{index: st.Index, nets: make(map[string]*memberBuckets, len(st.Networks()))}
	for _, n := range st.Networks() {
		spec := r.defaults
		for _, rl := range n.GetRateLimits() {
			if i := int(rl.GetService()); i >= 0 && i < numClasses {
				spec[i] = specOf(rl.GetPerSecond(), int(rl.GetBurst()))
			}
		}
		mb := &memberBuckets{spec: spec}
		prev := old.nets[n.GetId()]
		if prev != nil {
			mb.load = prev.load
		} else {
			mb.load = &memberLoad{}
		}
		for i, s := range spec {
			switch {
			case s.perSecond == 0:
			case prev != nil && prev.lim[i] != nil && prev.spec[i] == s:
				mb.lim[i] = prev.lim[i]
			case prev != nil && prev.lim[i] != nil:
				// Changed: adjust the same bucket, keeping what the
				// member has used of it.
				prev.lim[i].SetLimitAt(now, rate.Limit(s.perSecond))
				prev.lim[i].SetBurstAt(now, s.burst)
				mb.lim[i] = prev.lim[i]
			default:
				mb.lim[i] = rate.NewLimiter(rate.Limit(s.perSecond), s.burst)
			}
		}
		nt.nets[n.GetId()] = mb
	}
	return nt
}

// shedding is why a request is not admitted.
type shedding struct {
	label  string // metric label and aggregate bucket
	phrase string // reason phrase of the 503
	cause  string // for the aggregate entry
	retry  time.Duration
}

// take charges one request of class svc (svcNone: all-traffic only) to
// netID's buckets; nil when admitted. The all-traffic bucket is looked at
// first so that a request it refuses costs no class token.
func (t *limitTable) take(netID string, svc hubv1.Service, now time.Time) *shedding {
	mb := t.nets[netID]
	if mb == nil {
		return nil
	}
	all := mb.lim[0]
	if all != nil && all.TokensAt(now) < 1 {
		return rateRefusal(mb, 0, now)
	}
	if i := int(svc); i > 0 && i < numClasses {
		if l := mb.lim[i]; l != nil && !l.AllowN(now, 1) {
			return rateRefusal(mb, i, now)
		}
	}
	if all != nil && !all.AllowN(now, 1) {
		return rateRefusal(mb, 0, now)
	}
	return nil
}

func rateRefusal(mb *memberBuckets, i int, now time.Time) *shedding {
	svc := hubv1.Service(i)
	name := className(svc)
	phrase := "Rate limit exceeded for " + name
	if i == 0 {
		phrase = "Rate limit exceeded for all traffic"
	}
	// Retry-After: when the next token is there (at least 1 s, RFC 3261
	// 20.33 counts whole seconds).
	wait := time.Second
	if l := mb.lim[i]; l != nil {
		if missing := 1 - l.TokensAt(now); missing > 0 {
			wait = max(wait, time.Duration(missing/float64(l.Limit())*float64(time.Second)))
		}
	}
	return &shedding{label: "rate_" + name, phrase: phrase, retry: wait,
		cause: phrase + " (" + mb.spec[i].String() + " per member network)"}
}

// limitClass is the bucket class a request is charged to; counts is false
// for requests never limited. inDlg says whether the request is inside a
// dialog the hub routes (a To tag and a hub Route; without the Route the
// pipeline routes it as out of dialog, so it counts as such).
func limitClass(req *sip.Request, inDlg bool) (svc hubv1.Service, counts bool) {
	switch req.Method {
	case sip.ACK, sip.CANCEL, sip.BYE:
		return 0, false
	}
	if inDlg {
		switch req.Method {
		case sip.MESSAGE:
			return hubv1.Service_SERVICE_IM, true
		case sip.REFER:
			return hubv1.Service_SERVICE_SESSION, true
		case sip.INVITE:
			if isFileTransfer(req) {
				return hubv1.Service_SERVICE_FILE, true
			}
		}
		return 0, false // the dialog's upkeep
	}
	svc, ok := classify(req)
	if !ok || svc == svcAny {
		return svcNone, true
	}
	return svc, true
}

// retryAfter formats d as a Retry-After header (whole seconds, rounded up,
// at most an hour).
func retryAfter(d time.Duration) sip.Header {
	s := int64(math.Ceil(d.Seconds()))
	s = min(max(s, 1), 3600)
	return sip.NewHeader("Retry-After", strconv.FormatInt(s, 10))
}
