package main

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// rateClasses names the rate-limit classes: the services, and "all" for a
// network's traffic together (SERVICE_UNSPECIFIED in the proto).
const rateClasses = "all, presence, im, session, chat, file"

// rateClassName renders a rate limit's class.
func rateClassName(s hubv1.Service) string {
	if s == hubv1.Service_SERVICE_UNSPECIFIED {
		return "all"
	}
	return serviceName(s)
}

// parseRateLimits turns --rate-limit values (comma-separated, repeatable)
// of the form CLASS=RATE[/BURST] into rate limits sorted by class; the
// single value "none" means no limits of the network's own. RATE is
// requests per second (0: unlimited), BURST the bucket size (0 or absent:
// max(1, RATE)).
func parseRateLimits(flag string, vals []string) ([]*hubv1.RateLimit, error) {
	var items []string
	for _, v := range vals {
		for _, it := range strings.Split(v, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
	}
	if len(items) == 1 && strings.EqualFold(items[0], "none") {
		return nil, nil
	}
	seen := map[hubv1.Service]bool{}
	var out []*hubv1.RateLimit
	for _, it := range items {
		name, spec, ok := strings.Cut(it, "=")
		if !ok {
			return nil, usagef("%s %q: want CLASS=RATE[/BURST] (classes: %s) or none", flag, it, rateClasses)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		svc := hubv1.Service_SERVICE_UNSPECIFIED
		if name != "all" {
			s, ok := serviceByName[name]
			if !ok {
				return nil, usagef("%s %q: unknown class %q (want one of %s)", flag, it, name, rateClasses)
			}
			svc = s
		}
		if seen[svc] {
			return nil, usagef("%s: class %s given twice", flag, name)
		}
		seen[svc] = true
		rateStr, burstStr, hasBurst := strings.Cut(strings.TrimSpace(spec), "/")
		rate, err := strconv.ParseFloat(strings.TrimSpace(rateStr), 64)
		if err != nil || math.IsNaN(rate) || math.IsInf(rate, 0) || rate < 0 || rate > raft.MaxRatePerSecond {
			return nil, usagef("%s %q: rate must be a number of requests per second from 0 (unlimited) to %g", flag, it, raft.MaxRatePerSecond)
		}
		rl := &hubv1.RateLimit{Service: svc, PerSecond: rate}
		if hasBurst {
			b, err := strconv.ParseUint(strings.TrimSpace(burstStr), 10, 32)
			if err != nil || b > raft.MaxRateBurst {
				return nil, usagef("%s %q: burst must be a whole number from 0 to %g", flag, it, raft.MaxRateBurst)
			}
			rl.Burst = uint32(b)
		}
		out = append(out, rl)
	}
	slices.SortFunc(out, func(a, b *hubv1.RateLimit) int { return int(a.GetService()) - int(b.GetService()) })
	return out, nil
}

// rateLimitList renders rate limits for tables in --rate-limit syntax
// ("all=500,im=100/200"), "-" when the network has none of its own.
func rateLimitList(rls []*hubv1.RateLimit) string {
	parts := make([]string, 0, len(rls))
	for _, rl := range rls {
		p := rateClassName(rl.GetService()) + "=" + strconv.FormatFloat(rl.GetPerSecond(), 'f', -1, 64)
		if rl.GetBurst() > 0 {
			p += "/" + strconv.FormatUint(uint64(rl.GetBurst()), 10)
		}
		parts = append(parts, p)
	}
	return joinOrDash(parts)
}
