package msrp

// PeakQueued is the highest number of body bytes that waited toward one leg.
func (r *Relay) PeakQueued() int64 { return r.peakQueued.Load() }
