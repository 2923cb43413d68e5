package main

import (
	"runtime/debug"
	"testing"
)

func TestVersionFrom(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name string
		set  string
		bi   *debug.BuildInfo
		want string
	}{
		{"ldflags win", "v1.2.3-4-gabcdef-dirty", &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}}, "v1.2.3-4-gabcdef-dirty"},
		{"go install at a tag", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v1.0.0"}, Settings: vcs(rev, "false")}, "v1.0.0"},
		{"checkout", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, "dev-0123456789ab"},
		{"modified checkout", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}, "dev-0123456789ab-dirty"},
		{"no vcs", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"no build info", "dev", nil, "dev"},
		{"empty -X", "", nil, "dev"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionFrom(tc.set, tc.bi); got != tc.want {
				t.Errorf("versionFrom(%q) = %q, want %q", tc.set, got, tc.want)
			}
		})
	}
}
