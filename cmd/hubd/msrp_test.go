package main

import (
	"context"
	"strings"
	"testing"

	"clearhub/hub"
	"clearhub/hub/msrp"
)

func TestMSRPConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(c *Config)
		want string // "" valid
	}{
		{"defaults (off)", func(*Config) {}, ""},
		{"on", func(c *Config) { c.MSRP.TCP = "127.0.0.1:0" }, ""},
		{"chunk over Kamailio's limit", func(c *Config) { c.MSRP.MaxChunk = 16384 }, "msrp:"},
		{"negative size", func(c *Config) { c.MSRP.MaxMessageSize = -1 }, "msrp:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.DataDir = t.TempDir()
			tt.mod(&c)
			err := c.Validate()
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want %q", err, tt.want)
			}
		})
	}
}

// The adapter satisfies hub.SessionAnchor and passes the dialog through.
func TestMSRPAnchorAdapter(t *testing.T) {
	r, err := msrp.New(msrp.Config{Host: "127.0.0.1", TCPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.Run(context.Background()) }()
	defer r.Close()
	var a hub.SessionAnchor = msrpAnchor{r}
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=message 7 TCP/MSRP *\r\na=path:msrp://127.0.0.2:7/s1;tcp\r\n"
	out, err := a.Offer(hub.AnchorDialog{CallID: "c1", OffererNet: "a", AnswererNet: "b"}, []byte(sdp))
	if err != nil || !strings.Contains(string(out), "a=path:msrp://127.0.0.1:") {
		t.Fatalf("offer: %v\n%s", err, out)
	}
	if r.Sessions() != 1 {
		t.Fatalf("%d sessions", r.Sessions())
	}
	a.End("c1")
	if r.Sessions() != 0 {
		t.Fatal("End left the session")
	}
}
