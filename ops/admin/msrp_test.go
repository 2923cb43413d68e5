package admin

import (
	"strings"
	"testing"

	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// The MSRP relay password is write-only: stored and replicated, never
// answered (GetNetwork, ListNetworks, UpdateNetwork, GetState), and kept
// across an update that does not name a new one.
func TestUpdateNetworkMsrpPasswordWriteOnly(t *testing.T) {
	ca := sharedCA(t)
	n := startNode(t, ca, newFakeCluster(), "node-a")
	op := issue(t, ca, pki.RoleOperator, "alice")
	adm := hubv1.NewAdminServiceClient(dialT(t, n.addr, clientTLS(ca, &op)))
	ctx := ctxT(t)
	if _, err := adm.AddNetwork(ctx, &hubv1.AddNetworkRequest{Network: testNetwork("a")}); err != nil {
		t.Fatal(err)
	}
	m := &hubv1.MsrpSettings{MaxFileSize: 1 << 20, BytesPerSecond: 1 << 16, RelayUri: "msrp://relay.a.example:2855;tcp", RelayUsername: "hub", RelayPassword: "s3cret"}
	got, err := adm.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: &hubv1.Network{Id: "a", Msrp: m}, UpdateMask: []string{"msrp"}})
	if err != nil {
		t.Fatal(err)
	}
	stored := func() string { return n.store.State().Network("a").GetMsrp().GetRelayPassword() }
	check := func(what string, nw *hubv1.Network) {
		t.Helper()
		if nw.GetMsrp().GetRelayPassword() != "" || !nw.GetMsrp().GetRelayPasswordSet() || nw.GetMsrp().GetMaxFileSize() != 1<<20 {
			t.Fatalf("%s: msrp %v", what, nw.GetMsrp())
		}
	}
	check("UpdateNetwork", got)
	if stored() != "s3cret" {
		t.Fatalf("stored password %q", stored())
	}
	g, err := adm.GetNetwork(ctx, &hubv1.GetNetworkRequest{Id: "a"})
	if err != nil {
		t.Fatal(err)
	}
	check("GetNetwork", g)
	l, err := adm.ListNetworks(ctx, &hubv1.ListNetworksRequest{})
	if err != nil || len(l.GetNetworks()) != 1 {
		t.Fatal(err)
	}
	check("ListNetworks", l.GetNetworks()[0])
	st, err := adm.GetState(ctx, &hubv1.GetStateRequest{})
	if err != nil || strings.Contains(st.String(), "s3cret") {
		t.Fatalf("GetState leaks the password (%v)", err)
	}
	// A read-modify-write of the redacted copy (the whole network, empty
	// mask) and another path's update keep the secret.
	g.Msrp.BytesPerSecond = 1 << 17
	if _, err := adm.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: g}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: &hubv1.Network{Id: "a", KeepBodies: true}, UpdateMask: []string{"keep_bodies"}}); err != nil {
		t.Fatal(err)
	}
	if stored() != "s3cret" || n.store.State().Network("a").GetMsrp().GetBytesPerSecond() != 1<<17 {
		t.Fatalf("after updates: %v", n.store.State().Network("a").GetMsrp())
	}
	// Clearing the relay drops the secret.
	if _, err := adm.UpdateNetwork(ctx, &hubv1.UpdateNetworkRequest{Network: &hubv1.Network{Id: "a", Msrp: &hubv1.MsrpSettings{MaxFileSize: 5}}, UpdateMask: []string{"msrp"}}); err != nil {
		t.Fatal(err)
	}
	if stored() != "" {
		t.Fatal("password kept without a relay")
	}
}
