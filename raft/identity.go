package raft

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

// Operator identities in the replicated state: certificate revocations and
// the records of issued join tokens. Both are checked by every node on its
// own copy of the state, so a revocation takes effect everywhere once it is
// applied there.

// Limits on identity records.
const (
	// MaxRevocations bounds the revocation list (every handshake consults
	// it through a map, so the bound is about snapshot size, not speed).
	MaxRevocations = 10000
	// MaxJoinTokens bounds the recorded join tokens; expired ones are
	// pruned a day after expiry, so this is only reached by a runaway
	// script.
	MaxJoinTokens = 10000
	// MaxReasonLen bounds a revocation reason, in runes.
	MaxReasonLen = 256
	// maxSerialBytes is RFC 5280 4.1.2.2's limit on serial numbers.
	maxSerialBytes = 20
	// joinTokenIDLen is the hex length of a join token id (ops/admin).
	joinTokenIDLen = 16
	// joinTokenRetention is how long after expiry a token record is kept
	// (so a list shows recently expired tokens too).
	joinTokenRetention = 24 * time.Hour
)

// SerialString is the canonical form of a certificate serial number in the
// revocation list: lower-case hex without leading zeros.
func SerialString(n *big.Int) string {
	if n == nil {
		return ""
	}
	return n.Text(16)
}

// ParseSerial reads a serial number written in hex, with or without the
// colons openssl prints ("0a:1b:..." or "a1b..."), and returns its canonical
// form. ok is false for anything else, zero or negative, or longer than
// RFC 5280's 20 octets.
func ParseSerial(s string) (canonical string, ok bool) {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if s == "" || len(s) > 2*maxSerialBytes+2 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 || len(n.Bytes()) > maxSerialBytes {
		return "", false
	}
	return n.Text(16), true
}

// identityIndex is the part of State built from revocations and join
// tokens.
type identityIndex struct {
	revocations   []*hubv1.Revocation // sorted by serial, then name
	revokedSerial map[string]*hubv1.Revocation
	revokedName   map[string]*hubv1.Revocation
	joinTokens    []*hubv1.JoinTokenRecord // sorted by id
	tokenByID     map[string]*hubv1.JoinTokenRecord
}

func newIdentityIndex(cs *hubv1.ClusterState) identityIndex {
	x := identityIndex{
		revocations:   slices.Clone(cs.GetRevocations()),
		revokedSerial: map[string]*hubv1.Revocation{},
		revokedName:   map[string]*hubv1.Revocation{},
		joinTokens:    slices.Clone(cs.GetJoinTokens()),
		tokenByID:     map[string]*hubv1.JoinTokenRecord{},
	}
	sortRevocations(x.revocations)
	for _, r := range x.revocations {
		if r.GetSerial() != "" {
			x.revokedSerial[r.GetSerial()] = r
		} else {
			x.revokedName[r.GetName()] = r
		}
	}
	sortJoinTokens(x.joinTokens)
	for _, t := range x.joinTokens {
		x.tokenByID[t.GetId()] = t
	}
	return x
}

func sortRevocations(rs []*hubv1.Revocation) {
	slices.SortFunc(rs, func(a, b *hubv1.Revocation) int {
		if c := strings.Compare(a.GetSerial(), b.GetSerial()); c != 0 {
			return c
		}
		return strings.Compare(a.GetName(), b.GetName())
	})
}

func sortJoinTokens(ts []*hubv1.JoinTokenRecord) {
	slices.SortFunc(ts, func(a, b *hubv1.JoinTokenRecord) int { return strings.Compare(a.GetId(), b.GetId()) })
}

// Revocations returns the revocation list sorted by serial, then name. The
// slice and its messages are shared: do not modify them.
func (s *State) Revocations() []*hubv1.Revocation { return s.ident.revocations }

// Revoked returns the revocation that refuses c, or nil: its serial is
// listed, or its common name is listed and its validity started before the
// name was revoked.
func (s *State) Revoked(c *x509.Certificate) *hubv1.Revocation {
	if c == nil {
		return nil
	}
	return s.RevokedSerialOrName(SerialString(c.SerialNumber), c.Subject.CommonName, c.NotBefore)
}

// RevokedSerialOrName is Revoked for a certificate's canonical serial,
// common name and NotBefore.
func (s *State) RevokedSerialOrName(serial, name string, notBefore time.Time) *hubv1.Revocation {
	if r := s.ident.revokedSerial[serial]; r != nil && serial != "" {
		return r
	}
	if r := s.ident.revokedName[name]; r != nil && name != "" && notBefore.UnixNano() < r.GetRevokedUnixNano() {
		return r
	}
	return nil
}

// JoinTokens returns the recorded join tokens sorted by id (shared).
func (s *State) JoinTokens() []*hubv1.JoinTokenRecord { return s.ident.joinTokens }

// JoinToken returns the record of the token with id, or nil.
func (s *State) JoinToken(id string) *hubv1.JoinTokenRecord { return s.ident.tokenByID[id] }

// identityProto appends deep copies of the identity records to cs.
func (s *State) identityProto(cs *hubv1.ClusterState) {
	for _, r := range s.ident.revocations {
		cs.Revocations = append(cs.Revocations, proto.Clone(r).(*hubv1.Revocation))
	}
	for _, t := range s.ident.joinTokens {
		cs.JoinTokens = append(cs.JoinTokens, proto.Clone(t).(*hubv1.JoinTokenRecord))
	}
}

// checkIdentityCommand validates the identity operations; handled is false
// for any other operation.
func checkIdentityCommand(s *State, cmd *hubv1.Command) (handled bool, err error) {
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_RevokeCertificate:
		return true, checkRevokeCertificate(s, op.RevokeCertificate)
	case *hubv1.Command_RecordJoinToken:
		r := op.RecordJoinToken
		if err := checkTokenID("record_join_token.id", r.GetId()); err != nil {
			return true, err
		}
		if r.GetExpiresUnix() <= 0 {
			return true, invalid("record_join_token.expires_unix", fmt.Sprint(r.GetExpiresUnix()), "must be a positive Unix time")
		}
		if s.JoinToken(r.GetId()) != nil {
			return true, fmt.Errorf("join token %s: %w", r.GetId(), ErrAlreadyExists)
		}
		if len(s.ident.joinTokens) >= MaxJoinTokens {
			return true, fmt.Errorf("join tokens: %d recorded, the most kept: %w", len(s.ident.joinTokens), ErrFailedPrecondition)
		}
		return true, nil
	case *hubv1.Command_RevokeJoinToken:
		r := op.RevokeJoinToken
		if err := checkTokenID("revoke_join_token.id", r.GetId()); err != nil {
			return true, err
		}
		if err := checkReason("revoke_join_token.reason", r.GetReason()); err != nil {
			return true, err
		}
		t := s.JoinToken(r.GetId())
		if t == nil {
			return true, fmt.Errorf("join token %s: %w", r.GetId(), ErrNotFound)
		}
		if t.GetRevoked() {
			return true, fmt.Errorf("join token %s: already revoked: %w", r.GetId(), ErrAlreadyExists)
		}
		return true, nil
	}
	return false, nil
}

func checkRevokeCertificate(s *State, r *hubv1.RevokeCertificate) error {
	serial, name := r.GetSerial(), r.GetName()
	switch {
	case serial == "" && name == "":
		return invalid("revoke_certificate", "", "one of serial and name is required")
	case serial != "" && name != "":
		return invalid("revoke_certificate", "", "serial and name exclude each other")
	case serial != "":
		// The canonical form only, so equal serials are equal strings on
		// every replica.
		if c, ok := ParseSerial(serial); !ok || c != serial {
			return invalid("revoke_certificate.serial", serial, "must be a positive serial in lower-case hex without leading zeros or colons (at most 20 octets)")
		}
		if s.ident.revokedSerial[serial] != nil {
			return fmt.Errorf("certificate serial %s: already revoked: %w", serial, ErrAlreadyExists)
		}
	default:
		if p := nameProblem(name); p != "" {
			return invalid("revoke_certificate.name", name, p)
		}
	}
	if err := checkReason("revoke_certificate.reason", r.GetReason()); err != nil {
		return err
	}
	if s.ident.revokedName[name] == nil && len(s.ident.revocations) >= MaxRevocations {
		return fmt.Errorf("revocations: %d listed, the most kept: %w", len(s.ident.revocations), ErrFailedPrecondition)
	}
	return nil
}

// nameProblem says why name is not a usable certificate common name for a
// revocation ("" when it is).
func nameProblem(name string) string {
	if len(name) > MaxActorLen || !utf8.ValidString(name) {
		return fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxActorLen)
	}
	if strings.TrimSpace(name) != name {
		return "must not start or end with white space"
	}
	for _, c := range name {
		if unicode.IsControl(c) {
			return "contains control characters"
		}
	}
	return ""
}

func checkReason(field, reason string) error {
	if !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > MaxReasonLen {
		return invalid(field, reason, fmt.Sprintf("must be valid UTF-8 of at most %d characters", MaxReasonLen))
	}
	for _, c := range reason {
		if unicode.IsControl(c) {
			return invalid(field, reason, "contains control characters")
		}
	}
	return nil
}

func checkTokenID(field, id string) error {
	if b, err := hex.DecodeString(id); err != nil || len(id) != joinTokenIDLen || len(b) == 0 || strings.ToLower(id) != id {
		return invalid(field, id, fmt.Sprintf("must be %d lower-case hex characters", joinTokenIDLen))
	}
	return nil
}

// applyIdentity applies an identity operation (already checked) to cs;
// handled is false for any other operation. Times and actors come from the
// command, so every replica computes the same records.
func applyIdentity(cs *hubv1.ClusterState, cmd *hubv1.Command) (handled bool) {
	now, actor := cmd.GetTimeUnixNano(), cmd.GetActor()
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_RevokeCertificate:
		r := op.RevokeCertificate
		rev := &hubv1.Revocation{Serial: r.GetSerial(), Name: r.GetName(), Reason: r.GetReason(), RevokedUnixNano: now, RevokedBy: actor}
		if i := slices.IndexFunc(cs.Revocations, func(x *hubv1.Revocation) bool {
			return rev.Name != "" && x.GetSerial() == "" && x.GetName() == rev.Name
		}); i >= 0 {
			// A later revocation of a name covers everything the earlier one
			// did and the certificates minted in between.
			if cs.Revocations[i].GetRevokedUnixNano() < now {
				cs.Revocations[i] = rev
			}
		} else {
			cs.Revocations = append(cs.Revocations, rev)
		}
		sortRevocations(cs.Revocations)
	case *hubv1.Command_RecordJoinToken:
		r := op.RecordJoinToken
		cs.JoinTokens = append(cs.JoinTokens, &hubv1.JoinTokenRecord{
			Id: r.GetId(), ExpiresUnix: r.GetExpiresUnix(), CreatedBy: actor, CreatedUnixNano: now,
		})
		pruneJoinTokens(cs, now)
	case *hubv1.Command_RevokeJoinToken:
		r := op.RevokeJoinToken
		for _, t := range cs.JoinTokens {
			if t.GetId() == r.GetId() {
				t.Revoked, t.RevokedUnixNano, t.RevokedBy, t.Reason = true, now, actor, r.GetReason()
			}
		}
		pruneJoinTokens(cs, now)
	default:
		return false
	}
	return true
}

// pruneJoinTokens drops records of tokens that expired more than
// joinTokenRetention before now (the command's time: deterministic).
func pruneJoinTokens(cs *hubv1.ClusterState, now int64) {
	cutoff := time.Unix(0, now).Add(-joinTokenRetention).Unix()
	cs.JoinTokens = slices.DeleteFunc(cs.JoinTokens, func(t *hubv1.JoinTokenRecord) bool { return t.GetExpiresUnix() < cutoff })
	sortJoinTokens(cs.JoinTokens)
}
