package lists

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// RFC 6446 rate control: the subscriber asks, in Event parameters, for at
// most max-rate and at least min-rate notifications per second; the
// notifier applies what it can and says so in Subscription-State (RFC 6446
// 4.3). adaptive-min-rate is a minimum the notifier adapts to the traffic
// it already sent: the hub reads it as a minimum average rate over the
// subscription (heartbeats only when the NOTIFYs sent so far fall behind
// it; a busy subscription gets none).

// minRateFloor bounds how often min-rate may make the hub send an
// unchanged state: once a minute at most, whatever the watcher asks (a
// heartbeat per watcher is the hub's cost).
const minRateFloor = time.Minute

type rateParams struct {
	maxInterval time.Duration // 0: no max-rate
	minInterval time.Duration // 0: no min-rate
	amrInterval time.Duration // 0: no adaptive-min-rate
	maxRate     float64       // as applied, for the echo
	minRate     float64
	amrRate     float64
}

// eventRates reads max-rate, min-rate and adaptive-min-rate from the
// Event header.
func eventRates(req *sip.Request) (rateParams, error) {
	var p rateParams
	v := headerValue(req, "Event", "o")
	parts := strings.Split(v, ";")
	for _, part := range parts[1:] {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if k != "max-rate" && k != "min-rate" && k != "adaptive-min-rate" {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return rateParams{}, fmt.Errorf("Event %s %q is not a positive rate", k, val)
		}
		iv := time.Duration(float64(time.Second) / f)
		if iv <= 0 {
			iv = time.Nanosecond
		}
		switch k {
		case "max-rate":
			p.maxRate, p.maxInterval = f, iv
		case "min-rate":
			if iv < minRateFloor {
				iv, f = minRateFloor, 1/minRateFloor.Seconds()
			}
			p.minRate, p.minInterval = f, iv
		case "adaptive-min-rate":
			if iv < minRateFloor {
				iv, f = minRateFloor, 1/minRateFloor.Seconds()
			}
			p.amrRate, p.amrInterval = f, iv
		}
	}
	if p.maxInterval > 0 && p.minInterval > 0 && p.minInterval < p.maxInterval {
		// RFC 6446 4.4: min-rate above max-rate cannot both hold; the
		// ceiling wins.
		p.minInterval, p.minRate = p.maxInterval, p.maxRate
	}
	if p.maxInterval > 0 && p.amrInterval > 0 && p.amrInterval < p.maxInterval {
		p.amrInterval, p.amrRate = p.maxInterval, p.maxRate
	}
	return p, nil
}

// echo is the Subscription-State parameters of the applied rates.
func (p rateParams) echo() string {
	var b strings.Builder
	if p.maxInterval > 0 {
		b.WriteString(";max-rate=" + strconv.FormatFloat(p.maxRate, 'g', 6, 64))
	}
	if p.minInterval > 0 {
		b.WriteString(";min-rate=" + strconv.FormatFloat(p.minRate, 'g', 6, 64))
	}
	if p.amrInterval > 0 {
		b.WriteString(";adaptive-min-rate=" + strconv.FormatFloat(p.amrRate, 'g', 6, 64))
	}
	return b.String()
}

// heartbeatIn is how long after a NOTIFY (at now, the count-th since the
// subscription began at start) the state goes again unchanged, 0 for
// never: min-rate's fixed interval, or adaptive-min-rate's next deadline
// start + count*interval, whichever is sooner, never sooner than the floor.
func (p rateParams) heartbeatIn(start, now time.Time, count int) time.Duration {
	var d time.Duration
	if p.minInterval > 0 {
		d = p.minInterval
	}
	if p.amrInterval > 0 {
		a := start.Add(time.Duration(count) * p.amrInterval).Sub(now)
		a = max(a, minRateFloor)
		if d == 0 || a < d {
			d = a
		}
	}
	return d
}
