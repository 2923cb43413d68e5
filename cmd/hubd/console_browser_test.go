package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emiago/sipgo/sip"
	"google.golang.org/grpc"

	"clearhub/ops/admin"
	"clearhub/ops/pki"
	"clearhub/proto/hubv1"
)

// chromium finds the browser the console test drives. Without one the
// test is skipped, except in CI (CI=true, .ci/run installs Debian's
// chromium), where a missing browser must not pass silently.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not installed: CI must run the console browser test (apt-get install chromium)")
	}
	t.Skip("chromium not installed (apt-get install chromium): console browser test skipped")
	return ""
}

// consoleNode starts a single-node hub in-process with the console on a
// free port and returns it with an admin connection as operator "alice".
func consoleNode(t *testing.T, ctx context.Context) (*hubNode, *pki.CA, hubv1.AdminServiceClient) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.SIP.UDP, cfg.SIP.TCP, cfg.SIP.TLS = freePort(t), "", ""
	cfg.Admin.Addr, cfg.Raft.Addr, cfg.HTTP.Addr = freePort(t), freePort(t), ""
	cfg.Console.Addr = freePort(t)
	cfg.Console.BootstrapLogin = false
	cfg.Console.LoginTTL = 8 * time.Second // the expired-link case waits it out
	n, err := start(ctx, cfg, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.shutdown() })
	if n.console == nil || n.console.srv == nil {
		t.Fatalf("console not served: %+v", n.console)
	}
	ca, err := pki.LoadCA(n.pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	return n, ca, hubv1.NewAdminServiceClient(operatorConn(t, ctx, n, ca, "alice", pki.AdminRoleOperator))
}

// operatorConn is an admin API connection with a fresh certificate of
// name and role, as hubctl would hold.
func operatorConn(t *testing.T, ctx context.Context, n *hubNode, ca *pki.CA, name string, role pki.AdminRole) *grpc.ClientConn {
	t.Helper()
	pair, _, _, err := ca.IssueOperatorKeyPair(name, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := admin.Dial(ctx, n.adminAdr, &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// loginLink is what `hubctl console login` does: ConsoleService.CreateLogin
// with the operator's certificate.
func loginLink(t *testing.T, ctx context.Context, c *grpc.ClientConn) string {
	t.Helper()
	r, err := hubv1.NewConsoleServiceClient(c).CreateLogin(ctx, &hubv1.CreateConsoleLoginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.GetUrl()
}

// A real headless Chromium logs in through a link, onboards two networks,
// allows IM in the policy matrix, sees a MESSAGE sent through the hub
// counted live on the traffic page, finds it (and the operator's own
// changes, under her name) in the audit search, exports and verifies; a
// readonly operator can change nothing; used, forged and expired links are
// refused.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end with a browser")
	}
	browser := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	n, ca, api := consoleNode(t, ctx)
	aliceConn := operatorConn(t, ctx, n, ca, "alice", pki.AdminRoleOperator)
	ritaConn := operatorConn(t, ctx, n, ca, "rita", pki.AdminRoleReadonly)
	expiredLink := loginLink(t, ctx, aliceConn)
	expiredAt := time.Now().Add(n.cfg.Console.LoginTTL)

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("ignore-certificate-errors", true), // the node certificate is the dev CA's
		chromedp.WindowSize(1400, 900))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("start browser", chromedp.Do(bctx, chromedp.Navigate("about:blank")))

	shot := func(c context.Context, name string) {
		t.Helper()
		png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
		must("screenshot "+name, err)
		dirs := []string{t.ArtifactDir()}
		if d := os.Getenv("CONSOLE_SCREENSHOTS"); d != "" {
			dirs = append(dirs, d)
		}
		if os.Getenv("CONSOLE_README_SCREENSHOTS") != "" {
			dirs = append(dirs, filepath.Join("..", "..", "docs", "img"))
		}
		for _, d := range dirs {
			must("mkdir", os.MkdirAll(d, 0o755))
			must("write screenshot", os.WriteFile(filepath.Join(d, "console-"+name+".png"), png, 0o644))
		}
	}
	// wait polls a JavaScript predicate in the page, across navigations
	// (an evaluation during one fails: tried again).
	wait := func(c context.Context, what, js string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var ok bool
			if ok, err = chromedp.Run(c, chromedp.Evaluate[bool](`!!(`+js+`)`)); err == nil && ok {
				return
			}
		}
		body, _ := chromedp.Run(c, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("%s: not true within 20s (last error %v)\npage:\n%s", what, err, body)
	}
	page := func(c context.Context, name string) {
		t.Helper()
		_, err := chromedp.Run(c, chromedp.Evaluate[string](`location.hash = "#`+name+`"`))
		must("open page "+name, err)
		wait(c, "page "+name, `!document.querySelector("#page-`+name+`").hidden`)
	}
	text := func(c context.Context, js string) string {
		t.Helper()
		s, err := chromedp.Run(c, chromedp.Evaluate[string](js))
		must("evaluate "+js, err)
		return s
	}

	// Log in as alice.
	link := loginLink(t, ctx, aliceConn)
	must("open login link", chromedp.Do(bctx, chromedp.Navigate(link)))
	// The link's page names whose it is; logging in is a button press.
	if who := text(bctx, `document.querySelector("#login-name").textContent`); who != "alice" {
		t.Fatalf("login page names %q", who)
	}
	must("confirm login", chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#login-continue"))))
	wait(bctx, "console ready", `document.body.dataset.ready === "1"`)
	if who := text(bctx, `document.querySelector("#who").textContent`); who != "alice (operator)" {
		t.Fatalf("logged in as %q", who)
	}
	wait(bctx, "cluster health", `document.querySelector("#nodes tbody tr") !== null && document.querySelector("#live").className === "live on"`)
	shot(bctx, "health")

	// Onboard two member networks through the form.
	a := newUDPMember(t, "127.0.0.2", "a.example")
	b := newUDPMember(t, "127.0.0.3", "b.example")
	page(bctx, "networks")
	for _, m := range []struct{ id, domain, edge, cidr string }{
		{"net-a", "a.example", "sip:" + a.addr + ";transport=udp", "127.0.0.2/32"},
		{"net-b", "b.example", "sip:" + b.addr + ";transport=udp", "127.0.0.3/32"},
	} {
		must("fill network "+m.id, chromedp.Do(bctx,
			chromedp.SetValue(chromedp.CSS("#net-id"), m.id),
			chromedp.SetValue(chromedp.CSS("#net-name"), "Member "+m.id),
			chromedp.SetValue(chromedp.CSS("#net-domains"), m.domain),
			chromedp.SetValue(chromedp.CSS("#net-edges"), m.edge),
			chromedp.SetValue(chromedp.CSS("#net-cidrs"), m.cidr),
			chromedp.Click(chromedp.CSS("#net-submit")),
		))
		wait(bctx, "network "+m.id+" listed", `document.querySelector("#net-`+m.id+`") !== null`)
	}
	// Edit one: the change goes through UpdateNetwork.
	must("edit", chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#edit-net-b"))))
	wait(bctx, "edit form", `document.querySelector("#net-id").value === "net-b"`)
	must("rename", chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS("#net-name"), "Bravo Telecom"), chromedp.Click(chromedp.CSS("#net-submit"))))
	wait(bctx, "renamed", `document.querySelector("#net-net-b").textContent.includes("Bravo Telecom")`)
	shot(bctx, "networks")

	// Policy matrix: allow IM from net-a to net-b.
	page(bctx, "policy")
	wait(bctx, "matrix", `document.querySelector("#cell-net-b-net-a-im") !== null`)
	must("allow im", chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#cell-net-b-net-a-im"))))
	wait(bctx, "cell allowed", `document.querySelector("#cell-net-b-net-a-im").classList.contains("allow")`)
	pol, err := api.ListPolicies(ctx, &hubv1.ListPoliciesRequest{Destination: "net-b"})
	must("list policies", err)
	if got := fmt.Sprint(pol.GetPolicies()); !strings.Contains(got, `source:"net-a"`) || !strings.Contains(got, "SERVICE_IM") {
		t.Fatalf("policy after the click: %s", got)
	}
	shot(bctx, "policy")

	// Route check: the SIP plane's decision on what was just allowed (im)
	// and what was not (session).
	page(bctx, "route")
	wait(bctx, "route sources", `document.querySelector("#route-from option[value=net-a]") !== null`)
	must("route check im", chromedp.Do(bctx,
		chromedp.SetValue(chromedp.CSS("#route-from"), "net-a"),
		chromedp.SetValue(chromedp.CSS("#route-uri"), "sip:bob@b.example"),
		chromedp.SetValue(chromedp.CSS("#route-service"), "im"),
		chromedp.Click(chromedp.CSS("#route-submit"))))
	wait(bctx, "route allowed", `document.querySelector("#route-verdict").textContent === "allowed: forwarded to net-b" &&
		document.querySelector("#route-edges tbody").textContent.includes("`+b.addr+`")`)
	shot(bctx, "route")
	must("route check session", chromedp.Do(bctx,
		chromedp.SetValue(chromedp.CSS("#route-service"), "session"),
		chromedp.Click(chromedp.CSS("#route-submit"))))
	wait(bctx, "route refused", `document.querySelector("#route-verdict").textContent === "refused: 403 Peering policy denies session"`)

	// A real MESSAGE from net-a's edge to net-b's through the hub.
	page(bctx, "traffic")
	cid := fmt.Sprintf("console-%d@a.example", time.Now().UnixNano())
	var ru sip.Uri
	must("uri", sip.ParseUri("sip:bob@b.example", &ru))
	req := sip.NewRequest(sip.MESSAGE, ru)
	fp := sip.NewParams()
	fp.Add("tag", "a1")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "a.example"}, Params: fp})
	req.AppendHeader(&sip.ToHeader{Address: ru, Params: sip.NewParams()})
	cidh := sip.CallIDHeader(cid)
	req.AppendHeader(&cidh)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.MESSAGE})
	req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	req.SetBody([]byte("hello from the console test"))
	req.SetDestination(n.cfg.SIP.UDP)
	if res := a.do(t, req); res.StatusCode != 200 {
		t.Fatalf("MESSAGE through the hub: %s", res.StartLine())
	}
	// And one the hub refuses: net-a's edge claiming a From of net-b's
	// domain (403, reason spoof).
	spoof := req.Clone()
	spoof.RemoveHeader("From")
	spoof.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "mallory", Host: "b.example"}, Params: fp})
	spoof.RemoveHeader("Call-ID")
	spoofID := sip.CallIDHeader("spoof-" + cid)
	spoof.AppendHeader(&spoofID)
	spoof.RemoveHeader("Via")
	if res := a.do(t, spoof); res.StatusCode != 403 {
		t.Fatalf("spoofed MESSAGE: %s", res.StartLine())
	}
	wait(bctx, "MESSAGEs counted live", `(document.querySelector("#traffic-net-a .messages") || {}).textContent === "2" &&
		(document.querySelector("#traffic-net-b .received") || {}).textContent === "1" &&
		(document.querySelector("#traffic-net-a .refused") || {}).textContent === "1" &&
		document.querySelector("#refusals").textContent.includes("spoof")`)
	shot(bctx, "traffic")
	page(bctx, "networks")
	wait(bctx, "edge health live", `document.querySelector("#net-net-b .edgehealth").textContent.includes("answered 1")`)
	// Network test: OPTIONS from the node to net-b's edge.
	must("network test", chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#test-net-b"))))
	wait(bctx, "network test report", `document.querySelector("#net-test-edges tbody").textContent.includes("200 OK") &&
		document.querySelector("#net-test-summary").textContent.includes("net-a: im")`)

	// Audit search by Call-ID finds both entries of the MESSAGE.
	page(bctx, "audit")
	must("search call-id", chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS("#audit-callid"), cid)))
	found := false
	for deadline := time.Now().Add(15 * time.Second); !found && time.Now().Before(deadline); {
		must("search", chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#audit-search"))))
		time.Sleep(300 * time.Millisecond)
		found = text(bctx, `String([...document.querySelectorAll("#audit td.callid")].filter(td => td.textContent === "`+cid+`").length)`) == "2"
	}
	if !found {
		t.Fatalf("audit search for %s: %s", cid, text(bctx, `document.querySelector("#page-audit").innerText`))
	}
	// The console's changes are audited under alice's name.
	text(bctx, `document.querySelector("#audit-callid").value = ""; document.querySelector("#audit-kind").value = "admin"`)
	must("search admin", chromedp.Do(bctx,
		chromedp.SetValue(chromedp.CSS("#audit-user"), "alice"),
		chromedp.Click(chromedp.CSS("#audit-search"))))
	for _, m := range []string{"ConsoleLogin", "AddNetwork", "UpdateNetwork", "AllowPolicy"} {
		wait(bctx, m+" audited as alice", `[...document.querySelectorAll("#audit tr.entry")].some(tr => tr.textContent.includes("`+m+`") && tr.textContent.includes("alice;role=operator"))`)
	}
	must("export", chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#audit-export"))))
	wait(bctx, "export done", `document.querySelector("#export-status").textContent.startsWith("export done") && !document.querySelector("#export-link").hidden`)
	must("verify", chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#audit-verify"))))
	wait(bctx, "verified", `document.querySelector("#verify-result").textContent.startsWith("ledger verified")`)
	shot(bctx, "audit")

	// Rooms and queues: listed through RoomService and QueueService, a
	// row opens the room's record.
	_, err = hubv1.NewRoomServiceClient(aliceConn).CreateRoom(ctx, &hubv1.CreateRoomRequest{Room: "noc", Subject: "NOC bridge"})
	must("create room", err)
	page(bctx, "rooms")
	wait(bctx, "room listed", `document.querySelector("#rooms tbody").textContent.includes("sip:noc@rooms.localhost") &&
		document.querySelector("#rooms tbody").textContent.includes("NOC bridge")`)
	must("open room", chromedp.Do(bctx, chromedp.Click(chromedp.CSS("#rooms tbody tr"))))
	wait(bctx, "room record", `!document.querySelector("#detail").hidden && document.querySelector("#detail").textContent.includes("NOC bridge")`)
	page(bctx, "queues")
	wait(bctx, "queues loaded", `document.querySelector("#status").className !== "bad"`)

	// The link alice used is refused a second time.
	must("reuse link", chromedp.Do(bctx, chromedp.Navigate(link)))
	if body := text(bctx, `document.body.innerText`); !strings.Contains(body, "console login refused") {
		t.Fatalf("reused link: %s", body)
	}

	// readonly: sees the pages, changes nothing, in its own browser
	// context (its own cookies).
	rctx, cancelR := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	defer cancelR()
	must("rita's browser context", chromedp.Do(rctx, chromedp.Navigate("about:blank")))
	must("rita login", chromedp.Do(rctx, chromedp.Navigate(loginLink(t, ctx, ritaConn))))
	must("rita confirms", chromedp.Do(rctx, chromedp.Click(chromedp.CSS("#login-continue"))))
	wait(rctx, "console ready (rita)", `document.body.dataset.ready === "1"`)
	page(rctx, "policy")
	wait(rctx, "matrix (rita)", `document.querySelector("#cell-net-b-net-a-session") !== null`)
	if got := text(rctx, `String(document.querySelector("#cell-net-b-net-a-session").disabled && document.querySelector("#net-submit").disabled)`); got != "true" {
		t.Fatal("readonly sees enabled change controls")
	}
	shot(rctx, "readonly")
	// The page's controls are off; the API refuses too when called
	// directly with the session's own CSRF token.
	for _, tc := range []struct{ path, body, want string }{
		{"/api/networks/net-a/suspend", "", "403"},
		{"/api/policy", `{"destination":"net-b","source":"net-a","service":"session","allow":true}`, "403"},
		{"/api/networks", `{"id":"net-x"}`, "403"},
		// Not a console "change": the admin API itself refuses readonly.
		{"/api/audit/verify", "", "403"},
	} {
		got, err := chromedp.Run(rctx, chromedp.Evaluate[string](`(async () => {
			const s = await (await fetch("/api/session")).json();
			const r = await fetch("`+tc.path+`", {method: "POST", headers: {"X-CSRF-Token": s.csrf, "Content-Type": "application/json"}, body: `+"`"+tc.body+"`"+` || undefined});
			return r.status + " " + await r.text();
		})()`, chromedp.EvalAwaitPromise))
		must("readonly POST "+tc.path, err)
		if !strings.HasPrefix(got, tc.want) || !strings.Contains(got, "readonly") {
			t.Errorf("readonly POST %s: %s, want %s naming the role", tc.path, got, tc.want)
		}
	}
	nw, err := api.GetNetwork(ctx, &hubv1.GetNetworkRequest{Id: "net-a"})
	must("get net-a", err)
	if nw.GetStatus() != hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE {
		t.Fatalf("net-a is %s after readonly's attempts", nw.GetStatus())
	}
	if _, err := api.GetNetwork(ctx, &hubv1.GetNetworkRequest{Id: "net-x"}); err == nil {
		t.Fatal("readonly added net-x")
	}

	// Forged and expired links.
	forged := link[:len(link)-4] + "AAAA"
	time.Sleep(time.Until(expiredAt) + 100*time.Millisecond)
	for name, l := range map[string]string{"forged": forged, "expired": expiredLink} {
		must("open "+name+" link", chromedp.Do(rctx, chromedp.Navigate(l)))
		if body := text(rctx, `document.body.innerText`); !strings.Contains(body, "console login refused") {
			t.Errorf("%s link: %s", name, body)
		}
	}
	t.Logf("console browser test took %s", time.Since(began).Round(100*time.Millisecond))
}
