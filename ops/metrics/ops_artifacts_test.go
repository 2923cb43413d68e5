package metrics_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	hraft "github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"clearhub/chatroom"
	"clearhub/hub"
	"clearhub/hub/intercept"
	"clearhub/hub/lists"
	"clearhub/hub/msrp"
	"clearhub/hub/queue"
	"clearhub/ledger"
	"clearhub/ops/admin"
	"clearhub/ops/metrics"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// The operator artefacts in ops/ (the Grafana dashboard and the Prometheus
// alert rules) may name only metrics a node really serves. The set of
// names comes from the pieces cmd/hubd wires (ledger, raft, admin API, SIP
// plane, store and forward, certificates, build info, Go and process
// collectors), built here in-process on one registry the way
// cmd/hubd/node.go does. Labelled series appear only after their first
// increment, so names are taken from the collectors' descriptors, not only
// from a scrape.

const (
	rulesFile     = "../prometheus/clearhub-rules.yml"
	dashboardFile = "../grafana/clearhub.json"
)

// synthetic are series Prometheus itself writes for every target.
var synthetic = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped"}

func TestRulesNameOnlyRegisteredMetrics(t *testing.T) {
	have := nodeMetricNames(t)
	rules := loadRules(t)
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", rulesFile)
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Alert == "" || r.Expr == "" {
			t.Errorf("rule %+v: alert and expr required", r)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("alert %s: needs labels.severity, annotations.summary and annotations.description", r.Alert)
		}
		checkExpr(t, have, "alert "+r.Alert, r.Expr)
	}
	// The alerts issue 15 asks for, by name, so a rename is deliberate.
	for _, a := range []string{"ClearhubNoLeader", "ClearhubLeaderChanges", "ClearhubLedgerFsyncSlow", "ClearhubCheckpointStale",
		"ClearhubScrubFailed", "ClearhubEdgeDown", "ClearhubNoUsableEdge", "ClearhubRefusalsSpike", "ClearhubShedLoad",
		"ClearhubCertificateExpiringSoon", "ClearhubCertificateExpired", "ClearhubNodeRemoved", "ClearhubNodeNotReady",
		"ClearhubQueueOld", "ClearhubAcceptErrors", "ClearhubMSRPRefusalsSpike", "ClearhubInterceptCopiesDropped"} {
		if !seen[a] {
			t.Errorf("%s: alert %s missing", rulesFile, a)
		}
	}
}

func TestDashboardNamesOnlyRegisteredMetrics(t *testing.T) {
	have := nodeMetricNames(t)
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		SchemaVersion int `json:"schemaVersion"`
		UID           string
		Templating    struct {
			List []struct {
				Name, Type string
				Query      any
			}
		}
		Panels []json.RawMessage
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.SchemaVersion < 39 || d.UID == "" {
		t.Errorf("schemaVersion %d (want a current Grafana's, >= 39), uid %q", d.SchemaVersion, d.UID)
	}
	var hasDS bool
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDS = true
		}
		if q, ok := v.Query.(map[string]any); ok {
			if s, ok := q["query"].(string); ok {
				checkExpr(t, have, "variable "+v.Name, templateExpr(s))
			}
		}
	}
	if !hasDS {
		t.Error("no Prometheus datasource variable named datasource")
	}
	ids := map[float64]bool{}
	var exprs int
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if id, ok := x["id"].(float64); ok && x["gridPos"] != nil {
				if ids[id] {
					t.Errorf("%s: panel id %v used twice", path, id)
				}
				ids[id] = true
				if x["type"] != "row" {
					if ds, _ := x["datasource"].(map[string]any); ds["uid"] != "${datasource}" {
						t.Errorf("%s (%v): datasource %v, want the ${datasource} variable", path, x["title"], x["datasource"])
					}
					if ts, _ := x["targets"].([]any); len(ts) == 0 {
						t.Errorf("%s (%v): no targets", path, x["title"])
					}
				}
			}
			if e, ok := x["expr"].(string); ok {
				exprs++
				checkExpr(t, have, fmt.Sprintf("%s", path), e)
			}
			for k, c := range x {
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), c)
			}
		}
	}
	var panels []any
	if err := json.Unmarshal(b, &struct{ Panels *[]any }{&panels}); err != nil {
		t.Fatal(err)
	}
	walk("panels", panels)
	if exprs < 30 {
		t.Errorf("only %d expressions in the dashboard", exprs)
	}
}

// TestCheckerRefusesUnknownMetric: the check above would catch a rule
// naming a metric no node registers (and does not flag label names,
// functions, keywords, strings or Grafana variables).
func TestCheckerRefusesUnknownMetric(t *testing.T) {
	have := map[string]bool{"clearhub_sip_refusals_total": true, "clearhub_raft_has_leader": true}
	cases := []struct {
		expr    string
		missing []string
	}{
		{`sum by (reason) (rate(clearhub_sip_refusals_total{reason!~"a|b"}[5m])) > 0`, nil},
		{`max by (instance) (clearhub_raft_has_leader) == 0 and on(instance) clearhub_raft_is_leader`, []string{"clearhub_raft_is_leader"}},
		{`rate(clearhub_sip_refusals_totl[$__rate_interval]) offset 5m`, []string{"clearhub_sip_refusals_totl"}},
		{`histogram_quantile(0.99, sum by (le) (rate(clearhub_nope_seconds_bucket{instance=~"$instance"}[5m])))`, []string{"clearhub_nope_seconds_bucket"}},
	}
	for _, tc := range cases {
		names, err := metricNames(tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		var missing []string
		for _, n := range names {
			if !have[n] {
				missing = append(missing, n)
			}
		}
		if !slices.Equal(missing, tc.missing) {
			t.Errorf("%s: missing %v, want %v", tc.expr, missing, tc.missing)
		}
	}
}

func TestMetricNames(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`up{job="clearhub"} == 0`, []string{"up"}},
		{`sum(increase(a_total{event="leader"}[15m])) > 2 or sum(b_total) > 0`, []string{"a_total", "b_total"}},
		{`time() - c_seconds > 300 and d > 0`, []string{"c_seconds", "d"}},
		{`sum without (x, y) (e) / ignoring (z) group_left (w) f`, []string{"e", "f"}},
		{`g{a="}{[", b='x\'y'} # comment h`, []string{"g"}},
		{`clearhub_ledger_wal_bytes > 128 * 1024 * 1e3`, []string{"clearhub_ledger_wal_bytes"}},
		{`rate(i[5m:1m]) @ start()`, []string{"i"}},
		{`${datasource} $instance j`, []string{"j"}},
		{`k - k`, []string{"k"}},
	}
	for _, tc := range cases {
		got, err := metricNames(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`a{b="c"`, `rate(a[5m)`, `"open`} {
		if _, err := metricNames(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func FuzzMetricNames(f *testing.F) {
	for _, s := range []string{`sum by (le) (rate(a_bucket{x="y"}[5m]))`, `a{`, `"\`, `$`, `${`, "a # b\nc", `1e+3`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := metricNames(s)
		if err != nil {
			return
		}
		for _, n := range names {
			if n == "" || !isIdentStart(rune(n[0])) {
				t.Fatalf("%q: bad name %q", s, n)
			}
		}
	})
}

type rule struct {
	Alert       string
	Expr        string
	For         string
	Labels      map[string]string
	Annotations map[string]string
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string
			Rules []rule
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// checkExpr fails t for each metric expr names that is not in have.
func checkExpr(t *testing.T, have map[string]bool, where, expr string) {
	t.Helper()
	names, err := metricNames(expr)
	if err != nil {
		t.Errorf("%s: %v in %q", where, err, expr)
		return
	}
	if len(names) == 0 {
		t.Errorf("%s: names no metric: %q", where, expr)
	}
	for _, n := range names {
		if !have[n] {
			t.Errorf("%s: metric %s is not registered by a node (expr %q)", where, n, expr)
		}
	}
}

// templateExpr turns a Grafana variable query into PromQL:
// label_values(METRIC, LABEL) names METRIC only.
var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)

func templateExpr(q string) string {
	if m := labelValues.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	if strings.HasPrefix(strings.TrimSpace(q), "query_result(") {
		return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(q), "query_result("), ")")
	}
	return q
}

// keywords are PromQL words that are never metric names (functions are
// recognised otherwise: an identifier before "(").
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"start": true, "end": true,
	// aggregation operators, which may take "by (...)" before their "(".
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
	"count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
}

// grouping words take a parenthesised list of label names.
var grouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

func isIdentStart(r rune) bool {
	return r == '_' || r == ':' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
}

func isIdent(r rune) bool { return isIdentStart(r) || (r >= '0' && r <= '9') }

// metricNames lists, sorted and unique, the metric names a PromQL
// expression selects. It is a lexer, not a full parser: it skips strings,
// label matchers, ranges, comments, numbers and durations, Grafana
// variables, function and aggregation names, keywords and the label lists
// of by/without/on/ignoring/group_*; every other identifier is a metric.
func metricNames(expr string) ([]string, error) {
	rs := []rune(expr)
	set := map[string]bool{}
	skipString := func(i int) (int, error) { // rs[i] is the quote
		q := rs[i]
		for j := i + 1; j < len(rs); j++ {
			switch {
			case rs[j] == '\\' && q != '`':
				j++
			case rs[j] == q:
				return j + 1, nil
			}
		}
		return 0, errors.New("unterminated string")
	}
	skipTo := func(i int, close rune) (int, error) { // rs[i] is the opener
		for j := i + 1; j < len(rs); {
			switch c := rs[j]; {
			case c == '"' || c == '\'' || c == '`':
				k, err := skipString(j)
				if err != nil {
					return 0, err
				}
				j = k
			case c == close:
				return j + 1, nil
			case c == '{' || c == '[' || c == '(' || c == '}' || c == ']' || c == ')':
				return 0, fmt.Errorf("unexpected %q at %d", c, j)
			default:
				j++
			}
		}
		return 0, fmt.Errorf("unterminated %q", close)
	}
	for i := 0; i < len(rs); {
		c := rs[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{':
			j, err := skipTo(i, '}')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '[':
			j, err := skipTo(i, ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '#':
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
		case c == '$':
			i++
			if i < len(rs) && rs[i] == '{' {
				j, err := skipTo(i, '}')
				if err != nil {
					return nil, err
				}
				i = j
				break
			}
			for i < len(rs) && isIdent(rs[i]) {
				i++
			}
		case c >= '0' && c <= '9' || (c == '.' && i+1 < len(rs) && rs[i+1] >= '0' && rs[i+1] <= '9'):
			for i < len(rs) && (isIdent(rs[i]) || rs[i] == '.' ||
				((rs[i] == '+' || rs[i] == '-') && (rs[i-1] == 'e' || rs[i-1] == 'E'))) {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(rs) && isIdent(rs[j]) {
				j++
			}
			word := string(rs[i:j])
			k := j
			for k < len(rs) && (rs[k] == ' ' || rs[k] == '\t' || rs[k] == '\n' || rs[k] == '\r') {
				k++
			}
			paren := k < len(rs) && rs[k] == '('
			switch {
			case grouping[strings.ToLower(word)] && paren:
				e, err := skipTo(k, ')')
				if err != nil {
					return nil, err
				}
				j = e
			case paren, keywords[strings.ToLower(word)]:
				// a function or aggregation, or a keyword
			default:
				set[word] = true
			}
			i = j
		default:
			i++
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// recorder is a Registerer that remembers every metric name its collectors
// describe, with the series names a histogram or summary expands to.
type recorder struct {
	prometheus.Registerer
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]*)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			continue
		}
		r.names[m[1]] = true
		switch c.(type) {
		case *prometheus.HistogramVec, prometheus.Histogram:
			r.names[m[1]+"_bucket"], r.names[m[1]+"_sum"], r.names[m[1]+"_count"] = true, true, true
		case *prometheus.SummaryVec, prometheus.Summary:
			r.names[m[1]+"_sum"], r.names[m[1]+"_count"] = true, true
		}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// nodeMetricNames builds a node's metrics in-process, as cmd/hubd/node.go
// wires them, and returns every series name it can serve.
func nodeMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	reg := metrics.NewRegistry()
	rec := &recorder{Registerer: reg, names: map[string]bool{}}

	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, _, _, err := ca.IssueKeyPair(pki.RoleNode, "n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	// Ledger.
	lm := metrics.NewLedgerMetrics()
	led, err := ledger.Open(ctx, ledger.Options{Path: filepath.Join(dir, "ledger.db"), NodeID: "n1", Signer: signer, Metrics: lm, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = led.Close() })

	// Raft, single node on an in-memory transport.
	rcfg := raft.DefaultConfig()
	rcfg.ID, rcfg.Dir, rcfg.Bootstrap, rcfg.Logger = "n1", filepath.Join(dir, "raft"), true, quiet
	rcfg.HeartbeatTimeout, rcfg.ElectionTimeout, rcfg.LeaderLeaseTimeout = 150*time.Millisecond, 150*time.Millisecond, 100*time.Millisecond
	_, rcfg.Transport = hraft.NewInmemTransport("127.0.0.1:7000")
	node, err := raft.Open(ctx, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })

	// Admin API.
	adm, err := admin.NewServer(admin.Options{NodeID: "n1", CA: ca, NodeClientTLS: admin.NodeClientTLS(ca, nodeCert),
		Store: node, Auditor: led, Ledger: led, Logger: quiet, Registerer: rec, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adm.Close() })

	// Metrics and health (node.go step 6).
	for _, err := range []error{
		metrics.RegisterLedgerScrub(rec, led),
		metrics.RegisterRaft(rec, node),
		lm.Register(rec, led),
		metrics.NewRaftMetrics().Register(rec, node),
		rec.Register(metrics.NewCertReloads()),
		metrics.RegisterCertExpiry(rec, metrics.CertSources{
			Local: func() []metrics.LocalCert { return []metrics.LocalCert{{Kind: "cluster_ca", Cert: ca.Cert}} },
			State: node.State,
		}),
		metrics.RegisterBuildInfo(rec, "test"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}

	// SIP plane and store and forward.
	h, err := hub.New(hub.Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", RouteSecret: []byte("s"), Logger: quiet, Registerer: rec}, node, led)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	if _, err := queue.New(queue.Config{NodeID: "n1", Logger: quiet, Registerer: rec}, node, adm, node, noSender{}, led); err != nil {
		t.Fatal(err)
	}
	// Hosted services: rooms and lists (cmd/hubd/rooms.go, lists.go).
	if _, err := chatroom.New(chatroom.Config{Domain: "rooms.test", NodeID: "n1", Logger: quiet, Registerer: rec,
		Store: roomStore{node}, Sender: noRoomSender{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := lists.New(lists.Config{Domain: "lists.test", Log: quiet, Registerer: rec, Sender: noListSender{},
		State: node.State, Contact: func(user, _ string) sip.Uri { return sip.Uri{User: user, Host: "127.0.0.1"} }}); err != nil {
		t.Fatal(err)
	}

	// Lawful interception and SIP capture (cmd/hubd/intercept.go: both
	// flavours registered on every node), and the MSRP relay
	// (cmd/hubd/msrp.go).
	for _, m := range []*intercept.Metrics{intercept.NewInterceptMetrics(), intercept.NewCaptureMetrics()} {
		if err := m.Register(rec); err != nil {
			t.Fatal(err)
		}
	}
	relay, err := msrp.New(msrp.Config{Host: "127.0.0.1", TCPAddr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	if err := relay.RegisterMetrics(rec); err != nil {
		t.Fatal(err)
	}

	// Collectors that describe nothing show up in a scrape.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		n := mf.GetName()
		rec.names[n] = true
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			rec.names[n+"_bucket"], rec.names[n+"_sum"], rec.names[n+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			rec.names[n+"_sum"], rec.names[n+"_count"] = true, true
		}
	}
	for _, n := range synthetic {
		rec.names[n] = true
	}
	// Sanity: the registry really is a node's.
	for _, n := range []string{"clearhub_sip_refusals_total", "clearhub_raft_has_leader", "clearhub_ledger_wal_fsync_duration_seconds_bucket",
		"clearhub_admin_requests_total", "clearhub_queue_oldest_age_seconds", "clearhub_cert_expiry_seconds", "go_goroutines", "process_resident_memory_bytes",
		"clearhub_msrp_sessions", "clearhub_msrp_refusals_total", "clearhub_intercept_copies_dropped_total", "clearhub_capture_frames_total",
		"clearhub_rooms_messages_posted_total", "clearhub_rooms_session_connections_refused_total", "clearhub_rooms_session_accept_errors_total"} {
		if !rec.names[n] {
			t.Fatalf("the in-process node does not register %s: the wiring here no longer matches cmd/hubd", n)
		}
	}
	return rec.names
}

// noSender is store and forward's Sender; nothing is sent in this test.
type noSender struct{}

// roomStore is the raft node as the rooms see it.
type roomStore struct{ *raft.Node }

func (s roomStore) Propose(ctx context.Context, cmd *hubv1.Command) (uint64, error) {
	return s.Apply(ctx, cmd)
}

type noRoomSender struct{}

func (noRoomSender) Send(context.Context, *sip.Request, string, chatroom.SendOptions) (*sip.Response, error) {
	return nil, errors.New("not sending")
}

type noListSender struct{}

func (noListSender) Send(context.Context, *sip.Request, string, string, string, bool) (*sip.Response, error) {
	return nil, errors.New("not sending")
}

func (noSender) Send(context.Context, *sip.Request, string, string, string) (*sip.Response, error) {
	return nil, errors.New("not sending")
}
