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

// params returns the Via parameters to add now, or "" (nothing to say).
func (o *ocState) params(now time.Time) string {
	pct := o.pct.Load()
	validity := ocValidity.Milliseconds()
	if pct == 0 {
		if last := o.lastOn.Load(); last == 0 || now.UnixNano()-last > int64(ocLinger) {
			return ""
		}
		validity = 0
	}
	b := make([]byte, 0, 80)
	b = append(b, ";oc="...)
	b = strconv.AppendInt(b, int64(pct), 10)
	b = append(b, `;oc-algo="loss";oc-validity=`...)
	b = strconv.AppendInt(b, validity, 10)
	b = append(b, ";oc-seq="...)
	ms := now.UnixMilli()
	b = strconv.AppendInt(b, ms/1000, 10)
	b = append(b, '.')
	frac := ms % 1000
	b = append(b, byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return string(b)
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
	p := o.params(now)
	if p == "" {
		return
	}
	via.Params.Remove("oc")
	for _, kv := range bytes.Split([]byte(p[1:]), []byte(";")) {
		k, v, _ := bytes.Cut(kv, []byte("="))
		via.Params.Add(string(k), string(v))
	}
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
