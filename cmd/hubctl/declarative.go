package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// The declarative document of hubctl export and hubctl apply -f: every
// member network and the whole peering policy, in the shapes -o yaml prints
// (views.go, OUTPUT.md) minus the times the cluster sets, and the resource
// lists and rooms (declarative_lists.go, declarative_rooms.go). The header
// names the format; new top-level keys are optional, so files kept in git
// before them still apply.
const (
	docAPIVersion = "clearhub/v1"
	docKind       = "Membership"
)

// maxDocumentBytes bounds what apply reads (a file or stdin): far more than
// any membership needs, small enough that a wrong file cannot eat memory.
const maxDocumentBytes = 16 << 20

// stateDoc is the document as export writes it.
type stateDoc struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Networks   []docNetwork `json:"networks"`
	Policies   []policyView `json:"policies"`
	Lists      []docList    `json:"lists"` // declarative_lists.go
	Rooms      []docRoom    `json:"rooms"` // declarative_rooms.go
}

// docNetwork is networkView without created/updated: those change on every
// write and would make every apply a diff in git. apply accepts and ignores
// them, so a network pasted from "network get -o yaml" still reads.
type docNetwork struct {
	ID          string       `json:"id"`
	DisplayName string       `json:"display_name"`
	Status      string       `json:"status"`
	Domains     []string     `json:"domains"`
	Edges       []string     `json:"edges"`
	Services    []string     `json:"services"`
	Identity    identityView `json:"identity"`
	KeepBodies  bool         `json:"keep_bodies"`
	// RateLimits are the network's own token buckets (rate_limits of
	// `network get -o yaml`).
	RateLimits []rateLimitView `json:"rate_limits"`
}

// exportDoc builds the document from what the cluster lists. Policies that
// grant nothing are left out (the same as no policy).
func exportDoc(nets []*hubv1.Network, pols []*hubv1.Policy) stateDoc {
	d := stateDoc{APIVersion: docAPIVersion, Kind: docKind, Networks: []docNetwork{}, Policies: []policyView{}, Lists: []docList{}, Rooms: []docRoom{}}
	for _, n := range nets {
		v := viewNetwork(n)
		d.Networks = append(d.Networks, docNetwork{
			ID: v.ID, DisplayName: v.DisplayName, Status: v.Status, Domains: v.Domains, Edges: v.Edges,
			Services: v.Services, Identity: v.Identity, KeepBodies: v.KeepBodies, RateLimits: v.RateLimits,
		})
	}
	for _, p := range pols {
		if !p.GetAllowAll() && len(p.GetRules()) == 0 {
			continue
		}
		d.Policies = append(d.Policies, viewPolicy(p))
	}
	return d
}

// desiredState is a parsed and validated document.
type desiredState struct {
	// networks in file order, normalized as the FSM stores them
	// (raft.NormalizeNetwork), CA PEM canonical (canonPEM).
	networks []*hubv1.Network
	index    map[string]int // network id -> file index
	grants   grants
	// shares: the share_views of each rule that has the key (true or
	// false). A rule without it leaves the cluster's shared view as it is,
	// unless --prune: files written before export carried the grant must
	// not withdraw it silently.
	shares map[grantKey]bool
	// lists in file order, URIs canonical; listsGiven: the document has a
	// lists: key (without it, lists are left alone).
	lists      []*hubv1.ResourceList
	listsGiven bool
	listPaths  map[string]string // list uri -> its path
	// rooms likewise (roomsGiven: the document has a rooms: key).
	rooms      []*wantRoom
	roomsGiven bool
	roomPaths  map[string]string // room uri -> its path
}

// grantKey is one entry of a destination's policy: a source network, or
// "*" for the all-members switch.
type grantKey struct{ dst, src string }

// grants maps each entry to its services (sorted, never empty).
type grants map[grantKey][]hubv1.Service

const allMembers = "*"

func grantsOf(pols []*hubv1.Policy) grants {
	g := grants{}
	for _, p := range pols {
		if p.GetAllowAll() && len(p.GetAllServices()) > 0 {
			g[grantKey{p.GetDestination(), allMembers}] = sortedServices(p.GetAllServices())
		}
		for _, r := range p.GetRules() {
			if len(r.GetServices()) > 0 {
				g[grantKey{p.GetDestination(), r.GetSource()}] = sortedServices(r.GetServices())
			}
		}
	}
	return g
}

// ruleShares is a rule's shared presence view as the hub applies it
// (raft.State.ShareViews): only with presence granted.
func ruleShares(r *hubv1.PolicyRule) bool {
	return r.GetShareViews() && slices.Contains(r.GetServices(), hubv1.Service_SERVICE_PRESENCE)
}

// sharesOf is the set of named rules granting a shared view. The
// all-members switch never does (sharing is granted to one peer).
func sharesOf(pols []*hubv1.Policy) map[grantKey]bool {
	out := map[grantKey]bool{}
	for _, p := range pols {
		for _, r := range p.GetRules() {
			if ruleShares(r) {
				out[grantKey{p.GetDestination(), r.GetSource()}] = true
			}
		}
	}
	return out
}

func sortedServices(s []hubv1.Service) []hubv1.Service {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// docError is one problem of the file, at a YAML path.
type docError struct {
	line, col int
	path      string
	msg       string
}

func (e docError) String() string {
	loc := ""
	if e.line > 0 {
		loc = fmt.Sprintf("%d:%d: ", e.line, e.col)
	}
	if e.path == "" {
		return loc + e.msg
	}
	return loc + e.path + ": " + e.msg
}

// documentError lists every problem found; nothing was changed.
type documentError struct {
	name string
	errs []docError
}

// maxReportedErrors keeps a badly wrong file from flooding the terminal.
const maxReportedErrors = 20

func (e *documentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problem(s), nothing changed:", e.name, len(e.errs))
	for i, d := range e.errs {
		if i == maxReportedErrors {
			fmt.Fprintf(&b, "\n  ... and %d more", len(e.errs)-i)
			break
		}
		b.WriteString("\n  " + e.name + ":" + d.String())
	}
	return b.String()
}

// docParser walks the YAML node tree itself rather than unmarshalling into
// structs, so that every error names the YAML path and line, unknown keys
// are refused, and nothing is guessed.
type docParser struct {
	errs []docError
	pos  map[string][2]int // path -> line, column
}

func (p *docParser) fail(n *yaml.Node, path, format string, args ...any) {
	d := docError{path: path, msg: fmt.Sprintf(format, args...)}
	if n != nil {
		d.line, d.col = n.Line, n.Column
	} else if lc, ok := p.pos[path]; ok {
		d.line, d.col = lc[0], lc[1]
	}
	p.errs = append(p.errs, d)
}

func (p *docParser) mark(n *yaml.Node, path string) {
	p.pos[path] = [2]int{n.Line, n.Column}
}

// parseDocument reads one YAML (or JSON) document. name labels errors.
// Every problem is collected; a *documentError comes back if there is any.
func parseDocument(name string, data []byte) (*desiredState, error) {
	p := &docParser{pos: map[string][2]int{}}
	want := p.parse(data)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b docError) int { return a.line - b.line })
		return nil, &documentError{name: name, errs: p.errs}
	}
	return want, nil
}

func (p *docParser) parse(data []byte) *desiredState {
	if len(data) > maxDocumentBytes {
		p.fail(nil, "", "larger than %d bytes", maxDocumentBytes)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.fail(nil, "", "empty document (want apiVersion: %s, kind: %s, networks, policies)", docAPIVersion, docKind)
		} else {
			p.fail(nil, "", "not YAML: %v", err)
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		p.fail(&extra, "", "more than one YAML document (the whole membership is one document)")
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	fields := p.mapping(root, "", []string{"apiVersion", "kind", "networks", "policies", "lists", "rooms"})
	if fields == nil {
		return nil
	}
	p.header(root, fields, "apiVersion", docAPIVersion, "is not a version this hubctl reads")
	p.header(root, fields, "kind", docKind, "is not a document hubctl apply takes")
	want := &desiredState{index: map[string]int{}, grants: grants{}, shares: map[grantKey]bool{}}
	paths := map[string]string{} // network id -> its path
	for i, item := range p.seq(fields["networks"], "networks") {
		path := fmt.Sprintf("networks[%d]", i)
		n, id := p.network(item, path)
		if j, dup := paths[id]; dup && id != "" {
			p.fail(nil, path+".id", "%q: duplicate of %s", id, j)
			continue
		}
		paths[id] = path
		if n == nil {
			// Known by id all the same, so that policies naming it do not
			// add "not a network of this file" to the real problem.
			want.index[id] = -1
			continue
		}
		want.index[id] = len(want.networks)
		want.networks = append(want.networks, n)
	}
	p.crossNetworkChecks(want)
	dsts := map[string]string{}
	for i, item := range p.seq(fields["policies"], "policies") {
		p.policy(item, fmt.Sprintf("policies[%d]", i), want, dsts)
	}
	if n, ok := fields["lists"]; ok {
		p.lists(n, want)
	}
	if n, ok := fields["rooms"]; ok {
		p.rooms(n, want)
	}
	return want
}

// header checks a required header key.
func (p *docParser) header(root *yaml.Node, fields map[string]*yaml.Node, key, want, why string) {
	v, ok := fields[key]
	if !ok {
		p.fail(root, key, "required (%s: %s)", key, want)
		return
	}
	before := len(p.errs)
	if s := p.str(v, key); len(p.errs) == before && s != want {
		p.fail(v, key, "%q %s (want %s)", s, why, want)
	}
}

// mapping returns the keys of a mapping node, refusing unknown and
// duplicate keys. A null node is an empty mapping.
func (p *docParser) mapping(n *yaml.Node, path string, known []string) map[string]*yaml.Node {
	if n == nil || isNull(n) {
		return map[string]*yaml.Node{}
	}
	if !p.plain(n, path) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.fail(n, path, "want a mapping of %s", strings.Join(known, ", "))
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		kp := joinPath(path, key)
		if k.Kind != yaml.ScalarNode {
			p.fail(k, path, "keys must be plain words")
			continue
		}
		if !slices.Contains(known, key) {
			p.fail(k, kp, "unknown key (valid: %s)", strings.Join(known, ", "))
			continue
		}
		if _, dup := out[key]; dup {
			p.fail(k, kp, "given twice")
			continue
		}
		p.mark(v, kp)
		out[key] = v
	}
	return out
}

// plain refuses anchors and aliases: following them by hand could expand
// a small file exponentially, and a membership file has no use for them.
func (p *docParser) plain(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		p.fail(n, path, "YAML anchors and aliases are not supported here")
		return false
	}
	return true
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// seq returns the items of a sequence; null or absent is empty.
func (p *docParser) seq(n *yaml.Node, path string) []*yaml.Node {
	if n == nil || isNull(n) {
		return nil
	}
	if !p.plain(n, path) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, path, "want a list")
		return nil
	}
	for i, c := range n.Content {
		p.mark(c, fmt.Sprintf("%s[%d]", path, i))
	}
	return n.Content
}

// str returns a string scalar; null is "". Numbers and booleans are
// refused rather than turned into text: "on" or 0755 read as a string by
// accident is what YAML is infamous for.
func (p *docParser) str(n *yaml.Node, path string) string {
	if n == nil || isNull(n) {
		return ""
	}
	if !p.plain(n, path) {
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		p.fail(n, path, "want a string (quote it)")
		return ""
	}
	return n.Value
}

// rateLimits reads a network's token buckets: a list of {class,
// per_second, burst} with class "all" or a service name.
func (p *docParser) rateLimits(n *yaml.Node, path string) []*hubv1.RateLimit {
	var out []*hubv1.RateLimit
	for i, c := range p.seq(n, path) {
		ip := fmt.Sprintf("%s[%d]", path, i)
		f := p.mapping(c, ip, rateLimitKeys)
		if f == nil {
			continue
		}
		rl := &hubv1.RateLimit{}
		switch class := strings.ToLower(p.str(f["class"], ip+".class")); {
		case class == "all":
		case serviceByName[class] != hubv1.Service_SERVICE_UNSPECIFIED:
			rl.Service = serviceByName[class]
		default:
			p.fail(f["class"], ip+".class", "%q: want one of %s", class, rateClasses)
		}
		rl.PerSecond = p.number(f["per_second"], ip+".per_second")
		b := p.number(f["burst"], ip+".burst")
		if b != float64(uint32(b)) {
			p.fail(f["burst"], ip+".burst", "%v: want a whole number of requests", b)
		}
		rl.Burst = uint32(b)
		out = append(out, rl)
	}
	return out
}

// number reads a non-negative number (0 when absent).
func (p *docParser) number(n *yaml.Node, path string) float64 {
	if n == nil || isNull(n) {
		return 0
	}
	if !p.plain(n, path) {
		return 0
	}
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		p.fail(n, path, "%q: want a number", n.Value)
		return 0
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		p.fail(n, path, "%q: want a non-negative number", n.Value)
		return 0
	}
	return v
}

func (p *docParser) boolean(n *yaml.Node, path string) bool {
	if n == nil || isNull(n) {
		return false
	}
	if !p.plain(n, path) {
		return false
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.fail(n, path, "%q: want true or false", n.Value)
		return false
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
}

func (p *docParser) strs(n *yaml.Node, path string) []string {
	var out []string
	for i, c := range p.seq(n, path) {
		out = append(out, p.str(c, fmt.Sprintf("%s[%d]", path, i)))
	}
	return out
}

// services reads a list of service words ("all" is every service).
func (p *docParser) services(n *yaml.Node, path string) []hubv1.Service {
	var out []hubv1.Service
	for i, c := range p.seq(n, path) {
		ip := fmt.Sprintf("%s[%d]", path, i)
		w := strings.ToLower(strings.TrimSpace(p.str(c, ip)))
		switch s, ok := serviceByName[w]; {
		case w == "all":
			out = append(out, allServices()...)
		case ok:
			out = append(out, s)
		default:
			p.fail(c, ip, "unknown service %q (valid: %s)", w, validServices)
		}
	}
	return sortedServices(out)
}

var networkKeys = []string{"id", "display_name", "status", "domains", "edges", "services", "identity", "keep_bodies", "rate_limits", "created", "updated"}
var rateLimitKeys = []string{"class", "per_second", "burst"}
var identityKeys = []string{"ca_pem", "pins", "cidrs", "tls_cidrs"}

// network reads one network; nil (and the id, if one was read) when it has
// problems.
func (p *docParser) network(node *yaml.Node, path string) (*hubv1.Network, string) {
	before := len(p.errs)
	f := p.mapping(node, path, networkKeys)
	if f == nil {
		return nil, ""
	}
	n := &hubv1.Network{
		Id:          p.str(f["id"], path+".id"),
		DisplayName: p.str(f["display_name"], path+".display_name"),
		Domains:     p.strs(f["domains"], path+".domains"),
		Edges:       p.strs(f["edges"], path+".edges"),
		Services:    p.services(f["services"], path+".services"),
		KeepBodies:  p.boolean(f["keep_bodies"], path+".keep_bodies"),
		Identity:    &hubv1.Identity{},
	}
	if _, ok := f["id"]; !ok {
		p.fail(node, path+".id", "required")
	} else if id := n.GetId(); id != "" && !raft.ValidID(id) {
		p.fail(nil, path+".id", "%q: must be 1..%d characters of [a-z0-9-]", id, raft.MaxIDLen)
	}
	// Output-only: checked for type, then ignored.
	p.str(f["created"], path+".created")
	p.str(f["updated"], path+".updated")
	switch st := p.str(f["status"], path+".status"); st {
	case "", "active":
		n.Status = hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE
	case "suspended":
		n.Status = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED
	default:
		p.fail(f["status"], path+".status", "%q: want active or suspended", st)
	}
	ip := path + ".identity"
	idf := p.mapping(f["identity"], ip, identityKeys)
	if idf != nil {
		for i, s := range p.strs(idf["ca_pem"], ip+".ca_pem") {
			ep := fmt.Sprintf("%s.ca_pem[%d]", ip, i)
			c, err := canonPEM(s)
			if err != "" {
				p.fail(nil, ep, "%s", err)
			}
			n.Identity.CaPem = append(n.Identity.CaPem, c)
		}
		for i, s := range p.strs(idf["pins"], ip+".pins") {
			pin, err := normalizePin(s)
			if err != nil {
				p.fail(nil, fmt.Sprintf("%s.pins[%d]", ip, i), "%q is not a SHA-256 fingerprint (64 hex digits)", s)
			}
			n.Identity.Pins = append(n.Identity.Pins, pin)
		}
		n.Identity.Cidrs = p.prefixes(idf["cidrs"], ip+".cidrs")
		n.Identity.TlsCidrs = p.prefixes(idf["tls_cidrs"], ip+".tls_cidrs")
	}
	n.RateLimits = p.rateLimits(f["rate_limits"], path+".rate_limits")
	if len(p.errs) > before {
		return nil, n.GetId()
	}
	n = raft.NormalizeNetwork(n)
	if err := raft.ValidateNetwork(n); err != nil {
		p.fieldError(path, err)
		return nil, n.GetId()
	}
	return n, n.GetId()
}

// fieldError re-labels a raft validation error ("network.domains[1] ...")
// with the YAML path of the network ("networks[3].domains[1]").
func (p *docParser) fieldError(path string, err error) {
	var fe *raft.FieldError
	if !errors.As(err, &fe) {
		p.fail(nil, path, "%v", err)
		return
	}
	fp := path
	if rest, ok := strings.CutPrefix(fe.Field, "network"); ok {
		fp = path + rest
	}
	msg := fe.Reason
	if fe.Value != "" {
		msg = fmt.Sprintf("%q: %s", fe.Value, fe.Reason)
	}
	p.fail(nil, fp, "%s", msg)
}

// prefixes reads address prefixes; a bare address means that host, as on
// the command line.
func (p *docParser) prefixes(n *yaml.Node, path string) []string {
	var out []string
	for i, s := range p.strs(n, path) {
		ep := fmt.Sprintf("%s[%d]", path, i)
		c, err := parseCIDR(ep, s)
		if err != nil {
			p.fail(nil, ep, "%q is not an address prefix like 192.0.2.0/24", s)
		}
		out = append(out, c)
	}
	return out
}

// canonPEM re-encodes every PEM block of s, so that line endings, trailing
// newlines (YAML's "|" against "|-") and text around the blocks do not
// count as a difference. The second result is a problem, "" if none.
func canonPEM(s string) (string, string) {
	var out bytes.Buffer
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return s, fmt.Sprintf("PEM block %q is not a CERTIFICATE", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return s, fmt.Sprintf("certificate does not parse: %v", err)
		}
		_ = pem.Encode(&out, &pem.Block{Type: b.Type, Bytes: b.Bytes})
	}
	if out.Len() == 0 {
		return s, "no PEM certificate (want a -----BEGIN CERTIFICATE----- block)"
	}
	return out.String(), ""
}

// canonStoredPEM is canonPEM for a value read from the cluster, which is
// compared as is when it does not parse.
func canonStoredPEM(s string) string {
	c, bad := canonPEM(s)
	if bad != "" {
		return s
	}
	return c
}

// crossNetworkChecks refuses what no order of changes could apply: two
// networks of the file claiming one domain or pin, or overlapping lab
// prefixes (the hub attributes every source to exactly one network).
func (p *docParser) crossNetworkChecks(want *desiredState) {
	domains, pins := map[string]string{}, map[string]string{}
	type owned struct {
		p    netip.Prefix
		path string
	}
	var cidrs []owned
	for i, n := range want.networks {
		path := fmt.Sprintf("networks[%d]", i)
		for j, d := range n.GetDomains() {
			dp := fmt.Sprintf("%s.domains[%d]", path, j)
			if o, ok := domains[d]; ok {
				p.fail(nil, dp, "%q: also claimed by %s", d, o)
			}
			domains[d] = dp
		}
		for j, pin := range n.GetIdentity().GetPins() {
			pp := fmt.Sprintf("%s.identity.pins[%d]", path, j)
			if o, ok := pins[pin]; ok {
				p.fail(nil, pp, "%q: also pinned by %s", pin, o)
			}
			pins[pin] = pp
		}
		for j, c := range n.GetIdentity().GetCidrs() {
			pre, err := netip.ParsePrefix(c)
			if err != nil {
				continue
			}
			cp := fmt.Sprintf("%s.identity.cidrs[%d]", path, j)
			for _, o := range cidrs {
				if o.p.Overlaps(pre) {
					p.fail(nil, cp, "%s overlaps %s at %s", pre, o.p, o.path)
				}
			}
			cidrs = append(cidrs, owned{pre, cp})
		}
	}
}

var policyKeys = []string{"destination", "allow_all", "all_services", "rules"}
var ruleKeys = []string{"source", "services", "share_views"}

func (p *docParser) policy(node *yaml.Node, path string, want *desiredState, dsts map[string]string) {
	f := p.mapping(node, path, policyKeys)
	if f == nil {
		return
	}
	dst := p.str(f["destination"], path+".destination")
	switch _, ok := want.index[dst]; {
	case dst == "":
		p.fail(node, path+".destination", "required")
		return
	case !ok:
		p.fail(nil, path+".destination", "%q is not a network of this file", dst)
		return
	}
	if j, dup := dsts[dst]; dup {
		p.fail(nil, path+".destination", "%q: %s has the same destination (merge them)", dst, j)
		return
	}
	dsts[dst] = path
	all := p.services(f["all_services"], path+".all_services")
	allowAll := len(all) > 0
	if v, ok := f["allow_all"]; ok {
		allowAll = p.boolean(v, path+".allow_all")
		switch {
		case allowAll && len(all) == 0:
			p.fail(v, path+".all_services", "required when allow_all is true (list services, or all)")
		case !allowAll && len(all) > 0:
			p.fail(v, path+".allow_all", "false, but all_services lists services (set allow_all: true, or empty all_services)")
		}
	}
	if allowAll && len(all) > 0 {
		want.grants[grantKey{dst, allMembers}] = all
	}
	for i, r := range p.seq(f["rules"], path+".rules") {
		rp := fmt.Sprintf("%s.rules[%d]", path, i)
		rf := p.mapping(r, rp, ruleKeys)
		if rf == nil {
			continue
		}
		src := p.str(rf["source"], rp+".source")
		svcs := p.services(rf["services"], rp+".services")
		sv, shareGiven := rf["share_views"]
		before := len(p.errs)
		share := p.boolean(sv, rp+".share_views")
		if shareGiven && share && len(p.errs) == before && len(svcs) > 0 && !slices.Contains(svcs, hubv1.Service_SERVICE_PRESENCE) {
			// The hub refuses it too (set_view_sharing needs presence).
			p.fail(sv, rp+".share_views", "true, but services does not include presence (a shared view is a presence grant)")
		}
		_, known := want.index[src]
		_, dup := want.grants[grantKey{dst, src}]
		switch {
		case src == "":
			p.fail(r, rp+".source", "required")
		case src == dst:
			p.fail(nil, rp+".source", "%q: a network always reaches itself", src)
		case !known:
			p.fail(nil, rp+".source", "%q is not a network of this file", src)
		case dup:
			p.fail(nil, rp+".source", "%q: a second rule for the same source (merge them)", src)
		case len(svcs) == 0:
			p.fail(r, rp+".services", "at least one service (or all); remove the rule to grant nothing")
		default:
			want.grants[grantKey{dst, src}] = svcs
			if shareGiven && len(p.errs) == before {
				want.shares[grantKey{dst, src}] = share
			}
		}
	}
}

// --- diff ---

// fieldChange is one changed field of a network, rendered for the diff.
type fieldChange struct{ name, old, new string }

// networkChange is one network added (+), changed (~) or removed (-).
type networkChange struct {
	op     byte
	id     string
	fields []fieldChange // +: every field; ~: the changed ones
}

// grantChange is one policy entry added, changed or removed: its services
// and its shared presence view (share_views).
type grantChange struct {
	op                 byte
	key                grantKey
	old, new           []hubv1.Service
	oldShare, newShare bool
}

// stepKind is one admin RPC of the plan.
type stepKind int

const (
	stepSuspend stepKind = iota
	stepAdd
	stepUpdate
	stepDeny
	stepAllow
	stepResume
	stepRemove
	stepPutList
	stepDeleteList
	stepCreateRoom
	stepDeleteRoom
	stepAddRoomMember
	stepRemoveRoomMember
	stepSetRoomRole
	stepBanRoom
	stepUnbanRoom
	stepUpdateRoom
	stepSetRoomMember
	stepShareView   // SetViewSharing share: true
	stepUnshareView // SetViewSharing share: false
)

// step is one RPC to send.
type step struct {
	kind    stepKind
	id      string         // network id
	network *hubv1.Network // add: the network; update: the desired network
	mask    []string       // update
	version int64          // update: updated_unix_nano read from the cluster
	change  *hubv1.PolicyChangeRequest
	list    *hubv1.ResourceList // put list (id is its uri)
	replace bool                // put list: it exists
	room    *hubv1.Room         // create room: its settings (id is its uri)
	member  *hubv1.RoomMember   // add room member
	user    string              // remove room member, set role
	role    hubv1.RoomRole      // set role
	ban     *hubv1.RoomBan      // ban, unban
	file    int                 // index in the file's networks, -1 if none

	// update room / set room member: the RoomService request
	updateRoom *hubv1.UpdateRoomRequest
	setMember  *hubv1.SetRoomMemberRequest

	// share, unshare view: the ListService request
	share *hubv1.SetViewSharingRequest
}

func (s step) String() string {
	switch s.kind {
	case stepSuspend:
		return "suspend network " + s.id
	case stepAdd:
		return "add network " + s.id
	case stepUpdate:
		return fmt.Sprintf("update network %s (%s)", s.id, strings.Join(s.mask, ", "))
	case stepResume:
		return "resume network " + s.id
	case stepRemove:
		return "remove network " + s.id
	case stepPutList:
		if s.replace {
			return "replace list " + s.id
		}
		return "create list " + s.id
	case stepDeleteList:
		return "delete list " + s.id
	case stepAllow, stepDeny:
		verb := "allow"
		if s.kind == stepDeny {
			verb = "deny"
		}
		src := s.change.GetSource()
		if s.change.GetAll() {
			src = allMembers
		}
		return fmt.Sprintf("%s %s <- %s: %s", verb, s.change.GetDestination(), src, serviceList(s.change.GetServices()))
	case stepShareView:
		return fmt.Sprintf("share views %s <- %s", s.share.GetDestination(), s.share.GetSource())
	case stepUnshareView:
		return fmt.Sprintf("withdraw shared views %s <- %s", s.share.GetDestination(), s.share.GetSource())
	}
	if isRoomStep(s.kind) {
		return roomStepString(s)
	}
	return "?"
}

// plan is the difference between the cluster and the file, and the RPCs
// that close it, in the order they are sent.
type plan struct {
	networks  []networkChange
	grants    []grantChange
	kept      []string // in the cluster, not in the file, no --prune
	lists     []listChange
	keptLists []string
	rooms     []roomChange
	roomNotes []string
	steps     []step

	// keptShares: shared views granted in the cluster on rules of the file
	// without a share_views key, kept (no --prune).
	keptShares []grantKey
}

func (pl *plan) empty() bool { return len(pl.steps) == 0 }

// makePlan compares the cluster (cur, curPol) with the file. Networks the
// file does not name are removed only with prune; otherwise they, and
// every policy entry naming them, are left alone. The returned steps were
// replayed against a copy of the cluster state with the FSM's own
// admission checks, so an order that the hub would refuse halfway (a
// domain moving between networks, say) is found before anything changes.
func makePlan(cur []*hubv1.Network, curPol []*hubv1.Policy, want *desiredState, prune bool) (*plan, error) {
	return planCluster(&hubv1.ClusterState{Networks: cur, Policies: curPol}, want, prune)
}

// planCluster is makePlan for everything the document carries: networks,
// policies and (when the file has the key) lists.
func planCluster(cs *hubv1.ClusterState, want *desiredState, prune bool) (*plan, error) {
	cur, curPol := cs.GetNetworks(), cs.GetPolicies()
	pl := &plan{}
	curByID := map[string]*hubv1.Network{}
	for _, n := range cur {
		curByID[n.GetId()] = n
	}
	managed := func(id string) bool { _, ok := want.index[id]; return ok }

	var suspends, changes, resumes, removals []step
	for i, w := range want.networks {
		c := curByID[w.GetId()]
		if c == nil {
			pl.networks = append(pl.networks, networkChange{op: '+', id: w.GetId(), fields: networkFields(nil, w)})
			changes = append(changes, step{kind: stepAdd, id: w.GetId(), network: w, file: i})
			continue
		}
		fields := networkFields(c, w)
		if len(fields) == 0 {
			continue
		}
		pl.networks = append(pl.networks, networkChange{op: '~', id: w.GetId(), fields: fields})
		if mask := updateMask(fields); len(mask) > 0 {
			changes = append(changes, step{kind: stepUpdate, id: w.GetId(), network: w, mask: mask, version: c.GetUpdatedUnixNano(), file: i})
		}
		if c.GetStatus() != w.GetStatus() {
			if w.GetStatus() == hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED {
				// First of all: stop the traffic before anything else moves.
				suspends = append(suspends, step{kind: stepSuspend, id: w.GetId(), file: i})
			} else {
				// Last before removals: traffic flows once the rest is in place.
				resumes = append(resumes, step{kind: stepResume, id: w.GetId(), file: i})
			}
		}
	}
	for _, c := range cur {
		if managed(c.GetId()) {
			continue
		}
		if !prune {
			pl.kept = append(pl.kept, c.GetId())
			continue
		}
		pl.networks = append(pl.networks, networkChange{op: '-', id: c.GetId()})
		removals = append(removals, step{kind: stepRemove, id: c.GetId(), file: -1})
	}
	slices.SortFunc(pl.networks, func(a, b networkChange) int { return strings.Compare(a.id, b.id) })

	// Policy entries between networks of the file; entries naming any other
	// network are kept (no --prune) or go with its removal (--prune).
	have, haveShares := grantsOf(curPol), sharesOf(curPol)
	var denies, allows, unshares, shares []step
	keys := map[grantKey]bool{}
	for k := range have {
		if managed(k.dst) && (k.src == allMembers || managed(k.src)) {
			keys[k] = true
		}
	}
	for k := range want.grants {
		keys[k] = true
	}
	sorted := make([]grantKey, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].dst != sorted[j].dst {
			return sorted[i].dst < sorted[j].dst
		}
		return sorted[i].src < sorted[j].src
	})
	for _, k := range sorted {
		old, nw := have[k], want.grants[k]
		oldShare := haveShares[k]
		newShare := false
		if k.src != allMembers && slices.Contains(nw, hubv1.Service_SERVICE_PRESENCE) {
			s, given := want.shares[k]
			switch {
			case given:
				newShare = s
			case prune:
				// A rule of the file without the key: not in the file, withdrawn.
			default:
				newShare = oldShare
				if oldShare {
					pl.keptShares = append(pl.keptShares, k)
				}
			}
		}
		if slices.Equal(old, nw) && oldShare == newShare {
			continue
		}
		// The view survives the service steps only while presence stays
		// granted throughout (a deny of presence takes it along, and a
		// rule made anew starts without it).
		afterServices := oldShare && slices.Contains(nw, hubv1.Service_SERVICE_PRESENCE)
		switch sr := (&hubv1.SetViewSharingRequest{Destination: k.dst, Source: k.src, Share: newShare}); {
		case newShare && !afterServices:
			shares = append(shares, step{kind: stepShareView, share: sr, file: -1})
		case !newShare && afterServices:
			unshares = append(unshares, step{kind: stepUnshareView, share: sr, file: -1})
		}
		op := byte('~')
		switch {
		case len(old) == 0:
			op = '+'
		case len(nw) == 0:
			op = '-'
		}
		pl.grants = append(pl.grants, grantChange{op: op, key: k, old: old, new: nw, oldShare: oldShare, newShare: newShare})
		req := func(svcs []hubv1.Service) *hubv1.PolicyChangeRequest {
			r := &hubv1.PolicyChangeRequest{Destination: k.dst, Services: svcs}
			if k.src == allMembers {
				r.All = true
			} else {
				r.Source = k.src
			}
			return r
		}
		// Always with the exact services: an empty list means every
		// service, and the hub refuses it where it would widen a grant.
		if gone := minus(old, nw); len(gone) > 0 {
			denies = append(denies, step{kind: stepDeny, change: req(gone), file: -1})
		}
		if added := minus(nw, old); len(added) > 0 {
			allows = append(allows, step{kind: stepAllow, change: req(added), file: -1})
		}
	}

	var listPuts, listDeletes []step
	pl.lists, listPuts, listDeletes, pl.keptLists = planLists(cs.GetLists(), want, prune)
	var roomSteps, roomDeletes []step
	var err error
	if pl.rooms, roomSteps, roomDeletes, pl.roomNotes, err = planRooms(cs.GetRooms(), want, prune); err != nil {
		return nil, err
	}

	ordered, err := orderSteps(cs, suspends, changes, removals, want)
	if err != nil {
		return nil, err
	}
	// Narrow before widening: a grant moving from one service to another
	// never passes through a state granting both, and a shared view is
	// withdrawn before and granted after the services it depends on.
	pl.steps = append(ordered, unshares...)
	pl.steps = append(pl.steps, denies...)
	pl.steps = append(pl.steps, allows...)
	pl.steps = append(pl.steps, shares...)
	pl.steps = append(pl.steps, listPuts...)
	pl.steps = append(pl.steps, resumes...)
	for _, r := range removals {
		if !slices.ContainsFunc(pl.steps, func(s step) bool { return s.kind == stepRemove && s.id == r.id }) {
			pl.steps = append(pl.steps, r)
		}
	}
	// Rooms once every network their participants name is in its final
	// state; removals of rooms and lists last.
	pl.steps = append(pl.steps, roomSteps...)
	pl.steps = append(pl.steps, listDeletes...)
	pl.steps = append(pl.steps, roomDeletes...)
	if _, err := simulateCluster(cs, pl.steps); err != nil {
		return nil, err
	}
	return pl, nil
}

// minus is a without b (both sorted).
func minus(a, b []hubv1.Service) []hubv1.Service {
	var out []hubv1.Service
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// networkFields lists the fields of w that differ from c (every field of w
// when c is nil), in the order of the document.
func networkFields(c, w *hubv1.Network) []fieldChange {
	var out []fieldChange
	add := func(name string, old, nw string, differ bool) {
		if c == nil || differ {
			out = append(out, fieldChange{name: name, old: old, new: nw})
		}
	}
	ci, wi := c.GetIdentity(), w.GetIdentity()
	curCA := make([]string, len(ci.GetCaPem()))
	for i, s := range ci.GetCaPem() {
		curCA[i] = canonStoredPEM(s)
	}
	add("display_name", fmt.Sprintf("%q", c.GetDisplayName()), fmt.Sprintf("%q", w.GetDisplayName()), c.GetDisplayName() != w.GetDisplayName())
	add("status", statusWord(c.GetStatus()), statusWord(w.GetStatus()), c.GetStatus() != w.GetStatus())
	add("domains", list(c.GetDomains()), list(w.GetDomains()), !slices.Equal(c.GetDomains(), w.GetDomains()))
	add("edges", list(c.GetEdges()), list(w.GetEdges()), !slices.Equal(c.GetEdges(), w.GetEdges()))
	add("services", serviceSet(c.GetServices()), serviceSet(w.GetServices()), !slices.Equal(sortedServices(c.GetServices()), w.GetServices()))
	add("identity.ca_pem", list(caSummaries(curCA)), list(caSummaries(wi.GetCaPem())), !slices.Equal(curCA, wi.GetCaPem()))
	add("identity.pins", list(ci.GetPins()), list(wi.GetPins()), !slices.Equal(ci.GetPins(), wi.GetPins()))
	add("identity.cidrs", list(ci.GetCidrs()), list(wi.GetCidrs()), !slices.Equal(ci.GetCidrs(), wi.GetCidrs()))
	add("identity.tls_cidrs", list(ci.GetTlsCidrs()), list(wi.GetTlsCidrs()), !slices.Equal(ci.GetTlsCidrs(), wi.GetTlsCidrs()))
	add("keep_bodies", fmt.Sprint(c.GetKeepBodies()), fmt.Sprint(w.GetKeepBodies()), c.GetKeepBodies() != w.GetKeepBodies())
	// Both sides are stored sorted by class (raft.NormalizeNetwork).
	cr, wr := rateLimitList(c.GetRateLimits()), rateLimitList(w.GetRateLimits())
	add("rate_limits", cr, wr, cr != wr)
	return out
}

// updateMask maps changed fields to UpdateNetwork mask paths; status is
// not one (Suspend/ResumeNetwork change it).
func updateMask(fields []fieldChange) []string {
	var mask []string
	for _, f := range fields {
		p := f.name
		if strings.HasPrefix(p, "identity.") {
			p = "identity"
		}
		if p != "status" && !slices.Contains(mask, p) {
			mask = append(mask, p)
		}
	}
	return mask
}

// serviceSet renders a network's services; none means every service.
func serviceSet(s []hubv1.Service) string {
	if len(s) == 0 {
		return "[] (every service)"
	}
	return list(serviceWords(s))
}

func list(ss []string) string { return "[" + strings.Join(ss, ", ") + "]" }

// caSummaries names CA certificates for the diff: subject and a short
// fingerprint instead of the whole PEM text.
func caSummaries(pems []string) []string {
	out := make([]string, len(pems))
	for i, s := range pems {
		sum := sha256.Sum256([]byte(s))
		name := "(unparsable)"
		if b, _ := pem.Decode([]byte(s)); b != nil {
			sum = sha256.Sum256(b.Bytes)
			if c, err := x509.ParseCertificate(b.Bytes); err == nil {
				name = "CN=" + c.Subject.CommonName
			}
		}
		out[i] = name + " sha256:" + hex.EncodeToString(sum[:6])
	}
	return out
}

// planTime is the clock of simulated commands; only its order matters.
const planTime = int64(1)

func planCommand(t int64, s step) *hubv1.Command {
	cmd := &hubv1.Command{Version: raft.CommandVersion, TimeUnixNano: t, Actor: "hubctl apply (plan)"}
	switch s.kind {
	case stepAdd:
		cmd.Op = &hubv1.Command_AddNetwork{AddNetwork: &hubv1.AddNetwork{Network: s.network}}
	case stepUpdate:
		cmd.Op = &hubv1.Command_UpdateNetwork{UpdateNetwork: &hubv1.UpdateNetwork{Network: s.network}}
	case stepSuspend, stepResume:
		st := hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE
		if s.kind == stepSuspend {
			st = hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED
		}
		cmd.Op = &hubv1.Command_SetNetworkStatus{SetNetworkStatus: &hubv1.SetNetworkStatus{Id: s.id, Status: st}}
	case stepRemove:
		cmd.Op = &hubv1.Command_RemoveNetwork{RemoveNetwork: &hubv1.RemoveNetwork{Id: s.id}}
	case stepPutList:
		cmd.Op = &hubv1.Command_PutList{PutList: &hubv1.PutList{List: s.list, Replace: s.replace}}
	case stepDeleteList:
		cmd.Op = &hubv1.Command_DeleteList{DeleteList: &hubv1.DeleteList{Uri: s.id}}
	case stepAllow:
		c := s.change
		cmd.Op = &hubv1.Command_PolicyAllow{PolicyAllow: &hubv1.PolicyAllow{Destination: c.GetDestination(), Source: c.GetSource(), All: c.GetAll(), Services: c.GetServices()}}
	case stepDeny:
		c := s.change
		cmd.Op = &hubv1.Command_PolicyDeny{PolicyDeny: &hubv1.PolicyDeny{Destination: c.GetDestination(), Source: c.GetSource(), All: c.GetAll(), Services: c.GetServices()}}
	case stepShareView, stepUnshareView:
		v := s.share
		cmd.Op = &hubv1.Command_SetViewSharing{SetViewSharing: &hubv1.SetViewSharing{Destination: v.GetDestination(), Source: v.GetSource(), Share: v.GetShare()}}
	}
	return cmd
}

// tryStep applies s to st with the proposer's admission checks.
func tryStep(st *raft.State, t int64, s step) (*raft.State, error) {
	cmd := planCommand(t, s)
	if isRoomStep(s.kind) {
		if err := roomCommand(st, cmd, s); err != nil {
			return nil, err
		}
	}
	if err := raft.AdmitCommand(st, cmd); err != nil {
		return nil, err
	}
	return raft.ApplyTo(st, 0, cmd)
}

// orderSteps orders adds and updates so that each one is admissible when
// sent: a domain, pin or prefix moving from one network to another is
// released before it is claimed. A --prune removal is moved forward only
// when something is blocked on what it releases.
func orderSteps(cs *hubv1.ClusterState, suspends, pending, removals []step, want *desiredState) ([]step, error) {
	st := raft.NewState(0, cs)
	t := planTime
	var out []step
	for _, s := range suspends {
		next, err := tryStep(st, t, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		st, t, out = next, t+1, append(out, s)
	}
	removals = slices.Clone(removals)
	for len(pending) > 0 {
		var blocked []step
		for _, s := range pending {
			next, err := tryStep(st, t, s)
			if err != nil {
				blocked = append(blocked, s)
				continue
			}
			st, t, out = next, t+1, append(out, s)
		}
		if len(blocked) == 0 {
			break
		}
		if len(blocked) < len(pending) {
			pending = blocked
			continue
		}
		// Stuck: see whether one of the removals asked for unblocks a step.
		unblocked := false
		for i, r := range removals {
			next, err := tryStep(st, t, r)
			if err != nil {
				continue
			}
			if slices.ContainsFunc(blocked, func(s step) bool { _, err := tryStep(next, t+1, s); return err == nil }) {
				st, t, out = next, t+1, append(out, r)
				removals = slices.Delete(removals, i, i+1)
				unblocked = true
				break
			}
		}
		if !unblocked {
			s := blocked[0]
			_, err := tryStep(st, t, s)
			return nil, fmt.Errorf("networks[%d]: %s would be refused by the hub%s: %w", s.file, s, blockHint(st, s, want), err)
		}
		pending = blocked
	}
	return out, nil
}

// blockHint says why a claim cannot be released by this apply.
func blockHint(st *raft.State, s step, want *desiredState) string {
	for _, d := range s.network.GetDomains() {
		if o := st.DomainOwner(d); o != nil && o.GetId() != s.id {
			if _, ok := want.index[o.GetId()]; !ok {
				return fmt.Sprintf(" (network %q is not in the file and keeps it; --prune removes that network)", o.GetId())
			}
			return ""
		}
	}
	return ""
}

// simulate replays every step on a copy of the cluster state in order and
// returns the state it ends in.
func simulate(cur []*hubv1.Network, curPol []*hubv1.Policy, steps []step) (*raft.State, error) {
	return simulateCluster(&hubv1.ClusterState{Networks: cur, Policies: curPol}, steps)
}

func simulateCluster(cs *hubv1.ClusterState, steps []step) (*raft.State, error) {
	st := raft.NewState(0, cs)
	for i, s := range steps {
		next, err := tryStep(st, planTime+int64(i), s)
		if err != nil {
			return nil, fmt.Errorf("%s would be refused by the hub: %w", s, err)
		}
		st = next
	}
	return st, nil
}

// writeDiff renders the plan: "+" added, "~" changed field by field, "-"
// removed; "#" lines are notes.
func writeDiff(w io.Writer, pl *plan) {
	for _, n := range pl.networks {
		fmt.Fprintf(w, "%c network %s\n", n.op, n.id)
		for _, f := range n.fields {
			if n.op == '+' {
				fmt.Fprintf(w, "+     %s: %s\n", f.name, f.new)
			} else {
				fmt.Fprintf(w, "~     %s: %s -> %s\n", f.name, f.old, f.new)
			}
		}
	}
	for _, g := range pl.grants {
		src := g.key.src
		if src == allMembers {
			src = "* (all members)"
		}
		switch g.op {
		case '+':
			fmt.Fprintf(w, "+ policy %s <- %s: %s%s\n", g.key.dst, src, serviceList(g.new), shareNote(g.newShare))
		case '-':
			fmt.Fprintf(w, "- policy %s <- %s: %s%s\n", g.key.dst, src, serviceList(g.old), shareNote(g.oldShare))
		case '~':
			svcs := serviceList(g.new)
			if !slices.Equal(g.old, g.new) {
				svcs = serviceList(g.old) + " -> " + svcs
			}
			if g.oldShare != g.newShare {
				svcs += fmt.Sprintf("; share_views: %t -> %t", g.oldShare, g.newShare)
			}
			fmt.Fprintf(w, "~ policy %s <- %s: %s\n", g.key.dst, src, svcs)
		}
	}
	for _, id := range pl.kept {
		fmt.Fprintf(w, "# network %s is in the cluster but not in the file: kept (apply --prune removes it)\n", id)
	}
	for _, k := range pl.keptShares {
		fmt.Fprintf(w, "# policy %s <- %s shares views in the cluster; the file's rule has no share_views: kept (apply --prune withdraws it)\n", k.dst, k.src)
	}
	writeListDiff(w, pl)
	writeRoomDiff(w, pl)
	if pl.empty() {
		fmt.Fprintln(w, "no changes")
		return
	}
	var add, change, remove int
	for _, n := range pl.networks {
		switch n.op {
		case '+':
			add++
		case '~':
			change++
		default:
			remove++
		}
	}
	var gAdd, gChange, gRemove int
	for _, g := range pl.grants {
		switch g.op {
		case '+':
			gAdd++
		case '~':
			gChange++
		default:
			gRemove++
		}
	}
	fmt.Fprintf(w, "networks: %d to add, %d to change, %d to remove; policy entries: %d to add, %d to change, %d to remove%s (%s)\n",
		add, change, remove, gAdd, gChange, gRemove, listSummary(pl)+roomSummary(pl), calls(len(pl.steps)))
}

// shareNote marks a '+' or '-' policy entry that carries a shared view.
func shareNote(share bool) string {
	if share {
		return "; share_views: true"
	}
	return ""
}

func calls(n int) string {
	if n == 1 {
		return "1 call"
	}
	return fmt.Sprintf("%d calls", n)
}
