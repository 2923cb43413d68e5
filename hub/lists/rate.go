package lists

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// RFC 6446 rate control: the subscriber asks, in Event parameters of a
// SUBSCRIBE or of a 2xx to a NOTIFY (4.1, 9.3), for at most max-rate and
// at least min-rate notifications per second, and for an adaptive minimum
// rate (7): a heartbeat whose timeout grows with the NOTIFYs sent in a
// rolling period (7.4). The notifier may adjust the values (4.2, 5.3, 6.3,
// 7.3) and MUST echo what it applies in Subscription-State.

// minRateFloor bounds how often min-rate or adaptive-min-rate may make the
// hub send an unchanged state: once a minute at most, whatever the watcher
// asks (a heartbeat per watcher is the hub's cost; RFC 6446 6.3 and 7.3
// let the notifier lower the rates, and 7.4 lets it reach the adaptive
// minimum its own way).
const minRateFloor = time.Minute

// amrPeriodFactor is the adaptive-min-rate's rolling period in units of
// 1/adaptive-min-rate: RFC 6446 7.4 says the period MUST exceed it and
// RECOMMENDS several times it. The count then starts at period*rate = 5
// NOTIFYs (7.2 step 1).
const amrPeriodFactor = 5

// amrHistoryCap bounds the send times kept per subscription. A count that
// reaches it already makes the timeout 51 times 1/adaptive-min-rate (no
// heartbeat for a busy subscription); counting further changes nothing that
// matters and would cost memory per watcher.
const amrHistoryCap = 256

type rateParams struct {
	maxInterval time.Duration // 0: no max-rate
	minInterval time.Duration // 0: no min-rate
	amrInterval time.Duration // 0: no adaptive-min-rate; else 1/adaptive-min-rate
	maxRate     float64       // requested, then as applied (and echoed)
	minRate     float64
	amrRate     float64
}

// eventRates reads max-rate, min-rate and adaptive-min-rate from the
// Event header of a SUBSCRIBE, as requested (applied adjusts them).
func eventRates(req *sip.Request) (rateParams, error) {
	return parseRates(headerValue(req, "Event", "o"))
}

// parseRates reads the rate parameters of an Event header value. A value
// not of the RFC 6446 9.2 form (1*2DIGIT ["." 1*10DIGIT], not zero: 5.1)
// is an error; other parameters are not its business.
func parseRates(v string) (rateParams, error) {
	var p rateParams
	parts := strings.Split(v, ";")
	for _, part := range parts[1:] {
		k, val, hasVal := strings.Cut(strings.TrimSpace(part), "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if k != "max-rate" && k != "min-rate" && k != "adaptive-min-rate" {
			continue
		}
		val = strings.TrimSpace(val)
		f, ok := rateValue(val)
		if !hasVal || !ok {
			return rateParams{}, fmt.Errorf("Event %s %q is not a rate of the RFC 6446 form (0.0000000001 to 99.9999999999)", k, val)
		}
		switch k {
		case "max-rate":
			p.maxRate = f
		case "min-rate":
			p.minRate = f
		case "adaptive-min-rate":
			p.amrRate = f
		}
	}
	return p, nil
}

// rateValue parses 1*2DIGIT ["." 1*10DIGIT] (RFC 6446 9.2), zero refused
// (5.1, 6.1, 7.1).
func rateValue(s string) (float64, bool) {
	digits := func(s string, lo, hi int) bool {
		if len(s) < lo || len(s) > hi {
			return false
		}
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		return true
	}
	whole, frac, dot := strings.Cut(s, ".")
	if !digits(whole, 1, 2) || (dot && !digits(frac, 1, 10)) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f == 0 {
		return 0, false
	}
	return f, true
}

// applied is what the hub applies of the requested rates for a
// subscription with exp left (0: it is ending), in RFC 6446's order.
func (p rateParams) applied(exp time.Duration) rateParams {
	// 8: a min-rate not lower than the adaptive-min-rate MUST NOT be
	// considered.
	if p.minRate > 0 && p.amrRate > 0 && p.minRate >= p.amrRate {
		p.minRate = 0
	}
	// 6.3, 7.3: the notifier may lower them; the hub's floor.
	floor := 1 / minRateFloor.Seconds()
	if p.minRate > floor {
		p.minRate = floor
	}
	if p.amrRate > floor {
		p.amrRate = floor
	}
	// 5.3: a max-rate that would allow no NOTIFY before the subscription
	// expires MUST be raised to 1/(the time left).
	if p.maxRate > 0 && exp > 0 && 1/p.maxRate > exp.Seconds() {
		p.maxRate = 1 / exp.Seconds()
	}
	// 8: min-rate and adaptive-min-rate above max-rate MUST be lowered to
	// at most max-rate.
	if p.maxRate > 0 {
		p.minRate = min(p.minRate, p.maxRate)
		p.amrRate = min(p.amrRate, p.maxRate)
	}
	// The echo is what is applied (5.2, 6.2, 7.2: the indicated value is
	// adopted), so the intervals come from the rates as echoed.
	p.maxRate, p.maxInterval = quantize(p.maxRate)
	p.minRate, p.minInterval = quantize(p.minRate)
	p.amrRate, p.amrInterval = quantize(p.amrRate)
	return p
}

// quantize rounds a rate to the 10 decimals the echo can carry and returns
// it with its interval; 0 stays 0.
func quantize(f float64) (float64, time.Duration) {
	if f <= 0 {
		return 0, 0
	}
	q, _ := strconv.ParseFloat(formatRate(f), 64)
	return q, max(time.Duration(float64(time.Second)/q), time.Nanosecond)
}

// formatRate writes a rate in the RFC 6446 9.2 form: fixed point, at most
// 10 decimals, never an exponent (strconv's 'g' would write 1e-05).
func formatRate(f float64) string {
	s := strings.TrimRight(strconv.FormatFloat(f, 'f', 10, 64), "0")
	return strings.TrimSuffix(s, ".")
}

// echo is the Subscription-State parameters of the applied rates.
func (p rateParams) echo() string {
	var b strings.Builder
	if p.maxInterval > 0 {
		b.WriteString(";max-rate=" + formatRate(p.maxRate))
	}
	if p.minInterval > 0 {
		b.WriteString(";min-rate=" + formatRate(p.minRate))
	}
	if p.amrInterval > 0 {
		b.WriteString(";adaptive-min-rate=" + formatRate(p.amrRate))
	}
	return b.String()
}

// amrPeriod is the adaptive-min-rate's rolling period (RFC 6446 7.4).
func (p rateParams) amrPeriod() time.Duration { return amrPeriodFactor * p.amrInterval }

// heartbeatIn is how long after the NOTIFY sent at now the state goes
// again unchanged, 0 for never: min-rate's fixed 1/min-rate (6.2), or the
// adaptive timeout (7.4), whichever is sooner. sent holds the NOTIFYs of
// the last period (now's included) and since is when adaptive-min-rate
// came into force.
func (p rateParams) heartbeatIn(since, now time.Time, sent []time.Time) time.Duration {
	d := p.minInterval
	if p.amrInterval > 0 {
		if a := p.amrTimeout(since, now, sent); d == 0 || a < d {
			d = a
		}
	}
	return d
}

// amrTimeout is RFC 6446 7.4: timeout = count / (rate^2 * period), and with
// max-rate MAX(1/max-rate, that) (equation 2); never under the hub's
// floor. count is the NOTIFYs sent in the last period plus what is left of
// the history the count starts with (7.2 step 1: period*rate NOTIFYs, taken
// as sent at the rate before since, so that they leave the period as it
// rolls on).
func (p rateParams) amrTimeout(since, now time.Time, sent []time.Time) time.Duration {
	period := p.amrPeriod()
	count := 0
	if left := period - now.Sub(since); left > 0 {
		// The initial history at since, since-1/rate, ... still inside the
		// period (now-period, now].
		count = min(int((left+p.amrInterval-1)/p.amrInterval), amrPeriodFactor)
	}
	from := now.Add(-period)
	for _, t := range sent {
		if t.After(from) {
			count++
		}
	}
	// count/(rate^2*period) with period = amrPeriodFactor/rate.
	timeout := time.Duration(count) * p.amrInterval / amrPeriodFactor
	return max(timeout, p.maxInterval, minRateFloor)
}

// recordSent adds a NOTIFY at now to the adaptive-min-rate history of the
// last period (nil without adaptive-min-rate), bounded by amrHistoryCap.
func (p rateParams) recordSent(sent []time.Time, now time.Time) []time.Time {
	if p.amrInterval <= 0 {
		return nil
	}
	from := now.Add(-p.amrPeriod())
	keep := sent[:0]
	for _, t := range sent {
		if t.After(from) {
			keep = append(keep, t)
		}
	}
	keep = append(keep, now)
	if len(keep) > amrHistoryCap {
		keep = keep[len(keep)-amrHistoryCap:]
	}
	return keep
}
