package raft

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"

	"clearhub/proto/hubv1"
)

// AdmitCommand is what a proposer checks before a command enters the log:
// CheckCommand plus admission rules that are stricter than what the FSM
// enforces on apply. They are kept out of CheckCommand on purpose: the FSM
// re-runs CheckCommand when it replays the log, and a rule added later must
// not turn a command that was once applied into one that is refused on
// replay (the replicas would then disagree with their own history).
//
// The admission rules close identity gaps an operator would not notice:
//   - a network must be identifiable (a CA, a pin or a lab prefix);
//   - every certificate in ca_pem must be a CA (a leaf belongs in pins);
//   - a lab prefix must not overlap another network's prefix (the most
//     specific one would silently win and take the other's addresses).
func AdmitCommand(s *State, cmd *hubv1.Command) error {
	if err := CheckCommand(s, cmd); err != nil {
		return err
	}
	switch op := cmd.GetOp().(type) {
	case *hubv1.Command_AddNetwork:
		return admitNetwork(s, op.AddNetwork.GetNetwork())
	case *hubv1.Command_UpdateNetwork:
		return admitNetwork(s, op.UpdateNetwork.GetNetwork())
	}
	return nil
}

func admitNetwork(s *State, n *hubv1.Network) error {
	id := n.GetIdentity()
	if len(id.GetCaPem()) == 0 && len(id.GetPins()) == 0 && len(id.GetCidrs()) == 0 {
		return invalid("network.identity", "", "no ca_pem, pins or cidrs: the hub could never attribute this network's traffic (give a member CA, a certificate pin or a lab prefix)")
	}
	for i, caPEM := range id.GetCaPem() {
		if why := caOnly(caPEM); why != "" {
			return invalid(fmt.Sprintf("network.identity.ca_pem[%d]", i), "", why)
		}
	}
	for i, c := range id.GetCidrs() {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			continue // CheckCommand reported it
		}
		p = p.Masked()
		for _, on := range s.networks {
			if on.GetId() == n.GetId() {
				continue
			}
			for _, q := range s.byID[on.GetId()].CIDRs {
				if p.Overlaps(q) && p != q {
					return fmt.Errorf("network.identity.cidrs[%d] %q: %w: overlaps %s of network %q (the more specific prefix would silently take those addresses)",
						i, p, ErrAlreadyExists, q, on.GetId())
				}
			}
		}
	}
	return nil
}

// caOnly returns why a ca_pem value is not a set of CA certificates, or "".
func caOnly(s string) string {
	rest := []byte(s)
	for n := 0; ; n++ {
		b, r := pem.Decode(rest)
		if b == nil {
			return ""
		}
		rest = r
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return "" // CheckCommand reported it
		}
		if !cert.BasicConstraintsValid || !cert.IsCA {
			return fmt.Sprintf("certificate %d (subject %q) is not a CA (no basicConstraints CA:TRUE): register the CA that issued the member's certificates, or pin a leaf certificate with pins", n, cert.Subject.String())
		}
		if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
			return fmt.Sprintf("certificate %d (subject %q) may not sign certificates (key usage lacks keyCertSign)", n, cert.Subject.String())
		}
	}
}
