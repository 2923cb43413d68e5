package msrp

import "golang.org/x/time/rate"

// NetworkSettings are one member network's MSRP settings (the cluster
// state's Network.msrp, msrp.proto); zero values take the Config's.
type NetworkSettings struct {
	// MaxMessageSize refuses larger messages and files the network sends
	// with 413, audited (0: Config.MaxMessageSize).
	MaxMessageSize int64
	// BytesPerSecond paces the body bytes the network sends (0:
	// Config.BytesPerSecond).
	BytesPerSecond float64
	// MaxChunk bounds the body of each chunk the hub sends toward the
	// network (0: Config.MaxChunk).
	MaxChunk int
	// Relay, when set, is the member's own RFC 4976 relay: the hub's legs
	// toward the network AUTH to it and route through it.
	Relay *RelayAccount
}

// RelayAccount is where and how the hub authenticates to a member's relay.
type RelayAccount struct {
	URI      string // msrp[s]://host[:port][/id];tcp
	Username string
	Password string
}

// settings returns the effective settings of network.
func (r *Relay) settings(network string) NetworkSettings {
	var ns NetworkSettings
	if r.cfg.Network != nil {
		ns = r.cfg.Network(network)
	}
	if ns.MaxMessageSize <= 0 {
		ns.MaxMessageSize = r.cfg.MaxMessageSize
		if r.cfg.MaxMessageSizeFor != nil {
			if n := r.cfg.MaxMessageSizeFor(network); n > 0 {
				ns.MaxMessageSize = n
			}
		}
	}
	if ns.BytesPerSecond <= 0 {
		ns.BytesPerSecond = r.cfg.BytesPerSecond
	}
	if ns.MaxChunk <= 0 {
		ns.MaxChunk = r.cfg.MaxChunk
	}
	return ns
}

// limiter is the byte-rate bucket of a member network (nil: unlimited). A
// changed rate in the cluster state applies to the existing bucket.
func (r *Relay) limiter(network string) *rate.Limiter {
	bps := r.settings(network).BytesPerSecond
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.limits[network]
	if bps <= 0 {
		if l != nil {
			delete(r.limits, network)
		}
		return nil
	}
	burst := r.cfg.Burst
	if burst <= 0 {
		burst = max(int(bps), r.cfg.Limits.MaxBody)
	}
	if l == nil {
		l = rate.NewLimiter(rate.Limit(bps), burst)
		r.limits[network] = l
	} else if l.Limit() != rate.Limit(bps) {
		l.SetLimit(rate.Limit(bps))
		l.SetBurst(burst)
	}
	return l
}
