package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"clearhub/ops/netcheck"
	"clearhub/proto/hubv1"
)

// maxBody bounds a request body (a network with a few CA certificates).
const maxBody = 1 << 20

// callTimeout bounds one admin call made for a page.
const callTimeout = 15 * time.Second

var pjson = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := pjson.Marshal(m)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, fmt.Errorf("encode answer: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// writeRPCErr answers with the admin API's own verdict: its status code
// mapped to HTTP, its message unchanged (it names the missing role).
func writeRPCErr(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	code := http.StatusBadGateway
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange:
		code = http.StatusBadRequest
	case codes.Unauthenticated:
		code = http.StatusUnauthorized
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		code = http.StatusConflict
	case codes.FailedPrecondition:
		code = http.StatusPreconditionFailed
	case codes.Unavailable, codes.DeadlineExceeded:
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]string{"error": st.Message(), "code": st.Code().String()})
}

// call runs f against the session's admin connection and writes its answer.
func (s *Server) call(w http.ResponseWriter, r *http.Request, ss *session, f func(ctx context.Context, c *clients) (proto.Message, error)) {
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	c, err := s.clients(ctx, ss)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	m, err := f(ctx, c)
	if err != nil {
		writeRPCErr(w, err)
		return
	}
	writeProto(w, m)
}

type clients struct {
	admin hubv1.AdminServiceClient
	rooms hubv1.RoomServiceClient
	lists hubv1.ListServiceClient
	queue hubv1.QueueServiceClient
}

func (s *Server) clients(ctx context.Context, ss *session) (*clients, error) {
	cc, err := s.adminConn(ctx, ss)
	if err != nil {
		return nil, err
	}
	return &clients{admin: hubv1.NewAdminServiceClient(cc), rooms: hubv1.NewRoomServiceClient(cc),
		lists: hubv1.NewListServiceClient(cc), queue: hubv1.NewQueueServiceClient(cc)}, nil
}

func decodeBody(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("content type %q: want application/json", ct)
	}
	d := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func (s *Server) apiSession(w http.ResponseWriter, r *http.Request, ss *session) {
	writeJSON(w, http.StatusOK, map[string]any{
		"name": ss.id.Name, "role": ss.id.Role, "serial": ss.id.Serial, "can_change": ss.id.CanChange(),
		"csrf": ss.csrf, "node": s.opts.NodeID, "expires": ss.expires.UTC().Format(time.RFC3339),
		"services": serviceNames(), "route_services": netcheck.RouteServices(),
	})
}

func (s *Server) apiCluster(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.admin.ClusterStatus(ctx, &hubv1.ClusterStatusRequest{})
	})
}

func (s *Server) apiNetworks(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.admin.ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	})
}

// networkForm is a network as the page's form sends it; a nil field is
// left alone by an update.
type networkForm struct {
	ID          string    `json:"id"`
	DisplayName *string   `json:"display_name"`
	Domains     *[]string `json:"domains"`
	Edges       *[]string `json:"edges"`
	Services    *[]string `json:"services"`
	CIDRs       *[]string `json:"cidrs"`
	TLSCIDRs    *[]string `json:"tls_cidrs"`
	CAPEM       *[]string `json:"ca_pem"`
	Pins        *[]string `json:"pins"`
	// IfUpdated makes an update conditional on the version the page read.
	// A JSON string: nanoseconds do not fit a JavaScript number.
	IfUpdated int64 `json:"if_updated_unix_nano,string"`
}

// toNetwork builds the network and the update mask of the fields given.
func (f networkForm) toNetwork() (*hubv1.Network, []string, error) {
	n := &hubv1.Network{Id: f.ID}
	var mask []string
	if f.DisplayName != nil {
		n.DisplayName = *f.DisplayName
		mask = append(mask, "display_name")
	}
	if f.Domains != nil {
		n.Domains = clean(*f.Domains)
		mask = append(mask, "domains")
	}
	if f.Edges != nil {
		n.Edges = clean(*f.Edges)
		mask = append(mask, "edges")
	}
	if f.Services != nil {
		for _, name := range clean(*f.Services) {
			sv, ok := parseService(name)
			if !ok {
				return nil, nil, fmt.Errorf("unknown service %q (valid: %s)", name, strings.Join(serviceNames(), ", "))
			}
			n.Services = append(n.Services, sv)
		}
		mask = append(mask, "services")
	}
	if f.CIDRs != nil || f.TLSCIDRs != nil || f.CAPEM != nil || f.Pins != nil {
		id := &hubv1.Identity{}
		if f.CIDRs != nil {
			id.Cidrs = clean(*f.CIDRs)
		}
		if f.TLSCIDRs != nil {
			id.TlsCidrs = clean(*f.TLSCIDRs)
		}
		if f.CAPEM != nil {
			id.CaPem = clean(*f.CAPEM)
		}
		if f.Pins != nil {
			id.Pins = clean(*f.Pins)
		}
		n.Identity = id
		mask = append(mask, "identity")
	}
	return n, mask, nil
}

func clean(in []string) []string {
	var out []string
	for _, v := range in {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (s *Server) apiAddNetwork(w http.ResponseWriter, r *http.Request, ss *session) {
	var f networkForm
	if err := decodeBody(r, &f); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	n, _, err := f.toNetwork()
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.admin.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: n})
	})
}

func (s *Server) apiUpdateNetwork(w http.ResponseWriter, r *http.Request, ss *session) {
	var f networkForm
	if err := decodeBody(r, &f); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	f.ID = r.PathValue("id")
	n, mask, err := f.toNetwork()
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if len(mask) == 0 {
		// An empty mask would replace every field: never from a form.
		writeErr(w, http.StatusBadRequest, errors.New("nothing to change"))
		return
	}
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.admin.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: n, UpdateMask: mask, IfUpdatedUnixNano: f.IfUpdated})
	})
}

func (s *Server) apiSuspend(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.admin.SuspendNetwork(ctx, &hubv1.NetworkRef{Id: r.PathValue("id")})
	})
}

func (s *Server) apiResume(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.admin.ResumeNetwork(ctx, &hubv1.NetworkRef{Id: r.PathValue("id")})
	})
}

// serviceNames are the services as the page and hubctl name them.
func serviceNames() []string {
	var out []string
	for v := int32(1); ; v++ {
		n, ok := hubv1.Service_name[v]
		if !ok {
			return out
		}
		out = append(out, strings.ToLower(strings.TrimPrefix(n, "SERVICE_")))
	}
}

func parseService(name string) (hubv1.Service, bool) {
	v, ok := hubv1.Service_value["SERVICE_"+strings.ToUpper(name)]
	if !ok || v == 0 {
		return 0, false
	}
	return hubv1.Service(v), true
}

func svcName(sv hubv1.Service) string {
	return strings.ToLower(strings.TrimPrefix(sv.String(), "SERVICE_"))
}

// matrixCell is one (source, destination) pair's allowed services.
type matrix struct {
	Networks []string `json:"networks"`
	Services []string `json:"services"`
	// Allowed[dst][src] lists the services src may use toward dst.
	Allowed map[string]map[string][]string `json:"allowed"`
	// AllMembers[dst] lists what every member may use toward dst.
	AllMembers map[string][]string `json:"all_members"`
}

// apiPolicy returns the peering policy as a matrix (source networks ×
// services, per destination).
func (s *Server) apiPolicy(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	c, err := s.clients(ctx, ss)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	nets, err := c.admin.ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	if err != nil {
		writeRPCErr(w, err)
		return
	}
	pols, err := c.admin.ListPolicies(ctx, &hubv1.ListPoliciesRequest{})
	if err != nil {
		writeRPCErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, buildMatrix(nets.GetNetworks(), pols.GetPolicies()))
}

func buildMatrix(nets []*hubv1.Network, pols []*hubv1.Policy) matrix {
	m := matrix{Services: serviceNames(), Allowed: map[string]map[string][]string{}, AllMembers: map[string][]string{}}
	for _, n := range nets {
		m.Networks = append(m.Networks, n.GetId())
	}
	sort.Strings(m.Networks)
	all := func(svcs []hubv1.Service) []string {
		if len(svcs) == 0 {
			return serviceNames() // an empty list means every service
		}
		var out []string
		for _, sv := range svcs {
			out = append(out, svcName(sv))
		}
		return out
	}
	for _, p := range pols {
		dst := p.GetDestination()
		if p.GetAllowAll() {
			m.AllMembers[dst] = all(p.GetAllServices())
		}
		for _, rule := range p.GetRules() {
			if m.Allowed[dst] == nil {
				m.Allowed[dst] = map[string][]string{}
			}
			m.Allowed[dst][rule.GetSource()] = all(rule.GetServices())
		}
	}
	return m
}

type policyForm struct {
	Destination string `json:"destination"`
	Source      string `json:"source"`
	Service     string `json:"service"`
	Allow       bool   `json:"allow"`
}

func (s *Server) apiSetPolicy(w http.ResponseWriter, r *http.Request, ss *session) {
	var f policyForm
	if err := decodeBody(r, &f); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	sv, ok := parseService(f.Service)
	if !ok {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("unknown service %q", f.Service))
		return
	}
	req := &hubv1.PolicyChangeRequest{Destination: f.Destination, Source: f.Source, Services: []hubv1.Service{sv}}
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		if f.Allow {
			return c.admin.AllowPolicy(ctx, req)
		}
		return c.admin.DenyPolicy(ctx, req)
	})
}

func (s *Server) apiRooms(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.rooms.ListRooms(ctx, &hubv1.ListRoomsRequest{})
	})
}

func (s *Server) apiRoom(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.rooms.GetRoom(ctx, &hubv1.RoomRef{Room: r.PathValue("id")})
	})
}

func (s *Server) apiLists(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.lists.ListLists(ctx, &hubv1.ListListsRequest{})
	})
}

func (s *Server) apiList(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.lists.GetList(ctx, &hubv1.GetListRequest{Uri: r.PathValue("id")})
	})
}

func (s *Server) apiQueues(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.queue.ListQueues(ctx, &hubv1.ListQueuesRequest{})
	})
}

func (s *Server) apiQueue(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.queue.ShowQueue(ctx, &hubv1.ShowQueueRequest{Network: r.PathValue("network")})
	})
}

func (s *Server) apiRetryQueue(w http.ResponseWriter, r *http.Request, ss *session) {
	s.call(w, r, ss, func(ctx context.Context, c *clients) (proto.Message, error) {
		return c.queue.RetryQueue(ctx, &hubv1.RetryQueueRequest{Network: r.PathValue("network")})
	})
}

func (s *Server) apiTraffic(w http.ResponseWriter, r *http.Request, ss *session) {
	writeJSON(w, http.StatusOK, s.traffic(nil))
}

// auditQuery is an audit search: the admin API filters by time, network,
// user and kind; Call-ID and room are matched here on each entry.
type auditQuery struct {
	req    *hubv1.ExportAuditRequest
	callID string
	room   string
	limit  int
}

// maxAuditRows bounds a search's answer (export has no bound).
const maxAuditRows = 1000

func parseAuditQuery(q map[string][]string) (auditQuery, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	aq := auditQuery{req: &hubv1.ExportAuditRequest{Network: get("network"), User: get("user"), Kind: get("kind"),
		Cluster: get("cluster") == "1"}, callID: get("call_id"), room: strings.ToLower(get("room")), limit: 200}
	for _, t := range []struct {
		key string
		dst *int64
	}{{"since", &aq.req.SinceUnixNano}, {"until", &aq.req.UntilUnixNano}} {
		v := get(t.key)
		if v == "" {
			continue
		}
		tm, err := parseTime(v)
		if err != nil {
			return aq, fmt.Errorf("%s: %w", t.key, err)
		}
		*t.dst = tm.UnixNano()
	}
	if v := get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditRows {
			return aq, fmt.Errorf("limit %q: want 1..%d", v, maxAuditRows)
		}
		aq.limit = n
	}
	return aq, nil
}

// parseTime takes RFC 3339 or what an <input type=datetime-local> sends
// (taken as UTC).
func parseTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2006-01-02T15:04:05Z)", v)
}

// isEntry reports whether an export line is a ledger entry (not a
// checkpoint or an anchor).
func isEntry(line []byte) bool { return bytes.HasPrefix(line, []byte(`{"type":"entry",`)) }

// matches applies the filters the admin API does not have.
func (aq auditQuery) matches(entry []byte) bool {
	if aq.callID == "" && aq.room == "" {
		return true
	}
	var e struct {
		CallID string `json:"call_id"`
		From   string `json:"from"`
		To     string `json:"to"`
		RURI   string `json:"ruri"`
	}
	if json.Unmarshal(entry, &e) != nil {
		return false
	}
	if aq.callID != "" && e.CallID != aq.callID {
		return false
	}
	if aq.room != "" {
		hit := false
		for _, f := range []string{e.RURI, e.To, e.From} {
			f = strings.ToLower(f)
			// "team" matches sip:team@rooms...; a full URI matches itself.
			if strings.Contains(f, "sip:"+aq.room+"@") || strings.Contains(f, aq.room) && strings.Contains(aq.room, "@") {
				hit = true
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

// apiAudit answers a search with the newest matching entries (at most
// limit), oldest first.
func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request, ss *session) {
	aq, err := parseAuditQuery(r.URL.Query())
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	c, err := s.clients(ctx, ss)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	stream, err := c.admin.ExportAudit(ctx, aq.req)
	if err != nil {
		writeRPCErr(w, err)
		return
	}
	var rows []json.RawMessage
	scanned := 0
	for {
		rec, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeRPCErr(w, err)
			return
		}
		// Checkpoint and anchor lines come with an export (verification
		// needs them); the search shows entries only.
		if !isEntry(rec.GetJson()) {
			continue
		}
		scanned++
		if !aq.matches(rec.GetJson()) || !json.Valid(rec.GetJson()) {
			continue
		}
		rows = append(rows, json.RawMessage(slices.Clone(rec.GetJson())))
		if len(rows) > aq.limit {
			rows = rows[1:]
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": rows, "scanned": scanned})
}

// apiAuditExport streams the matching entries as JSON lines, the format
// of `hubctl audit export` (hubctl audit verify reads it), for download.
func (s *Server) apiAuditExport(w http.ResponseWriter, r *http.Request, ss *session) {
	aq, err := parseAuditQuery(r.URL.Query())
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	ctx := r.Context()
	c, err := s.clients(ctx, ss)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	stream, err := c.admin.ExportAudit(ctx, aq.req)
	if err != nil {
		writeRPCErr(w, err)
		return
	}
	// The first record decides between an error answer and the download.
	first, err := stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		writeRPCErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="clearhub-audit.jsonl"`)
	bw := bufio.NewWriter(w)
	fl, _ := w.(http.Flusher)
	n := 0
	for rec := first; rec != nil; {
		if !isEntry(rec.GetJson()) || aq.matches(rec.GetJson()) {
			bw.Write(rec.GetJson())
			bw.WriteByte('\n')
			n++
			if n%500 == 0 && fl != nil {
				bw.Flush()
				fl.Flush() // progress: the page counts lines as they come
			}
		}
		rec, err = stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// The status line is gone: a truncated file is what the
				// reader sees (and hubctl audit verify refuses).
				s.log.Warn("console audit export cut short", "actor", ss.id.Name, "after", n, "err", err)
			}
			break
		}
	}
	bw.Flush()
}

func (s *Server) apiAuditVerify(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	c, err := s.clients(ctx, ss)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	res, err := c.admin.ScrubAudit(ctx, &hubv1.ScrubAuditRequest{})
	if err != nil {
		writeRPCErr(w, err)
		return
	}
	cp, err := c.admin.GetCheckpoint(ctx, &hubv1.GetCheckpointRequest{})
	out := map[string]any{"scrub": json.RawMessage(mustPJSON(res))}
	if err == nil {
		out["checkpoint"] = json.RawMessage(mustPJSON(cp))
	}
	writeJSON(w, http.StatusOK, out)
}

func mustPJSON(m proto.Message) []byte {
	b, err := pjson.Marshal(m)
	if err != nil {
		return []byte("null")
	}
	return b
}

// events is the live stream (Server-Sent Events, EventSource in the
// page): traffic every tick, cluster health every few ticks.
func (s *Server) events(w http.ResponseWriter, r *http.Request, ss *session) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeErr(w, http.StatusInternalServerError, errors.New("streaming unsupported"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	t := time.NewTicker(s.opts.Tick)
	defer t.Stop()
	var prev *trafficSnapshot
	for i := 0; ; i++ {
		snap := s.traffic(prev)
		prev = snap
		if !send("traffic", snap) {
			return
		}
		if i%3 == 0 {
			if c, err := s.clients(r.Context(), ss); err == nil {
				ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
				st, err := c.admin.ClusterStatus(ctx, &hubv1.ClusterStatusRequest{})
				cancel()
				if err == nil {
					if !send("cluster", json.RawMessage(mustPJSON(st))) {
						return
					}
				}
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-t.C:
		}
		if !s.now().Before(ss.expires) || s.stillValid(ss.id) != nil {
			send("ended", map[string]string{"reason": "session ended"})
			return
		}
	}
}
