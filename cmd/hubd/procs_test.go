package main

import (
	"io"
	"log/slog"
	"runtime"
	"testing"
)

func TestEnsureProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name  string
		start int
		env   string
		want  int
	}{
		{"one CPU, no env: raised", 1, "", minProcs},
		{"one CPU, GOMAXPROCS set by the operator: kept", 1, "1", 1},
		{"already enough", 3, "", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(tc.start)
			got := ensureProcs(func(k string) string {
				if k == "GOMAXPROCS" {
					return tc.env
				}
				return ""
			}, quiet)
			if got != tc.want || runtime.GOMAXPROCS(0) != tc.want {
				t.Fatalf("ensureProcs = %d, GOMAXPROCS now %d; want %d", got, runtime.GOMAXPROCS(0), tc.want)
			}
		})
	}
}
