package hub

import (
	"bytes"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// RFC 7339 overload control toward members that announce support (an
// "oc" parameter without a value in the top Via of their requests,
// section 4.1): while the hub sheds for overload, every response to such a
// member carries in that Via the reduction it asks for (oc, the percentage
// of the member's new requests it should not send, loss algorithm, section
// 5.2), for how long it holds (oc-validity, ms) and a sequence (oc-seq) that
// only grows. When the overload ends, responses carry oc=0 with
// oc-validity=0 for a few seconds so clients stop reducing at once
// (section 5.5) rather than when their validity runs out. Members that
// do not announce support see nothing; the 503s stay the backstop.
//
// The reduction is the share of new work overload control refused over
// the last second (rate-limit refusals, which are per member and not a
// sign of the hub's overload, do not count).

const (
	ocValidity = 500 * time.Millisecond // RFC 7339 5.2's suggested default
	ocLinger   = 5 * time.Second        // oc=0 announced this long after the end
)

// ocState is the reduction in force, rolled once a second.
type ocState struct {
	admitted, shed atomic.Int64 // this second
	pct            atomic.Int32 // reduction asked now (0-100)
	lastOn         atomic.Int64 // unix nano of the last second with a reduction
}

func (o *ocState) count(shed bool) {
	if shed {
		o.shed.Add(1)
	} else {
		o.admitted.Add(1)
	}
}

// roll closes a second.
func (o *ocState) roll(now time.Time) {
	a, s := o.admitted.Swap(0), o.shed.Swap(0)
	pct := int32(0)
	if s > 0 {
		pct = int32((100*s + a + s - 1) / (a + s)) // rounded up: a shed second asks for at least 1%
	}
	o.pct.Store(pct)
	if pct > 0 {
		o.lastOn.Store(now.UnixNano())
	}
}

// reduction is what to tell a supporting client now; ok is false when
// there is nothing to say (no overload now or in the last ocLinger).
func (o *ocState) reduction(now time.Time) (pct int32, validityMs int64, seq string, ok bool) {
	pct, validityMs = o.pct.Load(), ocValidity.Milliseconds()
	if pct == 0 {
		if last := o.lastOn.Load(); last == 0 || now.UnixNano()-last > int64(ocLinger) {
			return 0, 0, "", false
		}
		validityMs = 0
	}
	ms := now.UnixMilli()
	frac := ms % 1000
	b := strconv.AppendInt(make([]byte, 0, 16), ms/1000, 10)
	b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return pct, validityMs, string(b), true
}

// params returns the Via parameters to add now, or "" (nothing to say).
func (o *ocState) params(now time.Time) string {
	pct, validity, seq, ok := o.reduction(now)
	if !ok {
		return ""
	}
	return ";oc=" + strconv.Itoa(int(pct)) + `;oc-algo="loss";oc-validity=` + strconv.FormatInt(validity, 10) + ";oc-seq=" + seq
}

// markVia adds the parameters to a response's top Via (the member's, once
// the hub's own is removed) when the member announced support.
func (o *ocState) markVia(res *sip.Response, now time.Time) {
	via := res.Via()
	if via == nil || !via.Params.Has("oc") {
		return
	}
	if v, _ := via.Params.Get("oc"); v != "" {
		return // already says something (a downstream server's): leave it
	}
	pct, validity, seq, ok := o.reduction(now)
	if !ok {
		return
	}
	via.Params.Remove("oc")
	via.Params.Add("oc", strconv.Itoa(int(pct)))
	via.Params.Add("oc-algo", `"loss"`)
	via.Params.Add("oc-validity", strconv.FormatInt(validity, 10))
	via.Params.Add("oc-seq", seq)
}

// rawViaWantsOC reports whether a raw Via value announces support: an oc
// parameter without a value.
func rawViaWantsOC(via []byte) bool {
	for _, p := range bytes.Split(via, []byte(";"))[1:] {
		if bytes.EqualFold(bytes.TrimSpace(p), []byte("oc")) {
			return true
		}
	}
	return false
}
