package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

// Store-and-forward settings of a network (hubctl network update
// --defer...; queue.proto Deferral). The update mask's granularity is the
// whole setting, so the flags given are merged into the current one.
type deferFlags struct {
	on, on480   bool
	maxMessages uint32
	maxBytes    uint64
	ttl         time.Duration
}

var deferFlagNames = []string{"defer", "defer-on-480", "defer-max-messages", "defer-max-bytes", "defer-ttl"}

func (f *deferFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.BoolVar(&f.on, "defer", true, "store and forward MESSAGEs the network cannot take now (--defer=false: answer 408/503 instead)")
	fl.BoolVar(&f.on480, "defer-on-480", false, "also store a MESSAGE the network answers 480 (user offline)")
	fl.Uint32Var(&f.maxMessages, "defer-max-messages", 0, "stored messages for this network at most (0: the nodes' queue.max_messages)")
	fl.Uint64Var(&f.maxBytes, "defer-max-bytes", 0, "bytes of stored requests for this network at most (0: the nodes' queue.max_bytes)")
	fl.DurationVar(&f.ttl, "defer-ttl", 0, "keep each stored message this long (whole seconds; 0: the nodes' queue.ttl, 72h by default)")
}

// changed reports whether any deferral flag was given.
func (f *deferFlags) changed(c *cobra.Command) bool {
	for _, n := range deferFlagNames {
		if c.Flags().Changed(n) {
			return true
		}
	}
	return false
}

// merge applies the flags given to cur.
func (f *deferFlags) merge(c *cobra.Command, cur *hubv1.Deferral) (*hubv1.Deferral, error) {
	fl := c.Flags()
	d := &hubv1.Deferral{Disabled: cur.GetDisabled(), On_480: cur.GetOn_480(), MaxMessages: cur.GetMaxMessages(),
		MaxBytes: cur.GetMaxBytes(), TtlSeconds: cur.GetTtlSeconds()}
	if fl.Changed("defer") {
		d.Disabled = !f.on
	}
	if fl.Changed("defer-on-480") {
		d.On_480 = f.on480
	}
	if fl.Changed("defer-max-messages") {
		d.MaxMessages = f.maxMessages
	}
	if fl.Changed("defer-max-bytes") {
		d.MaxBytes = f.maxBytes
	}
	if fl.Changed("defer-ttl") {
		if f.ttl < 0 || f.ttl%time.Second != 0 || f.ttl > 365*24*time.Hour {
			return nil, usagef("--defer-ttl: %v must be whole seconds, at most a year", f.ttl)
		}
		d.TtlSeconds = uint32(f.ttl / time.Second)
	}
	return d, nil
}

// deferralSummary describes a network's store-and-forward settings.
func deferralSummary(d *hubv1.Deferral) string {
	if d.GetDisabled() {
		return "off"
	}
	parts := []string{"on"}
	if d.GetOn_480() {
		parts = append(parts, "also on 480")
	}
	if n := d.GetMaxMessages(); n > 0 {
		parts = append(parts, fmt.Sprintf("max %d messages", n))
	}
	if n := d.GetMaxBytes(); n > 0 {
		parts = append(parts, fmt.Sprintf("max %d bytes", n))
	}
	if s := d.GetTtlSeconds(); s > 0 {
		parts = append(parts, "ttl "+(time.Duration(s)*time.Second).String())
	}
	return strings.Join(parts, ", ")
}
