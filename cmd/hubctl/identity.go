package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// Operator identities: per-person operator certificates minted locally from
// the cluster CA, their revocation through the admin API, and join-token
// records (hubctl cluster token list|revoke).

// defaultOperatorTTL is a person's certificate lifetime: shorter than a
// node's, since people come and go and laptops get lost.
const defaultOperatorTTL = 90 * 24 * time.Hour

// operatorCert is what certs operator reports (JSON/YAML form).
type operatorCert struct {
	Name        string `json:"name"`
	Role        string `json:"role"`
	Certificate string `json:"certificate"`
	Key         string `json:"key"`
	Serial      string `json:"serial"`
	NotAfter    string `json:"not_after"`
}

// loadLocalCA loads the cluster CA (with its key) from DATA/pki.
func loadLocalCA(cmd *cobra.Command) (*pki.CA, error) {
	pkiDir := filepath.Join(dataDir(cmd), "pki")
	ca, err := pki.LoadCA(pkiDir)
	if err != nil {
		if errors.Is(err, pki.ErrNoCA) {
			return nil, fmt.Errorf("--data: %w (is the hub's data directory %s? pass --data)", err, dataDir(cmd))
		}
		return nil, fmt.Errorf("--data: load CA from %s: %w", pkiDir, err)
	}
	return ca, nil
}

func newCertsOperatorCmd() *cobra.Command {
	var (
		role  string
		ttl   time.Duration
		out   string
		force bool
	)
	c := &cobra.Command{
		Use:   "operator NAME --role admin|operator|auditor|readonly [--ttl 2160h] [--out DIR]",
		Short: "Issue a per-person operator client certificate from the local cluster CA",
		Long: `Issue an operator client certificate for one person from DATA/pki/ca.crt
and ca.key, without talking to the hub. NAME (the certificate's common
name) is what the audit trail and the admin logs record for every change
that person makes. Writes NAME.crt and NAME.key into DATA/operators (or
--out).

Roles:
  admin     everything, cluster membership and certificate revocation included
  operator  networks, policy, every read, audit reads
  auditor   audit checkpoints, proofs, export, tail and scrub, cluster status
  readonly  networks, policy and cluster status reads; no audit entries

The development certificate DATA/pki/operator.crt carries no role and is
admin. Revoke a certificate with 'hubctl certs revoke'.`,
		Example: `  hubctl certs operator alice --role operator
  hubctl --cert hub-data/operators/alice.crt --key hub-data/operators/alice.key network list`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := pki.ValidOperatorName(name); err != nil {
				return usagef("NAME %q: %v", name, err)
			}
			if role == "" {
				return usagef("--role: required (admin, operator, auditor, readonly or lawful-intercept)")
			}
			r, err := pki.ParseAdminRole(role)
			if err != nil {
				return usagef("--role: %v", err)
			}
			if ttl <= 0 {
				return usagef("--ttl: must be positive, got %s", ttl)
			}
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			dir := out
			if dir == "" {
				dir = filepath.Join(dataDir(cmd), "operators")
			}
			certPath := filepath.Join(dir, name+".crt")
			keyPath := filepath.Join(dir, name+".key")
			if !force {
				for _, p := range []string{certPath, keyPath} {
					if _, err := os.Stat(p); err == nil {
						return fmt.Errorf("%s already exists (pass --force to replace it)", p)
					} else if !errors.Is(err, fs.ErrNotExist) {
						return err
					}
				}
			}
			ca, err := loadLocalCA(cmd)
			if err != nil {
				return err
			}
			_, certPEM, keyPEM, err := ca.IssueOperatorKeyPair(name, r, ttl)
			if err != nil {
				return err
			}
			leaf, err := parseLeaf(certPEM)
			if err != nil {
				return err
			}
			// Key first: a certificate without its key is useless, a stray
			// key is harmless.
			if err := pki.WriteFile(keyPath, keyPEM, 0o600); err != nil {
				return err
			}
			if err := pki.WriteFile(certPath, certPEM, 0o644); err != nil {
				return err
			}
			res := operatorCert{
				Name: name, Role: string(r), Certificate: certPath, Key: keyPath,
				Serial:   raft.SerialString(leaf.SerialNumber),
				NotAfter: leaf.NotAfter.UTC().Format(time.RFC3339),
			}
			return printOutput(cmd, res, func(w io.Writer) {
				row(w, "NAME:", res.Name)
				row(w, "ROLE:", res.Role)
				row(w, "CERTIFICATE:", res.Certificate)
				row(w, "KEY:", res.Key)
				row(w, "SERIAL:", res.Serial)
				row(w, "NOT AFTER:", res.NotAfter)
			})
		},
	}
	fl := c.Flags()
	fl.StringVar(&role, "role", "", "admin, operator, auditor, readonly or lawful-intercept (required)")
	fl.DurationVar(&ttl, "ttl", defaultOperatorTTL, "validity")
	fl.StringVar(&out, "out", "", "directory for NAME.crt and NAME.key (default DATA/operators)")
	fl.BoolVar(&force, "force", false, "replace an existing certificate and key")
	return c
}

// revokeTarget decides what certs revoke's argument names: a certificate
// file (its serial), a serial (hex; colons, as openssl prints it, or at
// least 16 digits), else a certificate name.
func revokeTarget(arg string, byName bool) (*hubv1.RevokeCertificateRequest, error) {
	if byName {
		return &hubv1.RevokeCertificateRequest{Name: arg}, nil
	}
	if strings.HasSuffix(arg, ".crt") || strings.HasSuffix(arg, ".pem") || strings.ContainsRune(arg, os.PathSeparator) {
		b, err := os.ReadFile(arg)
		if err != nil {
			return nil, fmt.Errorf("SERIAL|NAME|FILE %q: %w", arg, err)
		}
		leaf, err := parseLeaf(b)
		if err != nil {
			return nil, fmt.Errorf("SERIAL|NAME|FILE %q: %w", arg, err)
		}
		return &hubv1.RevokeCertificateRequest{Serial: raft.SerialString(leaf.SerialNumber)}, nil
	}
	if s, ok := raft.ParseSerial(arg); ok && (strings.Contains(arg, ":") || len(strings.TrimSpace(arg)) >= 16) {
		return &hubv1.RevokeCertificateRequest{Serial: s}, nil
	}
	return &hubv1.RevokeCertificateRequest{Name: arg}, nil
}

// revocationView is the JSON/YAML form of one revocation.
type revocationView struct {
	Serial    string `json:"serial,omitempty"`
	Name      string `json:"name,omitempty"`
	Reason    string `json:"reason"`
	RevokedAt string `json:"revoked_at"`
	RevokedBy string `json:"revoked_by"`
}

func viewRevocation(r *hubv1.Revocation) revocationView {
	return revocationView{Serial: r.GetSerial(), Name: r.GetName(), Reason: r.GetReason(),
		RevokedAt: rfc3339Nano(r.GetRevokedUnixNano()), RevokedBy: r.GetRevokedBy()}
}

func rfc3339Nano(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339)
}

func printRevocations(cmd *cobra.Command, rs []*hubv1.Revocation) error {
	views := make([]revocationView, 0, len(rs))
	for _, r := range rs {
		views = append(views, viewRevocation(r))
	}
	return printOutput(cmd, views, func(w io.Writer) {
		row(w, "SERIAL", "NAME", "REVOKED", "BY", "REASON")
		for _, v := range views {
			row(w, orDash(v.Serial), orDash(v.Name), v.RevokedAt, orDash(v.RevokedBy), orDash(v.Reason))
		}
	})
}

func newCertsRevokeCmd() *cobra.Command {
	var (
		reason string
		byName bool
	)
	c := &cobra.Command{
		Use:   "revoke SERIAL|NAME|FILE [--reason TEXT] [--name]",
		Short: "Revoke a certificate on every node (admin role)",
		Long: `Add a certificate to the cluster's replicated revocation list. Every node
then refuses it at the TLS handshake of its admin API, and refuses calls
on connections opened before.

SERIAL is the certificate's serial in hex (colons allowed, as openssl
prints it); FILE a PEM certificate (*.crt, *.pem or a path); anything else
is a NAME: every certificate with that common name whose validity started
before now is revoked, and a certificate minted for the name afterwards
works. --name forces NAME. A certificate cannot revoke itself.`,
		Example: `  hubctl certs revoke alice --reason "left the team"
  hubctl certs revoke 5f:3a:09:...:c1 --reason "laptop stolen"
  hubctl certs revoke hub-data/operators/bob.crt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(args[0]) == "" {
				return usagef("SERIAL|NAME|FILE: empty")
			}
			req, err := revokeTarget(args[0], byName)
			if err != nil {
				return err
			}
			req.Reason = reason
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				r, err := c.RevokeCertificate(ctx, req)
				if err != nil {
					return err
				}
				return printRevocations(cmd, []*hubv1.Revocation{r})
			})
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (recorded in the revocation list and the audit trail)")
	c.Flags().BoolVar(&byName, "name", false, "treat the argument as a certificate name even if it looks like a serial")
	return c
}

func newCertsRevokedCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoked",
		Short: "List the cluster's revoked certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				resp, err := c.ListRevocations(ctx, &hubv1.ListRevocationsRequest{})
				if err != nil {
					return err
				}
				return printRevocations(cmd, resp.GetRevocations())
			})
		},
	}
}

// tokenView is the JSON/YAML form of one join-token record.
type tokenView struct {
	ID        string `json:"id"`
	Status    string `json:"status"` // active, expired, revoked
	ExpiresAt string `json:"expires_at"`
	CreatedAt string `json:"created_at"`
	CreatedBy string `json:"created_by"`
	RevokedAt string `json:"revoked_at,omitempty"`
	RevokedBy string `json:"revoked_by,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

func viewToken(t *hubv1.JoinTokenRecord, now time.Time) tokenView {
	st := "active"
	switch {
	case t.GetRevoked():
		st = "revoked"
	case !now.Before(time.Unix(t.GetExpiresUnix(), 0)):
		st = "expired"
	}
	return tokenView{ID: t.GetId(), Status: st, ExpiresAt: time.Unix(t.GetExpiresUnix(), 0).UTC().Format(time.RFC3339),
		CreatedAt: rfc3339Nano(t.GetCreatedUnixNano()), CreatedBy: t.GetCreatedBy(),
		RevokedAt: rfc3339Nano(t.GetRevokedUnixNano()), RevokedBy: t.GetRevokedBy(), Reason: t.GetReason()}
}

func printTokens(cmd *cobra.Command, ts []*hubv1.JoinTokenRecord) error {
	now := time.Now()
	views := make([]tokenView, 0, len(ts))
	for _, t := range ts {
		views = append(views, viewToken(t, now))
	}
	return printOutput(cmd, views, func(w io.Writer) {
		row(w, "ID", "STATUS", "EXPIRES", "CREATED BY", "REASON")
		for _, v := range views {
			row(w, v.ID, v.Status, v.ExpiresAt, orDash(v.CreatedBy), orDash(v.Reason))
		}
	})
}

// addTokenSubcommands hangs list and revoke under 'cluster token' (which
// itself still creates a token).
func addTokenSubcommands(token *cobra.Command) {
	token.AddCommand(&cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List issued join tokens (ids, never the secrets)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				resp, err := c.ListJoinTokens(ctx, &hubv1.ListJoinTokensRequest{})
				if err != nil {
					return err
				}
				return printTokens(cmd, resp.GetTokens())
			})
		},
	})
	var reason string
	revoke := &cobra.Command{
		Use:   "revoke ID [--reason TEXT]",
		Short: "Revoke a join token on every node before it expires (admin role)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseTokenOrID(args[0])
			if err != nil {
				return usagef("ID %q: %v", args[0], err)
			}
			return withAdmin(cmd, func(ctx context.Context, c hubv1.AdminServiceClient) error {
				r, err := c.RevokeJoinToken(ctx, &hubv1.RevokeJoinTokenRequest{Id: id, Reason: reason})
				if err != nil {
					return err
				}
				return printTokens(cmd, []*hubv1.JoinTokenRecord{r})
			})
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "why (recorded with the token and in the audit trail)")
	token.AddCommand(revoke)
}

// parseTokenOrID accepts a token id (16 lower-case hex) or a whole token,
// whose id it returns: an operator holding a leaked token can paste it.
func parseTokenOrID(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.Count(s, ".") == 4 {
		parts := strings.Split(s, ".")
		s = parts[2]
	}
	if len(s) != 16 || strings.Trim(s, "0123456789abcdef") != "" {
		return "", errors.New("want a token id (16 lower-case hex characters, as 'hubctl cluster token list' shows) or a whole token")
	}
	return s, nil
}
