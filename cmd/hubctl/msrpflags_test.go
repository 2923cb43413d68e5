package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"

	"clearhub/proto/hubv1"
)

func TestMsrpFlagsMerge(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cur := &hubv1.MsrpSettings{MaxFileSize: 100, BytesPerSecond: 50, RelayUri: "msrp://r:1;tcp", RelayUsername: "hub", RelayPasswordSet: true}
	for _, tc := range []struct {
		name string
		args []string
		want *hubv1.MsrpSettings
	}{
		{"size only", []string{"--msrp-max-file-size", "200"},
			&hubv1.MsrpSettings{MaxFileSize: 200, BytesPerSecond: 50, RelayUri: "msrp://r:1;tcp", RelayUsername: "hub"}},
		{"rate and chunk", []string{"--msrp-byte-rate", "7", "--msrp-max-chunk", "4096"},
			&hubv1.MsrpSettings{MaxFileSize: 100, BytesPerSecond: 7, MaxChunk: 4096, RelayUri: "msrp://r:1;tcp", RelayUsername: "hub"}},
		{"password from a file", []string{"--msrp-relay-password-file", pw},
			&hubv1.MsrpSettings{MaxFileSize: 100, BytesPerSecond: 50, RelayUri: "msrp://r:1;tcp", RelayUsername: "hub", RelayPassword: "s3cret"}},
		{"relay cleared", []string{"--msrp-relay="},
			&hubv1.MsrpSettings{MaxFileSize: 100, BytesPerSecond: 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f msrpFlags
			c := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
			f.register(c)
			if err := c.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := f.merge(c, cur)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want.String() {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
