package main

import (
	"runtime/debug"
)

// version is the release this binary was built as, set by the build (the
// Makefile passes git describe):
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/hubd
//
// hubctl uses the same variable name, so one -X flag form serves both.
var version = "dev"

// buildVersion is what hubd reports as its version (--version, the
// clearhub_build_info metric, cluster status): the -X version when set,
// else the module version of a 'go install ...@vX' build, else "dev" with
// the VCS revision Go recorded ("dev-0123456789ab", "-dirty" for a tree
// with uncommitted changes), so two development builds can be told apart.
func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(version, bi)
}

func versionFrom(set string, bi *debug.BuildInfo) string {
	if set != "dev" && set != "" {
		return set
	}
	if bi == nil {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return "dev-" + rev + dirty
}
