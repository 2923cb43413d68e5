package admin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	auditErrors prometheus.Counter
}

// newMetrics builds the admin metrics and registers them on reg (if any).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "admin", Name: "requests_total",
			Help: "Admin gRPC requests by method and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "clearhub", Subsystem: "admin", Name: "request_duration_seconds",
			Help:    "Admin gRPC request latency by method (streams: until the stream ends).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9), // 0.5 ms .. ~33 s
		}, []string{"method"}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "clearhub", Subsystem: "admin", Name: "audit_errors_total",
			Help: "Committed admin changes whose audit entry could not be appended.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.auditErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("admin metrics (one Server per registry): %w", err)
			}
		}
	}
	return m, nil
}

// methodLabel turns "/clearhub.v1.AdminService/AddNetwork" into
// "AdminService/AddNetwork". Only registered methods reach interceptors, so
// the label set is bounded.
func methodLabel(full string) string {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		svc := full[:i]
		if j := strings.LastIndexByte(svc, '.'); j >= 0 {
			svc = svc[j+1:]
		}
		return svc + full[i:]
	}
	return full
}

func (m *metrics) observe(method string, start time.Time, err error) {
	// Lawful-interception calls leave no trace outside the interception
	// ledger: a per-method series would show when a warrant was set.
	if strings.HasPrefix(method, "/clearhub.v1.InterceptService/") {
		return
	}
	label := methodLabel(method)
	m.requests.WithLabelValues(label, status.Code(err).String()).Inc()
	m.duration.WithLabelValues(label).Observe(time.Since(start).Seconds())
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.observe(info.FullMethod, start, err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.observe(info.FullMethod, start, err)
	return err
}
