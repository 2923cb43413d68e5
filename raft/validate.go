package raft

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// CommandVersion is the only hubv1.Command encoding version this FSM knows.
const CommandVersion = 1

// Limits enforced by the validators.
const (
	MaxIDLen          = 63
	MaxDisplayNameLen = 128 // runes
	MaxActorLen       = 256
	maxDNSNameLen     = 253
	maxQuotedValue    = 80
)

// FieldError says which field of a command or network is wrong and why. It
// wraps ErrInvalid so errors.Is(err, ErrInvalid) holds.
type FieldError struct {
	Field  string // "network.domains[1]"
	Value  string // the offending value, possibly truncated; "" if not shown
	Reason string // "not a valid DNS name"
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return e.Field + ": " + e.Reason
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, value, reason string) error {
	if len(value) > maxQuotedValue {
		value = value[:maxQuotedValue] + "..."
	}
	return &FieldError{Field: field, Value: value, Reason: reason}
}

// ValidID reports whether id is a valid network or node id: 1..63 characters
// from [a-z0-9-].
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidateNetwork checks everything about n that does not depend on the rest
// of the cluster state. Domains and pins are compared case-insensitively
// (they are stored lower-cased, see NormalizeNetwork). It does not look at
// status or the created/updated times: the FSM sets those. The error wraps
// ErrInvalid and names the field, e.g.
//
//	network.domains[1] "bad..domain": not a valid DNS name
//
// Pure and safe for concurrent use; admin handlers call it before proposing
// and the FSM calls it again (through CheckCommand) on apply.
func ValidateNetwork(n *hubv1.Network) error {
	if n == nil {
		return invalid("network", "", "missing")
	}
	if !ValidID(n.GetId()) {
		return invalid("network.id", n.GetId(), "must be 1..63 characters of [a-z0-9-]")
	}
	if err := validDisplayName(n.GetDisplayName()); err != "" {
		return invalid("network.display_name", n.GetDisplayName(), err)
	}
	if len(n.GetDomains()) == 0 {
		return invalid("network.domains", "", "at least one domain is required")
	}
	seen := map[string]bool{}
	for i, d := range n.GetDomains() {
		f := fmt.Sprintf("network.domains[%d]", i)
		ld := strings.ToLower(d)
		if !ValidDNSName(ld) {
			return invalid(f, d, DNSNameProblem(ld))
		}
		if seen[ld] {
			return invalid(f, d, "duplicate domain")
		}
		seen[ld] = true
	}
	if len(n.GetEdges()) == 0 {
		return invalid("network.edges", "", "at least one edge URI is required")
	}
	seen = map[string]bool{}
	for i, e := range n.GetEdges() {
		f := fmt.Sprintf("network.edges[%d]", i)
		if err := validEdgeURI(e); err != "" {
			return invalid(f, e, err)
		}
		if seen[e] {
			return invalid(f, e, "duplicate edge")
		}
		seen[e] = true
	}
	if err := validateIdentity(n.GetIdentity()); err != nil {
		return err
	}
	if err := validServices("network.services", n.GetServices()); err != nil {
		return err
	}
	if err := validateRateLimits(n.GetRateLimits()); err != nil {
		return err
	}
	if err := validateMsrp(n.GetMsrp()); err != nil {
		return err
	}
	if _, ok := hubv1.NetworkStatus_name[int32(n.GetStatus())]; !ok {
		return invalid("network.status", n.GetStatus().String(), "unknown status")
	}
	return nil
}

// NormalizeNetwork returns a copy of n in the canonical form the FSM stores:
// domains and pins lower-cased, CIDRs masked and printed canonically,
// services de-duplicated and sorted. Values that do not parse are left as
// they are (ValidateNetwork reports them). n is not modified.
func NormalizeNetwork(n *hubv1.Network) *hubv1.Network {
	c := proto.Clone(n).(*hubv1.Network)
	for i, d := range c.Domains {
		c.Domains[i] = strings.ToLower(d)
	}
	if id := c.GetIdentity(); id != nil {
		for i, p := range id.Pins {
			id.Pins[i] = strings.ToLower(p)
		}
		for i, s := range id.Cidrs {
			if p, err := netip.ParsePrefix(s); err == nil {
				id.Cidrs[i] = p.Masked().String()
			}
		}
		for i, s := range id.TlsCidrs {
			if p, err := netip.ParsePrefix(s); err == nil {
				id.TlsCidrs[i] = p.Masked().String()
			}
		}
	}
	c.Services = normServices(c.Services)
	normalizeMsrp(c.Msrp)
	slices.SortStableFunc(c.RateLimits, func(a, b *hubv1.RateLimit) int { return int(a.GetService()) - int(b.GetService()) })
	return c
}

func normServices(s []hubv1.Service) []hubv1.Service {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

func validDisplayName(s string) string {
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	if utf8.RuneCountInString(s) > MaxDisplayNameLen {
		return fmt.Sprintf("longer than %d characters", MaxDisplayNameLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "contains control characters"
		}
	}
	return ""
}

// DNSNameProblem says why s is not a valid DNS name, with the punycode form
// to use instead when s is an internationalised name.
func DNSNameProblem(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			if a, err := idna.Lookup.ToASCII(s); err == nil && ValidDNSName(a) {
				return fmt.Sprintf("not a valid DNS name: internationalised names are given in their ASCII (punycode) form, here %q", a)
			}
			return "not a valid DNS name: internationalised names are given in their ASCII (punycode, xn--) form"
		}
	}
	return "not a valid DNS name (letters, digits and hyphens in dot-separated labels)"
}

// ValidDNSName reports whether s is a lower-case DNS host name (RFC 1123
// section 2.1): dot-separated labels of [a-z0-9-], 1..63 characters each,
// not starting or ending with '-', 253 characters at most, no trailing dot.
// IP literals and all-numeric top labels are refused: a SIP domain owned by
// a network is a name.
func ValidDNSName(s string) bool {
	if len(s) == 0 || len(s) > maxDNSNameLen {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	top := labels[len(labels)-1]
	if strings.Trim(top, "0123456789") == "" {
		return false
	}
	return true
}

// validEdgeURI checks a SIP or SIPS URI of the form
// sip[s]:host[:port][;param[=value]]... (RFC 3261 section 19.1.1) with no
// user part and no headers: an edge is a host to send to. It returns "" if
// the URI is fine, else the reason.
func validEdgeURI(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '<' || r == '>' || r == '"' }) {
		return "contains whitespace, control characters or delimiters"
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || (!strings.EqualFold(scheme, "sip") && !strings.EqualFold(scheme, "sips")) {
		return "scheme must be sip: or sips:"
	}
	if strings.ContainsAny(rest, "@?") {
		return "user part and headers are not allowed in an edge URI"
	}
	hostport, params, _ := strings.Cut(rest, ";")
	var host, port string
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return "unterminated IPv6 reference"
		}
		host = hostport[1:end]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "invalid IPv6 address"
		}
		after := hostport[end+1:]
		if after != "" {
			if after[0] != ':' {
				return "garbage after IPv6 reference"
			}
			port = after[1:]
			if port == "" {
				return "empty port"
			}
		}
	} else {
		host = hostport
		if i := strings.IndexByte(hostport, ':'); i >= 0 {
			host, port = hostport[:i], hostport[i+1:]
			if port == "" {
				return "empty port"
			}
		}
		if host == "" {
			return "missing host"
		}
		if a, err := netip.ParseAddr(host); err == nil {
			if !a.Is4() {
				return "IPv6 addresses must be in brackets"
			}
		} else if !ValidDNSName(strings.ToLower(host)) {
			return "host is not a valid DNS name or IPv4 address"
		}
	}
	if port != "" {
		if err := validPort(port); err != "" {
			return err
		}
	}
	if params != "" {
		for _, p := range strings.Split(params, ";") {
			name, value, hasValue := strings.Cut(p, "=")
			if name == "" || !isToken(name) {
				return fmt.Sprintf("bad parameter %q", p)
			}
			if hasValue && (value == "" || !isToken(value)) {
				return fmt.Sprintf("bad parameter value %q", p)
			}
		}
	}
	return ""
}

func validPort(p string) string {
	if len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return "port must be a number in 1..65535"
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "port must be a number in 1..65535"
	}
	return ""
}

// isToken: RFC 3261 section 25.1 token characters (a conservative reading of
// uri-parameter, which also allows escapes we have no use for at an edge).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validateIdentity(id *hubv1.Identity) error {
	for i, caPEM := range id.GetCaPem() {
		f := fmt.Sprintf("network.identity.ca_pem[%d]", i)
		if err := validCAPEM(caPEM); err != "" {
			return invalid(f, "", err)
		}
	}
	seen := map[string]bool{}
	for i, p := range id.GetPins() {
		f := fmt.Sprintf("network.identity.pins[%d]", i)
		lp := strings.ToLower(p)
		if b, err := hex.DecodeString(lp); err != nil || len(b) != 32 {
			return invalid(f, p, "must be 64 hex characters (SHA-256 of the certificate DER)")
		}
		if seen[lp] {
			return invalid(f, p, "duplicate pin")
		}
		seen[lp] = true
	}
	if err := validPrefixes("network.identity.cidrs", id.GetCidrs()); err != nil {
		return err
	}
	// tls_cidrs is newer than every logged command, so checking it on apply
	// cannot change how an old log replays.
	return validPrefixes("network.identity.tls_cidrs", id.GetTlsCidrs())
}

// Bounds of a network's rate limits (RateLimit.per_second, .burst).
const (
	MaxRatePerSecond = 1e6
	MaxRateBurst     = 1e7
)

// validateRateLimits checks Network.rate_limits: a known service (or
// SERVICE_UNSPECIFIED, all traffic) at most once each, a finite rate in
// [0, MaxRatePerSecond] and a burst up to MaxRateBurst. rate_limits is
// newer than every logged command, so checking it on apply cannot change
// how an old log replays.
func validateRateLimits(rls []*hubv1.RateLimit) error {
	seen := map[hubv1.Service]bool{}
	for i, rl := range rls {
		f := fmt.Sprintf("network.rate_limits[%d]", i)
		svc := rl.GetService()
		if _, ok := hubv1.Service_name[int32(svc)]; !ok {
			return invalid(f+".service", svc.String(), "unknown service")
		}
		if seen[svc] {
			return invalid(f+".service", svc.String(), "more than one limit for this service")
		}
		seen[svc] = true
		ps := rl.GetPerSecond()
		if math.IsNaN(ps) || math.IsInf(ps, 0) || ps < 0 || ps > MaxRatePerSecond {
			return invalid(f+".per_second", strconv.FormatFloat(ps, 'g', -1, 64), fmt.Sprintf("must be a number from 0 (unlimited) to %g", MaxRatePerSecond))
		}
		if rl.GetBurst() > MaxRateBurst {
			return invalid(f+".burst", strconv.FormatUint(uint64(rl.GetBurst()), 10), fmt.Sprintf("must be at most %g", MaxRateBurst))
		}
	}
	return nil
}

func validPrefixes(field string, prefixes []string) error {
	seen := map[string]bool{}
	for i, c := range prefixes {
		f := fmt.Sprintf("%s[%d]", field, i)
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return invalid(f, c, "not a CIDR prefix (e.g. 192.0.2.0/24 or 2001:db8::/32)")
		}
		k := p.Masked().String()
		if seen[k] {
			return invalid(f, c, "duplicate prefix")
		}
		seen[k] = true
	}
	return nil
}

// validCAPEM requires one or more PEM blocks, every one a parseable
// CERTIFICATE, and nothing but whitespace around them.
func validCAPEM(s string) string {
	rest := []byte(s)
	n := 0
	for {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		rest = r
		if b.Type != "CERTIFICATE" {
			return fmt.Sprintf("PEM block %d is %q, want CERTIFICATE", n, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Sprintf("PEM block %d: %v", n, err)
		}
		n++
	}
	if n == 0 {
		return "no PEM CERTIFICATE block"
	}
	if strings.TrimSpace(string(rest)) != "" {
		return "trailing data after the last PEM block"
	}
	return ""
}

func validServices(field string, svcs []hubv1.Service) error {
	for i, s := range svcs {
		if _, ok := hubv1.Service_name[int32(s)]; !ok || s == hubv1.Service_SERVICE_UNSPECIFIED {
			return invalid(fmt.Sprintf("%s[%d]", field, i), s.String(), "unknown service")
		}
	}
	return nil
}

// AllServices lists every known service, sorted. PolicyAllow with no
// services means these.
func AllServices() []hubv1.Service {
	out := make([]hubv1.Service, 0, len(hubv1.Service_name))
	for v := range hubv1.Service_name {
		if v != 0 {
			out = append(out, hubv1.Service(v))
		}
	}
	slices.Sort(out)
	return out
}

func validateNode(n *hubv1.Node) error {
	if n == nil {
		return invalid("node", "", "missing")
	}
	if !ValidID(n.GetId()) {
		return invalid("node.id", n.GetId(), "must be 1..63 characters of [a-z0-9-]")
	}
	if err := validHostPort(n.GetRaftAddr()); err != "" {
		return invalid("node.raft_addr", n.GetRaftAddr(), err)
	}
	if n.GetAdminAddr() != "" {
		if err := validHostPort(n.GetAdminAddr()); err != "" {
			return invalid("node.admin_addr", n.GetAdminAddr(), err)
		}
	}
	for i, a := range n.GetSipAddrs() {
		if err := validHostPort(a); err != "" {
			return invalid(fmt.Sprintf("node.sip_addrs[%d]", i), a, err)
		}
	}
	if k := n.GetPublicKey(); len(k) != 0 && len(k) != ed25519.PublicKeySize {
		return invalid("node.public_key", "", fmt.Sprintf("must be %d bytes (Ed25519), got %d", ed25519.PublicKeySize, len(k)))
	}
	return nil
}

// validHostPort checks a dialable "host:port" with a non-zero port and a
// host that is a name or an IP address other than the unspecified one.
func validHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "must be host:port"
	}
	if e := validPort(port); e != "" {
		return e
	}
	if host == "" {
		return "missing host"
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.IsUnspecified() {
			return "unspecified address is not routable"
		}
	} else if !ValidDNSName(strings.ToLower(host)) && host != "localhost" {
		return "host is not a valid DNS name or IP address"
	}
	return ""
}

// CheckCommand runs every check on cmd against s: the command's own shape
// (version, operation, fields, ValidateNetwork) and its consistency with the
// current state. It is deterministic (no clock, no I/O), so the FSM can call
// it again on apply and every replica reaches the same verdict: admin
// handlers call it before proposing to fail fast, and the FSM calls it on
// apply because a concurrent proposal may have won in between.
//
// Errors wrap ErrUnknownVersion, ErrInvalid (bad fields; *FieldError),
// ErrNotFound (the network or node a command names does not exist) or
// ErrAlreadyExists (an id, domain, pin or lab prefix already belongs to
// another network).
//
// RemoveNetwork is allowed even when the network appears as a source in
// other networks' policies: applying it removes those rules too (and its own
// policy), so no dangling reference survives. Denying an absent rule is a
// successful no-op; denying for an unknown source network is ErrNotFound.
func CheckCommand(s *State, cmd *hubv1.Command) error {
	if cmd == nil {
		return invalid("command", "", "missing")
	}
	if cmd.GetVersion() != CommandVersion {
		return fmt.Errorf("command version %d: %w", cmd.GetVersion(), ErrUnknownVersion)
	}
	if cmd.GetTimeUnixNano() <= 0 {
		return invalid("command.time_unix_nano", strconv.FormatInt(cmd.GetTimeUnixNano(), 10), "must be a positive proposer timestamp")
	}
	if len(cmd.GetActor()) > MaxActorLen || !utf8.ValidString(cmd.GetActor()) {
		return invalid("command.actor", cmd.GetActor(), fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxActorLen))
	}
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_AddNetwork:
		n := op.AddNetwork.GetNetwork()
		if err := ValidateNetwork(n); err != nil {
			return err
		}
		if s.Network(n.GetId()) != nil {
			return fmt.Errorf("network %q: %w", n.GetId(), ErrAlreadyExists)
		}
		return checkOwnership(s, n)
	case *hubv1.Command_UpdateNetwork:
		n := op.UpdateNetwork.GetNetwork()
		if err := ValidateNetwork(n); err != nil {
			return err
		}
		cur := s.Network(n.GetId())
		if cur == nil {
			return fmt.Errorf("network %q: %w", n.GetId(), ErrNotFound)
		}
		if want := op.UpdateNetwork.GetIfUpdatedUnixNano(); want != 0 && cur.GetUpdatedUnixNano() != want {
			return fmt.Errorf("network %q changed since it was read (updated at %d, expected %d); read it again and retry: %w",
				n.GetId(), cur.GetUpdatedUnixNano(), want, ErrFailedPrecondition)
		}
		return checkOwnership(s, n)
	case *hubv1.Command_SetNetworkStatus:
		st := op.SetNetworkStatus.GetStatus()
		if st != hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE && st != hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED {
			return invalid("set_network_status.status", st.String(), "must be ACTIVE or SUSPENDED")
		}
		return needNetwork(s, "set_network_status.id", op.SetNetworkStatus.GetId())
	case *hubv1.Command_RemoveNetwork:
		return needNetwork(s, "remove_network.id", op.RemoveNetwork.GetId())
	case *hubv1.Command_PolicyAllow:
		a := op.PolicyAllow
		return checkPolicy(s, "policy_allow", a.GetDestination(), a.GetSource(), a.GetAll(), a.GetServices())
	case *hubv1.Command_PolicyDeny:
		d := op.PolicyDeny
		return checkPolicy(s, "policy_deny", d.GetDestination(), d.GetSource(), d.GetAll(), d.GetServices())
	case *hubv1.Command_PutNode:
		return validateNode(op.PutNode.GetNode())
	case *hubv1.Command_RemoveNode:
		id := op.RemoveNode.GetId()
		if !ValidID(id) {
			return invalid("remove_node.id", id, "must be 1..63 characters of [a-z0-9-]")
		}
		if s.Node(id) == nil {
			return fmt.Errorf("node %q: %w", id, ErrNotFound)
		}
		return nil
	case *hubv1.Command_RestoreState:
		return checkRestoreState(op.RestoreState.GetState()) // restorestate.go
	case *hubv1.Command_RevokeCertificate, *hubv1.Command_RecordJoinToken, *hubv1.Command_RevokeJoinToken:
		_, err := checkIdentityCommand(s, cmd) // identity.go
		return err
	case *hubv1.Command_QueueStore, *hubv1.Command_QueueRemove:
		return checkQueueCommand(s, cmd) // queue.go
	case *hubv1.Command_PutList, *hubv1.Command_DeleteList, *hubv1.Command_AddListEntries,
		*hubv1.Command_RemoveListEntries, *hubv1.Command_SetViewSharing:
		_, err := checkListCommand(s, cmd) // lists.go
		return err
	case *hubv1.Command_PutRoom, *hubv1.Command_DeleteRoom, *hubv1.Command_PutRoomMember,
		*hubv1.Command_RemoveRoomMember, *hubv1.Command_BanRoom, *hubv1.Command_UnbanRoom,
		*hubv1.Command_PostRoomMessage, *hubv1.Command_RoomFanoutProgress, *hubv1.Command_ClaimRoomFanout:
		return checkRoomCommand(s, cmd) // rooms.go
	case *hubv1.Command_PutWarrant, *hubv1.Command_DeleteWarrant, *hubv1.Command_SetCapture:
		return checkInterceptCommand(s, cmd) // intercept.go
	case nil:
		return invalid("command.op", "", "no operation")
	default:
		return invalid("command.op", fmt.Sprintf("%T", op), "unknown operation")
	}
}

func needNetwork(s *State, field, id string) error {
	if !ValidID(id) {
		return invalid(field, id, "must be 1..63 characters of [a-z0-9-]")
	}
	if s.Network(id) == nil {
		return fmt.Errorf("%s: network %q: %w", field, id, ErrNotFound)
	}
	return nil
}

// checkOwnership refuses a domain, pin or lab prefix that another network
// already holds: each must attribute traffic to exactly one network.
func checkOwnership(s *State, n *hubv1.Network) error {
	for i, d := range n.GetDomains() {
		if o := s.DomainOwner(d); o != nil && o.GetId() != n.GetId() {
			return fmt.Errorf("network.domains[%d] %q: %w: owned by network %q", i, d, ErrAlreadyExists, o.GetId())
		}
	}
	// Walk the candidate's values in order and the networks sorted by id, so
	// every replica names the same owner in the error.
	for i, pin := range n.GetIdentity().GetPins() {
		lp := strings.ToLower(pin)
		for _, on := range s.networks {
			if on.GetId() != n.GetId() && s.byID[on.GetId()].Pins[lp] {
				return fmt.Errorf("network.identity.pins[%d] %q: %w: pinned by network %q", i, lp, ErrAlreadyExists, on.GetId())
			}
		}
	}
	for i, c := range n.GetIdentity().GetCidrs() {
		p, _ := netip.ParsePrefix(c) // ValidateNetwork checked it
		p = p.Masked()
		for _, on := range s.networks {
			if on.GetId() == n.GetId() {
				continue
			}
			if slices.Contains(s.byID[on.GetId()].CIDRs, p) {
				return fmt.Errorf("network.identity.cidrs[%d] %q: %w: used by network %q", i, p, ErrAlreadyExists, on.GetId())
			}
		}
	}
	return nil
}

func checkPolicy(s *State, op, dst, src string, all bool, svcs []hubv1.Service) error {
	if err := needNetwork(s, op+".destination", dst); err != nil {
		return err
	}
	if all == (src != "") {
		return invalid(op, "", "exactly one of source and all must be set")
	}
	if src != "" {
		if src == dst {
			return invalid(op+".source", src, "a network always reaches itself")
		}
		if err := needNetwork(s, op+".source", src); err != nil {
			return err
		}
	}
	return validServices(op+".services", svcs)
}
