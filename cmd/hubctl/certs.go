package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/net/idna"

	"clearhub/ops/pki"
	"clearhub/raft"
)

func newCertsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "certs",
		Short: "Mint certificates locally from the cluster CA in DATA/pki; revoke and list revoked ones",
	}
	c.AddCommand(newCertsMemberCmd(), newCertsOperatorCmd(), newCertsRevokeCmd(), newCertsRevokedCmd()) // identity.go
	return c
}

// memberCert is what certs member reports (JSON/YAML form).
type memberCert struct {
	Name        string   `json:"name"`
	Certificate string   `json:"certificate"`
	Key         string   `json:"key"`
	Fingerprint string   `json:"fingerprint"`
	Hosts       []string `json:"hosts"`
	NotAfter    string   `json:"not_after"`
}

func newCertsMemberCmd() *cobra.Command {
	var (
		hosts []string
		ttl   time.Duration
		out   string
		force bool
	)
	c := &cobra.Command{
		Use:   "member NAME [--host H]... [--ttl 8760h] [--out DIR]",
		Short: "Issue a member-network client certificate from the local dev CA",
		Long: `Issue a lab member-network certificate (role member) from DATA/pki/ca.crt
and ca.key, without talking to the hub. Writes NAME.crt and NAME.key into
DATA/members (or --out) and prints the certificate's SHA-256 fingerprint,
which 'hubctl network add --pin' accepts.`,
		Example: `  hubctl certs member a --host edge.a.example --host 127.0.0.1
  hubctl network add a --domain a.example --edge sips:127.0.0.1:5071 --pin "$(hubctl certs member a -o json | jq -r .fingerprint)"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := checkHostName("NAME", name); err != nil {
				return err
			}
			for _, h := range hosts {
				if _, err := netip.ParseAddr(h); err == nil {
					continue
				}
				if err := checkHostName("--host", h); err != nil {
					return err
				}
			}
			if ttl <= 0 {
				return usagef("--ttl: must be positive, got %s", ttl)
			}
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			if len(hosts) == 0 {
				hosts = []string{name}
			}
			dir := out
			if dir == "" {
				dir = filepath.Join(dataDir(cmd), "members")
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
			pkiDir := filepath.Join(dataDir(cmd), "pki")
			ca, err := pki.LoadCA(pkiDir)
			if err != nil {
				if errors.Is(err, pki.ErrNoCA) {
					return fmt.Errorf("--data: %w (is the hub's data directory %s? pass --data)", err, dataDir(cmd))
				}
				return fmt.Errorf("--data: load CA from %s: %w", pkiDir, err)
			}
			_, certPEM, keyPEM, err := ca.IssueKeyPair(pki.RoleMember, name, hosts, ttl)
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
			res := memberCert{
				Name:        name,
				Certificate: certPath,
				Key:         keyPath,
				Fingerprint: pki.Fingerprint(leaf),
				Hosts:       hosts,
				NotAfter:    leaf.NotAfter.UTC().Format(time.RFC3339),
			}
			return printOutput(cmd, res, func(w io.Writer) {
				row(w, "CERTIFICATE:", res.Certificate)
				row(w, "KEY:", res.Key)
				row(w, "FINGERPRINT:", res.Fingerprint)
				row(w, "HOSTS:", strings.Join(res.Hosts, ","))
				row(w, "NOT AFTER:", res.NotAfter)
			})
		},
	}
	fl := c.Flags()
	fl.StringSliceVar(&hosts, "host", nil, "DNS name or IP address for the certificate (repeatable; default NAME)")
	fl.DurationVar(&ttl, "ttl", 8760*time.Hour, "validity")
	fl.StringVar(&out, "out", "", "directory for NAME.crt and NAME.key (default DATA/members)")
	fl.BoolVar(&force, "force", false, "replace an existing certificate and key")
	return c
}

// checkHostName refuses what cannot be a certificate's DNS name (RFC 1123
// section 2.1 host names, lower case, as the hub's network domains are):
// "bad domain" would be minted into a certificate no member could use.
// NAME is also the file name, which a valid host name always is. An
// internationalised name gets its A-label (xn--, RFC 5891) form as a hint.
func checkHostName(what, name string) error {
	if raft.ValidDNSName(name) {
		return nil
	}
	if utf8.ValidString(name) && strings.ContainsFunc(name, func(r rune) bool { return r >= utf8.RuneSelf }) {
		if a, err := idna.Lookup.ToASCII(name); err == nil && raft.ValidDNSName(a) {
			return usagef("%s %q: internationalised names go in their ASCII (punycode) form: use %q", what, name, a)
		}
	}
	if l := strings.ToLower(name); l != name && raft.ValidDNSName(l) {
		return usagef("%s %q: DNS names are written in lower case here: use %q", what, name, l)
	}
	return usagef("%s %q: not a DNS host name (letters, digits and '-' in dot-separated labels, like a.example)", what, name)
}

func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	der, err := firstCertDER(certPEM)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func firstCertDER(b []byte) ([]byte, error) {
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, errors.New("issued certificate: no PEM CERTIFICATE block")
		}
		if blk.Type == "CERTIFICATE" {
			return blk.Bytes, nil
		}
	}
}
