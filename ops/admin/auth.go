package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"clearhub/hub/routing"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// ServerTLSConfig is the admin listener's TLS configuration: it presents
// nodeCert followed by the CA certificate (joiners pin the CA's fingerprint
// from their token, so the CA must be in the chain) and verifies a client
// certificate against the cluster CA, or as a member network's, when one
// is given (NewGRPCServer does the checking). Which role a method
// needs is decided per RPC by the interceptors, so one port serves
// operators, nodes and certificate-less joiners. NewGRPCServer adds the
// revocation check to it.
func ServerTLSConfig(ca *pki.CA, nodeCert tls.Certificate) *tls.Config {
	cert := nodeCert
	cert.Certificate = append([][]byte(nil), nodeCert.Certificate...)
	if n := len(cert.Certificate); n == 0 || !bytesEqual(cert.Certificate[n-1], ca.Cert.Raw) {
		cert.Certificate = append(cert.Certificate, ca.Cert.Raw)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		NextProtos:   []string{"h2"},
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// roleSet is a set of admin roles. The roles are not a ladder (an auditor
// reads the audit ledger but not the networks, a readonly operator the
// networks but not the ledger), so each method lists who may call it
// rather than a minimum.
type roleSet uint8

const (
	rAdmin roleSet = 1 << iota
	rOperator
	rAuditor
	rReadonly
	// rLawfulIntercept is InterceptService's alone (intercept.go); it
	// is deliberately not in rAll.
	rLawfulIntercept

	rAll = rAdmin | rOperator | rAuditor | rReadonly
)

var roleBits = map[pki.AdminRole]roleSet{
	pki.AdminRoleAdmin:    rAdmin,
	pki.AdminRoleOperator: rOperator,
	pki.AdminRoleAuditor:  rAuditor,
	pki.AdminRoleReadonly: rReadonly,

	pki.AdminRoleLawfulIntercept: rLawfulIntercept,
}

func (r roleSet) has(role pki.AdminRole) bool { return r&roleBits[role] != 0 }

// String lists the roles in r, e.g. "admin or operator".
func (r roleSet) String() string {
	var names []string
	for _, role := range pki.AdminRoles {
		if r.has(role) {
			names = append(names, string(role))
		}
	}
	switch len(names) {
	case 0:
		return "(no role)"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// access is who may call one method.
type access struct {
	// kind is the certificate role the caller needs; "" admits callers
	// without a certificate (the join token or nothing is the credential).
	kind pki.Role
	// roles are the admin roles allowed, for kind RoleOperator.
	roles roleSet
	// change marks methods that change the cluster: each call is logged
	// with its outcome.
	change bool
}

func opAccess(roles roleSet, change bool) access {
	return access{kind: pki.RoleOperator, roles: roles, change: change}
}

// methodAccess is the one table of who may call what, by full gRPC method
// name. A method missing here is refused to everyone (TestAccessTableCovers
// fails first, so a new RPC cannot be added without a decision).
//
//	admin     everything, cluster membership and revocations included
//	operator  networks, policy, every read, audit reads
//	auditor   audit reads and exports only, plus cluster status
//	readonly  networks, policy and status reads; no audit bodies or exports
var methodAccess = map[string]access{
	// Networks and policy: operators change them, readonly reads them.
	hubv1.AdminService_AddNetwork_FullMethodName:     opAccess(rAdmin|rOperator, true),
	hubv1.AdminService_UpdateNetwork_FullMethodName:  opAccess(rAdmin|rOperator, true),
	hubv1.AdminService_SuspendNetwork_FullMethodName: opAccess(rAdmin|rOperator, true),
	hubv1.AdminService_ResumeNetwork_FullMethodName:  opAccess(rAdmin|rOperator, true),
	hubv1.AdminService_RemoveNetwork_FullMethodName:  opAccess(rAdmin|rOperator, true),
	hubv1.AdminService_GetNetwork_FullMethodName:     opAccess(rAdmin|rOperator|rReadonly, false),
	hubv1.AdminService_ListNetworks_FullMethodName:   opAccess(rAdmin|rOperator|rReadonly, false),
	hubv1.AdminService_AllowPolicy_FullMethodName:    opAccess(rAdmin|rOperator, true),
	hubv1.AdminService_DenyPolicy_FullMethodName:     opAccess(rAdmin|rOperator, true),
	hubv1.AdminService_ListPolicies_FullMethodName:   opAccess(rAdmin|rOperator|rReadonly, false),

	// Cluster membership: admin only; status for everyone.
	hubv1.AdminService_CreateJoinToken_FullMethodName: opAccess(rAdmin, true),
	hubv1.AdminService_AddNode_FullMethodName:         opAccess(rAdmin, true),
	hubv1.AdminService_RemoveNode_FullMethodName:      opAccess(rAdmin, true),
	hubv1.AdminService_RevokeJoinToken_FullMethodName: opAccess(rAdmin, true),
	hubv1.AdminService_ListJoinTokens_FullMethodName:  opAccess(rAdmin|rOperator|rReadonly, false),
	hubv1.AdminService_ClusterStatus_FullMethodName:   opAccess(rAll, false),

	// Cluster maintenance: admin only. The state holds member CAs and the
	// whole policy, so its export is for admin and operator.
	hubv1.AdminService_TransferLeader_FullMethodName: opAccess(rAdmin, true),
	hubv1.AdminService_DrainNode_FullMethodName:      opAccess(rAdmin, true),
	hubv1.AdminService_GetState_FullMethodName:       opAccess(rAdmin|rOperator, false),
	hubv1.AdminService_RestoreState_FullMethodName:   opAccess(rAdmin, true),

	// Audit ledger. A checkpoint (size, root, signature) carries no entry,
	// so readonly may watch the log grow; proofs carry entries and are for
	// the audit roles.
	hubv1.AdminService_GetCheckpoint_FullMethodName:       opAccess(rAll, false),
	hubv1.AdminService_ListCheckpoints_FullMethodName:     opAccess(rAll, false),
	hubv1.AdminService_GetInclusionProof_FullMethodName:   opAccess(rAdmin|rOperator|rAuditor, false),
	hubv1.AdminService_GetConsistencyProof_FullMethodName: opAccess(rAdmin|rOperator|rAuditor, false),
	hubv1.AdminService_ExportAudit_FullMethodName:         opAccess(rAdmin|rOperator|rAuditor, false),
	hubv1.AdminService_TailAudit_FullMethodName:           opAccess(rAdmin|rOperator|rAuditor, false),
	hubv1.AdminService_ScrubAudit_FullMethodName:          opAccess(rAdmin|rOperator|rAuditor, false),

	// Operator identities: revoking is admin's; the list is public to
	// every operator (it names no secret).
	hubv1.AdminService_RevokeCertificate_FullMethodName: opAccess(rAdmin, true),
	hubv1.AdminService_ListRevocations_FullMethodName:   opAccess(rAll, false),
	hubv1.AdminService_WhoAmI_FullMethodName:            opAccess(rAll|rLawfulIntercept, false),

	// The node's own log level: admin only (debug logs carry member
	// traffic and cost disk).
	hubv1.AdminService_SetLogLevel_FullMethodName: opAccess(rAdmin, true),

	// Resource lists (lists.go): operators change them, readonly reads
	// them; a view-sharing grant is a policy change.
	hubv1.ListService_CreateList_FullMethodName:        opAccess(rAdmin|rOperator, true),
	hubv1.ListService_DeleteList_FullMethodName:        opAccess(rAdmin|rOperator, true),
	hubv1.ListService_AddListEntries_FullMethodName:    opAccess(rAdmin|rOperator, true),
	hubv1.ListService_RemoveListEntries_FullMethodName: opAccess(rAdmin|rOperator, true),
	hubv1.ListService_SetViewSharing_FullMethodName:    opAccess(rAdmin|rOperator, true),
	hubv1.ListService_GetList_FullMethodName:           opAccess(rAdmin|rOperator|rReadonly, false),
	hubv1.ListService_ListLists_FullMethodName:         opAccess(rAdmin|rOperator|rReadonly, false),

	// Chat rooms (rooms.go): operators change them, readonly reads them.
	// History carries message bodies, so it is not for readonly.
	hubv1.RoomService_CreateRoom_FullMethodName:       opAccess(rAdmin|rOperator, true),
	hubv1.RoomService_DeleteRoom_FullMethodName:       opAccess(rAdmin|rOperator, true),
	hubv1.RoomService_AddRoomMember_FullMethodName:    opAccess(rAdmin|rOperator, true),
	hubv1.RoomService_RemoveRoomMember_FullMethodName: opAccess(rAdmin|rOperator, true),
	hubv1.RoomService_SetRoomRole_FullMethodName:      opAccess(rAdmin|rOperator, true),
	hubv1.RoomService_BanRoom_FullMethodName:          opAccess(rAdmin|rOperator, true),
	hubv1.RoomService_UnbanRoom_FullMethodName:        opAccess(rAdmin|rOperator, true),
	hubv1.RoomService_GetRoom_FullMethodName:          opAccess(rAdmin|rOperator|rReadonly, false),
	hubv1.RoomService_ListRooms_FullMethodName:        opAccess(rAdmin|rOperator|rReadonly, false),
	hubv1.RoomService_RoomHistory_FullMethodName:      opAccess(rAdmin|rOperator|rAuditor, false),
	hubv1.RoomService_UpdateRoom_FullMethodName:       opAccess(rAdmin|rOperator, true),
	hubv1.RoomService_SetRoomMember_FullMethodName:    opAccess(rAdmin|rOperator, true),

	// Store-and-forward queues (queue.go): operators retry and drop,
	// readonly reads the depths.
	hubv1.QueueService_ListQueues_FullMethodName: opAccess(rAdmin|rOperator|rReadonly, false),
	hubv1.QueueService_ShowQueue_FullMethodName:  opAccess(rAdmin|rOperator|rReadonly, false),
	hubv1.QueueService_RetryQueue_FullMethodName: opAccess(rAdmin|rOperator, true),
	hubv1.QueueService_DropQueued_FullMethodName: opAccess(rAdmin|rOperator, true),

	// Operator web console (ops/console): every operator role may log a
	// browser in as itself; what the console then reads and changes goes
	// through this table under the same name and role. Logged like a
	// change: a login link is a credential.
	hubv1.ConsoleService_CreateLogin_FullMethodName: opAccess(rAll, true),

	// Lawful interception (intercept.go): the lawful-intercept role and
	// nobody else, not even admin; warrant changes are audited in the
	// interception ledger, not the main one.
	hubv1.InterceptService_PutWarrant_FullMethodName:           opAccess(rLawfulIntercept, true),
	hubv1.InterceptService_DeleteWarrant_FullMethodName:        opAccess(rLawfulIntercept, true),
	hubv1.InterceptService_ListWarrants_FullMethodName:         opAccess(rLawfulIntercept, false),
	hubv1.InterceptService_ExportInterceptAudit_FullMethodName: opAccess(rLawfulIntercept, false),
	hubv1.InterceptService_InterceptCheckpoint_FullMethodName:  opAccess(rLawfulIntercept, false),
	// SIP capture (intercept.go): an operator's debugging switch.
	hubv1.CaptureService_SetCapture_FullMethodName:    opAccess(rAdmin|rOperator, true),
	hubv1.CaptureService_CaptureStatus_FullMethodName: opAccess(rAdmin|rOperator|rReadonly, false),

	// Node to node.
	hubv1.ClusterInternal_Propose_FullMethodName:          {kind: pki.RoleNode},
	hubv1.ClusterInternal_AddVoter_FullMethodName:         {kind: pki.RoleNode, change: true},
	hubv1.ClusterInternal_RemoveServer_FullMethodName:     {kind: pki.RoleNode, change: true},
	hubv1.ClusterInternal_LocalStatus_FullMethodName:      {kind: pki.RoleNode},
	hubv1.ClusterInternal_ExportLocalAudit_FullMethodName: {kind: pki.RoleNode},
	hubv1.ClusterInternal_SetDraining_FullMethodName:      {kind: pki.RoleNode, change: true},

	// The join token is the credential.
	hubv1.JoinService_Join_FullMethodName: {change: true},

	// Member networks auditing their own traffic (member.go): member
	// certificates only. Operators have ExportAudit with any filter; here
	// every answer is scoped to the network the certificate proves.
	hubv1.MemberAuditService_Export_FullMethodName:              {kind: pki.RoleMember},
	hubv1.MemberAuditService_Checkpoints_FullMethodName:         {kind: pki.RoleMember},
	hubv1.MemberAuditService_GetConsistencyProof_FullMethodName: {kind: pki.RoleMember},
	hubv1.MemberAuditService_WatchCheckpoints_FullMethodName:    {kind: pki.RoleMember},
}

// accessFor returns the access rule of fullMethod; ok is false for methods
// nobody may call.
func accessFor(fullMethod string) (a access, ok bool) {
	if a, ok := methodAccess[fullMethod]; ok {
		return a, true
	}
	switch {
	case strings.HasPrefix(fullMethod, "/grpc.reflection.v1.ServerReflection/"),
		strings.HasPrefix(fullMethod, "/grpc.reflection.v1alpha.ServerReflection/"):
		// The schema is no secret to any operator.
		return opAccess(rAll, false), true
	case strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/"):
		return access{}, true
	}
	return access{}, false
}

// caller is the authenticated client of one RPC.
type caller struct {
	Name   string        // certificate common name; "" for certificate-less callers
	Kind   pki.Role      // certificate role; "" for certificate-less callers
	Role   pki.AdminRole // admin role of an operator certificate, else ""
	Serial string        // canonical serial (raft.SerialString); "" without a certificate
	// Network is the member network a member certificate proves (Kind
	// RoleMember); "" for every other caller.
	Network string
}

// actor is how the audit trail and the logs name the caller:
// "alice;role=auditor" (the ';' keeps the ledger's user filter matching
// "alice"), "node-b;role=node", or "" without a certificate.
func (c caller) actor() string {
	switch {
	case c.Name == "":
		return ""
	case c.Role != "":
		return c.Name + ";role=" + string(c.Role)
	case c.Kind != "":
		return c.Name + ";role=" + kindName(c.Kind)
	}
	return c.Name
}

// roleLabel is the caller's role for log lines.
func (c caller) roleLabel() string {
	switch {
	case c.Role != "":
		return string(c.Role)
	case c.Kind != "":
		return kindName(c.Kind)
	}
	return "none"
}

func kindName(k pki.Role) string {
	if n := strings.TrimPrefix(string(k), "clearhub-"); n != "" {
		return n
	}
	return "(none)"
}

type callerKey struct{}

// authorize decides whether the peer in ctx may call fullMethod, given the
// current cluster state (revocations, member identities), and returns ctx
// carrying the caller. The caller is returned even on refusal, for the log
// line. The certificate is classified again here (not only at the
// handshake), so a server built with other credentials still cannot be
// fooled by an unverified chain.
func (s *Server) authorize(ctx context.Context, fullMethod string) (context.Context, caller, access, error) {
	state := s.store.State()
	a, ok := accessFor(fullMethod)
	c := caller{}
	var leaf *x509.Certificate
	var id clientID
	if cs, has := connState(ctx); has && len(cs.PeerCertificates) > 0 {
		leaf = cs.PeerCertificates[0]
		id = s.identifyClient(state, cs)
		c = caller{Name: leaf.Subject.CommonName, Kind: id.kind, Serial: raft.SerialString(leaf.SerialNumber)}
		if id.member != nil {
			c.Network = id.member.GetId()
		}
		if c.Kind == pki.RoleOperator {
			// An unusable role (unknown, two of them) leaves Role empty,
			// which no table entry admits.
			c.Role, _ = pki.AdminRoleOf(leaf)
		}
	}
	if !ok {
		return nil, c, a, permissionDenied("method %s is not served", fullMethod)
	}
	if leaf != nil {
		if id.refused != "" {
			return nil, c, a, unauthenticated("client certificate %q refused: %s", leaf.Subject.CommonName, id.refused)
		}
		// Also checked at the handshake (NewGRPCServer); here for
		// connections made before the revocation was applied.
		if r := state.Revoked(leaf); r != nil {
			return nil, c, a, unauthenticated("certificate revoked: %s", describeRevocation(r, leaf))
		}
	}
	if c.Network != "" && a.kind != pki.RoleMember {
		// A member's certificate opens the member API and nothing else,
		// whatever its issuer wrote into it.
		return nil, c, a, permissionDenied("member certificate of network %s may not call %s: members may call only MemberAuditService",
			c.Network, methodLabel(fullMethod))
	}
	if a.kind != "" {
		if leaf == nil {
			return nil, c, a, unauthenticated("client certificate required")
		}
		if c.Kind != a.kind {
			return nil, c, a, permissionDenied("certificate role %s may not call %s", kindName(c.Kind), serviceName(fullMethod))
		}
		if a.kind == pki.RoleMember {
			if c.Network == "" {
				return nil, c, a, permissionDenied("certificate %q is not registered for any member network", c.Name)
			}
			// The SIP plane's source binding (Identity.tls_cidrs) holds
			// here too: a stolen key alone does not open the member API.
			if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
				ap, err := netip.ParseAddrPort(p.Addr.String())
				if err != nil || !id.member.TLSSourceAllowed(ap.Addr()) {
					return nil, c, a, permissionDenied("certificate of network %s presented from %s, outside its tls_cidrs", c.Network, p.Addr)
				}
			}
		}
		if a.kind == pki.RoleOperator && !a.roles.has(c.Role) {
			if _, err := pki.AdminRoleOf(leaf); err != nil {
				return nil, c, a, permissionDenied("%s may not call %s: %v", c.Name, methodLabel(fullMethod), err)
			}
			return nil, c, a, permissionDenied("%s (role %s) may not call %s: it needs role %s",
				c.Name, c.Role, methodLabel(fullMethod), a.roles)
		}
	}
	return context.WithValue(ctx, callerKey{}, c), c, a, nil
}

// maxClientChain bounds the certificates a client may present, so path
// building stays cheap whatever a client sends.
const maxClientChain = 8

// clientID is what a presented certificate chain proves.
type clientID struct {
	// kind is the certificate role: the role a cluster-CA certificate
	// carries, or RoleMember for a certificate attributed to a member
	// network (whatever role its issuer wrote into it).
	kind pki.Role
	// member is the network the chain proves (routing.IdentifyCert, the
	// SIP plane's attribution), for kind RoleMember.
	member *raft.NetworkView
	// refused says why the chain is refused; "" when accepted.
	refused string
}

// identifyClient classifies a client chain. A chain to the cluster CA is a
// node or an operator by its role; only such a chain ever carries those
// roles, so a member CA can never issue an operator certificate. Anything
// else must be attributable to a member network exactly as the SIP plane
// attributes traffic (a registered CA or pin, and a subjectAltName among
// the network's domains and edge hosts).
func (s *Server) identifyClient(st *raft.State, cs tls.ConnectionState) clientID {
	chain := cs.PeerCertificates
	if len(chain) == 0 {
		return clientID{}
	}
	if len(chain) > maxClientChain {
		return clientID{refused: fmt.Sprintf("%d certificates presented (at most %d)", len(chain), maxClientChain)}
	}
	cluster := s.clusterVerified(cs)
	if cluster {
		if k := pki.RoleOf(chain[0]); k == pki.RoleNode || k == pki.RoleOperator {
			return clientID{kind: k}
		}
	}
	if v, _ := routing.IdentifyCert(st, chain, x509.ExtKeyUsageClientAuth); v != nil {
		return clientID{kind: pki.RoleMember, member: v}
	}
	if cluster {
		// A cluster-CA certificate of another role (a lab member
		// certificate no network lists): kept, with no network.
		return clientID{kind: pki.RoleOf(chain[0])}
	}
	return clientID{refused: "not issued by the cluster CA and not registered for any member network"}
}

// clusterVerified reports whether the chain verifies to the cluster CA for
// client authentication.
func (s *Server) clusterVerified(cs tls.ConnectionState) bool {
	if len(cs.VerifiedChains) > 0 {
		// The TLS stack verified it (a configuration that kept
		// VerifyClientCertIfGiven): only a chain ending at the cluster CA
		// counts.
		for _, ch := range cs.VerifiedChains {
			if len(ch) > 0 && ch[len(ch)-1].Equal(s.ca.Cert) {
				return true
			}
		}
		return false
	}
	chain := cs.PeerCertificates
	var inter *x509.CertPool
	if len(chain) > 1 {
		inter = x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: s.clusterRoots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
}

// describeRevocation is the refusal text for a revoked certificate.
func describeRevocation(r *hubv1.Revocation, leaf *x509.Certificate) string {
	what := fmt.Sprintf("serial %s", raft.SerialString(leaf.SerialNumber))
	if r.GetSerial() == "" {
		what = fmt.Sprintf("every certificate named %q issued before", r.GetName())
	}
	msg := fmt.Sprintf("%q: %s revoked at %s", leaf.Subject.CommonName, what,
		time.Unix(0, r.GetRevokedUnixNano()).UTC().Format(time.RFC3339))
	if r.GetReason() != "" {
		msg += " (" + r.GetReason() + ")"
	}
	return msg
}

// serviceName turns "/clearhub.v1.AdminService/AddNetwork" into
// "AdminService".
func serviceName(fullMethod string) string {
	l := methodLabel(fullMethod)
	if i := strings.IndexByte(l, '/'); i >= 0 {
		return l[:i]
	}
	return l
}

// verifiedLeaf returns the client certificate of an authorized call, or
// nil. The handshake (NewGRPCServer) and authorize both classified it; use
// it only after callerFrom succeeded.
func verifiedLeaf(ctx context.Context) *x509.Certificate {
	cs, ok := connState(ctx)
	if !ok || len(cs.PeerCertificates) == 0 {
		return nil
	}
	return cs.PeerCertificates[0]
}

// connState is the TLS state of the call's connection.
func connState(ctx context.Context) (tls.ConnectionState, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return tls.ConnectionState{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return tls.ConnectionState{}, false
	}
	return ti.State, true
}

// callerFrom returns the caller the interceptor authorized. Handlers call
// it so that a grpc.Server built without the interceptors serves nothing.
func callerFrom(ctx context.Context) (caller, error) {
	c, ok := ctx.Value(callerKey{}).(caller)
	if !ok {
		return caller{}, unauthenticated("admin: request not authorized (server built without admin interceptors)")
	}
	return c, nil
}

// withRevocationCheck returns a copy of cfg that refuses, at the TLS
// handshake, a client certificate this node's current state lists as
// revoked. The handshake cannot say why (the client sees "bad
// certificate"); the log line here does.
//
// A configuration that verifies client certificates against the cluster
// CA if given (ServerTLSConfig) is turned into one that requests them and
// verifies them here (identifyClient): a chain to the cluster CA, or a
// member network's certificate, which chains to a member CA or is pinned
// in the replicated state (the member API, member.go). No CA names are
// sent in the request (RFC 8446 section 4.2.4): a client would then
// withhold a member certificate those names do not cover.
func (s *Server) withRevocationCheck(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	if c.ClientAuth == tls.VerifyClientCertIfGiven {
		c.ClientAuth = tls.RequestClientCert
		c.ClientCAs = nil
	}
	prev := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		leaf := cs.PeerCertificates[0]
		st := s.store.State()
		if id := s.identifyClient(st, cs); id.refused != "" {
			s.log.Warn("admin TLS handshake refused: certificate not trusted",
				"actor", leaf.Subject.CommonName, "issuer", leaf.Issuer.CommonName, "reason", id.refused)
			return fmt.Errorf("admin: client certificate %q: %s", leaf.Subject.CommonName, id.refused)
		}
		if r := st.Revoked(leaf); r != nil {
			s.log.Warn("admin TLS handshake refused: certificate revoked",
				"actor", leaf.Subject.CommonName, "serial", raft.SerialString(leaf.SerialNumber),
				"revocation", r.GetSerial()+r.GetName(), "reason", r.GetReason())
			return fmt.Errorf("admin: client certificate %q revoked", leaf.Subject.CommonName)
		}
		return nil
	}
	return c
}

// logOutcome writes the admin log line of one call: every change (with its
// outcome) and every refusal. Successful reads are not logged.
func (s *Server) logOutcome(ctx context.Context, method string, c caller, a access, authErr, err error) {
	code := status.Code(toStatus(err))
	if authErr != nil {
		code = status.Code(toStatus(authErr))
		err = authErr
	}
	attrs := []slog.Attr{
		slog.String("actor", c.Name), slog.String("role", c.roleLabel()),
		slog.String("method", methodLabel(method)), slog.String("code", code.String()),
	}
	if c.Serial != "" {
		attrs = append(attrs, slog.String("serial", c.Serial))
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if authErr == nil && strings.HasPrefix(method, "/"+hubv1.InterceptService_ServiceDesc.ServiceName+"/") {
		// Lawful interception is confidential from the node's operators:
		// its calls are recorded in the interception ledger (intercept.go),
		// not in the node's log. Refusals (authErr) are still logged.
		return
	}
	level, msg := slog.LevelInfo, "admin change"
	switch {
	case authErr != nil:
		level, msg = slog.LevelWarn, "admin request refused"
	case err == nil && !a.change:
		return
	case err != nil && (code == codes.Canceled || errors.Is(err, context.Canceled)):
		// A client leaving a stream (audit tail) is no refusal.
		level, msg = slog.LevelDebug, "admin request cancelled"
	case err != nil && a.change:
		msg = "admin change refused"
	case err != nil:
		msg = "admin request failed"
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(toStatus(err)).Message()))
	}
	s.log.LogAttrs(ctx, level, msg, attrs...)
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	actx, c, a, err := s.authorize(ctx, info.FullMethod)
	if err != nil {
		s.logOutcome(ctx, info.FullMethod, c, a, err, nil)
		return nil, toStatus(err)
	}
	resp, err := handler(actx, req)
	s.logOutcome(ctx, info.FullMethod, c, a, nil, err)
	return resp, toStatus(err)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	actx, c, a, err := s.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		s.logOutcome(ss.Context(), info.FullMethod, c, a, err, nil)
		return toStatus(err)
	}
	err = handler(srv, &authedStream{ServerStream: ss, ctx: actx})
	s.logOutcome(ss.Context(), info.FullMethod, c, a, nil, err)
	return toStatus(err)
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }
