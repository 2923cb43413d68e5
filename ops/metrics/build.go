package metrics

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is the build's version: the module version when built from a
// tagged module, else "devel" with the VCS revision (and "+dirty" for a
// modified tree) when the build recorded it.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
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
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev + dirty
}

// RegisterBuildInfo adds clearhub_build_info{version,goversion} 1, the usual
// way to put a version on dashboards and alert on mixed-version clusters.
func RegisterBuildInfo(reg prometheus.Registerer, version string) error {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "clearhub", Name: "build_info",
		Help: "Always 1; the labels say which build this node runs.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version, runtime.Version()).Set(1)
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("register build info: %w", err)
	}
	return nil
}
