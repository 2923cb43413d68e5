package admin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"clearhub/ops/pki"
)

// Join tokens, in the manner of kubeadm bootstrap tokens but stateless:
//
//	chj1.<expiry unix seconds, base36>.<random id, 16 hex>.<mac, base64url>.<CA SHA-256, 64 hex>
//
// The MAC is HMAC-SHA256 over "chj1.<expiry>.<id>.<ca>" keyed by a key
// derived from the cluster CA private key. Every node holds that key, so any
// node verifies a token any other node issued. The CA fingerprint lets the
// joiner authenticate the cluster before it has any certificate (it pins
// the CA the server presents). Each issued token's id, expiry and creator
// (never its MAC) are recorded in the replicated state before it is handed
// out; Join refuses ids that are not recorded or are revoked
// (identity.go), so a leaked token can be revoked before it expires.
const (
	tokenPrefix     = "chj1"
	DefaultTokenTTL = time.Hour
	MaxTokenTTL     = 24 * time.Hour
	tokenIDBytes    = 8
)

// JoinTokenInfo is the public part of a join token.
type JoinTokenInfo struct {
	Expires       time.Time
	ID            string // random, identifies the token in audit records
	CAFingerprint string // lower-case hex SHA-256 of the cluster CA certificate DER
}

// tokenKey signs and verifies join tokens for one CA.
type tokenKey struct {
	key []byte
	fp  string
}

func newTokenKey(ca *pki.CA) (*tokenKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("join token key: %w", err)
	}
	// Domain-separated derivation: the CA key itself never meets the MAC.
	m := hmac.New(sha256.New, der)
	m.Write([]byte("clearhub join token key v1"))
	return &tokenKey{key: m.Sum(nil), fp: ca.Fingerprint()}, nil
}

func (k *tokenKey) mac(signed string) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// create returns a token valid until now+ttl (whole seconds).
func (k *tokenKey) create(now time.Time, ttl time.Duration) (string, JoinTokenInfo, error) {
	var id [tokenIDBytes]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", JoinTokenInfo{}, fmt.Errorf("join token: %w", err)
	}
	exp := now.Add(ttl).Truncate(time.Second)
	info := JoinTokenInfo{Expires: exp, ID: hex.EncodeToString(id[:]), CAFingerprint: k.fp}
	expS := strconv.FormatInt(exp.Unix(), 36)
	mac := base64.RawURLEncoding.EncodeToString(k.mac(signedPart(expS, info.ID, k.fp)))
	return strings.Join([]string{tokenPrefix, expS, info.ID, mac, k.fp}, "."), info, nil
}

// verify checks token's MAC and expiry at now. Errors wrap
// ErrTokenMalformed, ErrTokenInvalid or ErrTokenExpired.
func (k *tokenKey) verify(token string, now time.Time) (JoinTokenInfo, error) {
	info, mac, err := parseToken(token)
	if err != nil {
		return info, err
	}
	parts := strings.Split(token, ".")
	// A token for another CA cannot verify here; say "invalid" rather than
	// telling a guesser which part was wrong.
	if info.CAFingerprint != k.fp || !hmac.Equal(mac, k.mac(signedPart(parts[1], parts[2], parts[4]))) {
		return info, fmt.Errorf("join token: %w", ErrTokenInvalid)
	}
	if !now.Before(info.Expires) {
		return info, fmt.Errorf("join token: %w at %s", ErrTokenExpired, info.Expires.UTC().Format(time.RFC3339))
	}
	return info, nil
}

func signedPart(exp, id, fp string) string {
	return tokenPrefix + "." + exp + "." + id + "." + fp
}

// ParseJoinToken reads a token's public part without verifying its MAC (the
// joiner cannot: it lacks the key). Errors wrap ErrTokenMalformed and name
// the part at fault.
func ParseJoinToken(token string) (JoinTokenInfo, error) {
	info, _, err := parseToken(token)
	return info, err
}

func parseToken(token string) (JoinTokenInfo, []byte, error) {
	var info JoinTokenInfo
	bad := func(part, reason string) (JoinTokenInfo, []byte, error) {
		return JoinTokenInfo{}, nil, fmt.Errorf("join token: %s: %w: %s", part, ErrTokenMalformed, reason)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return bad("token", "empty")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 5 {
		return bad("token", fmt.Sprintf("want 5 dot-separated parts, got %d", len(parts)))
	}
	if parts[0] != tokenPrefix {
		return bad("version", fmt.Sprintf("want %q", tokenPrefix))
	}
	exp, err := strconv.ParseInt(parts[1], 36, 64)
	if err != nil || exp <= 0 {
		return bad("expiry", "not a positive base-36 number")
	}
	info.Expires = time.Unix(exp, 0)
	if b, err := hex.DecodeString(parts[2]); err != nil || len(b) != tokenIDBytes || strings.ToLower(parts[2]) != parts[2] {
		return bad("id", fmt.Sprintf("want %d lower-case hex characters", 2*tokenIDBytes))
	}
	info.ID = parts[2]
	mac, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil || len(mac) != sha256.Size {
		return bad("mac", "want 43 base64url characters")
	}
	if b, err := hex.DecodeString(parts[4]); err != nil || len(b) != sha256.Size || strings.ToLower(parts[4]) != parts[4] {
		return bad("ca fingerprint", "want 64 lower-case hex characters")
	}
	info.CAFingerprint = parts[4]
	return info, mac, nil
}
