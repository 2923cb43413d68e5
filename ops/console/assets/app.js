// clearhub operator console. Plain JavaScript, no build step: every read
// and change is a same-origin call to the console's JSON API, which makes
// it through the admin API as the logged-in operator. Text from the
// server is only ever set with textContent (never parsed as HTML), and the
// Content-Security-Policy allows no inline script.
"use strict";

const state = { session: null, networks: [], traffic: null, editing: null };

function $(sel) { return document.querySelector(sel); }

// el builds an element: el("td", {class: "x"}, "text", child, ...).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v == null) continue;
    if (k === "on") { for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f); }
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids) {
    if (k == null) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function setRows(table, rows) {
  const tb = $(table + " tbody");
  tb.replaceChildren(...rows);
}

function say(msg, bad) {
  const s = $("#status");
  s.textContent = msg || "";
  s.className = bad ? "bad" : (msg ? "good" : "");
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") {
    opts.headers["X-CSRF-Token"] = state.session ? state.session.csrf : "";
  }
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
  if (!r.ok) {
    if (r.status === 401) { location.reload(); }
    throw new Error((data && data.error) || r.statusText);
  }
  return data;
}

function list(v) { return (v || []).join(", "); }
function split(v) { return v.split(/[,\s]+/).map(s => s.trim()).filter(Boolean); }
function svc(v) { return String(v).replace(/^SERVICE_/, "").toLowerCase(); }
function num(v, digits) { return (v || 0).toFixed(digits || 0); }
function when(ns) {
  if (!ns || ns === "0" || !/^\d+$/.test(String(ns))) return "";
  return new Date(Number(BigInt(ns) / 1000000n)).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

// ---- pages --------------------------------------------------------------

const loaders = {
  health: loadHealth, networks: loadNetworks, policy: loadPolicy, route: loadRoute, rooms: loadRooms,
  queues: loadQueues, traffic: () => renderTraffic(state.traffic), audit: () => {},
};

function show(page) {
  if (!loaders[page]) page = "health";
  for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== "page-" + page;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  say("");
  Promise.resolve(loaders[page]()).catch(e => say(e.message, true));
}

async function loadHealth() { renderCluster(await api("GET", "/api/cluster")); }

function renderCluster(st) {
  if (!st) return;
  const cards = [["leader", st.leader || "none"], ["term", st.term], ["commit index", st.commit_index],
    ["answered by", st.node_id], ["nodes", (st.nodes || []).length]];
  $("#cluster-summary").replaceChildren(...cards.map(([k, v]) =>
    el("div", { class: "card" + (k === "leader" && !st.leader ? " bad" : "") }, el("span", { class: "k" }, k), el("span", { class: "v" }, v))));
  setRows("#nodes", (st.nodes || []).map(n => el("tr", { class: n.healthy ? "" : "bad" },
    el("td", {}, n.id), el("td", {}, n.state), el("td", {}, n.healthy ? "yes" : "NO"), el("td", {}, n.applied_index),
    el("td", {}, n.suffrage), el("td", {}, n.version), el("td", {}, list(n.sip_addrs)), el("td", {}, n.admin_addr),
    el("td", {}, (n.draining ? "draining " : "") + (n.error || "")))));
}

async function loadNetworks() {
  const r = await api("GET", "/api/networks");
  state.networks = r.networks || [];
  renderNetworks();
}

function edgeSummary(netID) {
  const es = ((state.traffic && state.traffic.edges) || []).filter(e => e.network === netID);
  if (!es.length) return "no attempts yet";
  return es.map(e => e.edge + ": " + Object.entries(e.outcomes).map(([k, v]) => k + " " + v).join(", ")).join("; ");
}

function renderNetworks() {
  const canChange = state.session.can_change;
  setRows("#networks", state.networks.map(n => {
    const suspended = n.status === "NETWORK_STATUS_SUSPENDED";
    const id = n.identity || {};
    const ident = [];
    if ((id.ca_pem || []).length) ident.push(id.ca_pem.length + " CA");
    if ((id.pins || []).length) ident.push(id.pins.length + " pin");
    if ((id.cidrs || []).length) ident.push(list(id.cidrs));
    const actions = el("td", { class: "actions" },
      el("button", { type: "button", class: "change", id: "edit-" + n.id, disabled: !canChange, on: { click: () => editNetwork(n) } }, "Edit"),
      el("button", { type: "button", class: "change", id: (suspended ? "resume-" : "suspend-") + n.id, disabled: !canChange,
        on: { click: () => suspendNetwork(n.id, !suspended) } }, suspended ? "Resume" : "Suspend"),
      // Not a change: every role that may read the networks may test.
      el("button", { type: "button", id: "test-" + n.id, title: "onboarding self-test: OPTIONS to each edge from this node",
        on: { click: () => testNetwork(n.id) } }, "Test"));
    return el("tr", { id: "net-" + n.id, class: suspended ? "suspended" : "" },
      el("td", {}, n.id), el("td", {}, n.display_name), el("td", {}, list(n.domains)), el("td", {}, list(n.edges)),
      el("td", {}, ident.join("; ")), el("td", {}, (n.services || []).map(svc).join(", ") || "all"),
      el("td", { class: "status" }, suspended ? "suspended" : "active"), el("td", { class: "muted edgehealth" }, edgeSummary(n.id)), actions);
  }));
}

function serviceBoxes() {
  const fs = $("#net-services");
  fs.replaceChildren(el("legend", {}, "services (none: all)"), ...state.session.services.map(s =>
    el("label", {}, el("input", { type: "checkbox", name: "svc", value: s, id: "net-svc-" + s }), " " + s)));
}

function editNetwork(n) {
  state.editing = n;
  $("#net-form-title").textContent = "Edit network " + n.id;
  $("#net-id").value = n.id;
  $("#net-id").readOnly = true;
  $("#net-name").value = n.display_name || "";
  $("#net-domains").value = list(n.domains);
  $("#net-edges").value = list(n.edges);
  const id = n.identity || {};
  $("#net-cidrs").value = list(id.cidrs);
  $("#net-tls-cidrs").value = list(id.tls_cidrs);
  $("#net-pins").value = list(id.pins);
  $("#net-ca").value = (id.ca_pem || []).join("\n");
  const have = (n.services || []).map(svc);
  for (const b of document.querySelectorAll("#net-services input")) b.checked = have.includes(b.value);
  $("#net-submit").textContent = "Save changes";
  $("#net-cancel").hidden = false;
}

function resetNetForm() {
  state.editing = null;
  $("#net-form").reset();
  $("#net-id").readOnly = false;
  $("#net-form-title").textContent = "Add a network";
  $("#net-submit").textContent = "Add network";
  $("#net-cancel").hidden = true;
}

async function submitNetwork(ev) {
  ev.preventDefault();
  const f = ev.target;
  const ca = f.ca_pem.value.trim();
  const body = {
    id: f.id.value.trim(), display_name: f.display_name.value.trim(), domains: split(f.domains.value),
    edges: split(f.edges.value), cidrs: split(f.cidrs.value), tls_cidrs: split(f.tls_cidrs.value),
    pins: split(f.pins.value), ca_pem: ca ? ca.split(/(?<=-----END CERTIFICATE-----)\s*/).filter(Boolean) : [],
    services: [...document.querySelectorAll("#net-services input:checked")].map(b => b.value),
  };
  try {
    if (state.editing) {
      // A string: nanoseconds lose precision as a JavaScript number.
      body.if_updated_unix_nano = String(state.editing.updated_unix_nano || "0");
      const id = body.id;
      delete body.id;
      await api("POST", "/api/networks/" + encodeURIComponent(id), body);
      say("network " + id + " updated");
    } else {
      await api("POST", "/api/networks", body);
      say("network " + body.id + " added");
    }
    resetNetForm();
    await loadNetworks();
  } catch (e) { say(e.message, true); }
}

async function suspendNetwork(id, suspend) {
  try {
    await api("POST", "/api/networks/" + encodeURIComponent(id) + (suspend ? "/suspend" : "/resume"));
    say("network " + id + (suspend ? " suspended" : " resumed"));
    await loadNetworks();
  } catch (e) { say(e.message, true); }
}

// testNetwork runs the onboarding self-test (hubctl network test) on this
// node and shows its report above the form.
async function testNetwork(id) {
  const box = $("#net-test");
  box.hidden = false;
  $("#net-test-title").textContent = "Network test: " + id;
  const verdict = $("#net-test-verdict");
  verdict.textContent = "probing the edges of " + id + " from this node…";
  verdict.className = "verdict muted";
  for (const t of ["#net-test-summary", "#net-test-edges"]) setRows(t, []);
  $("#net-test-missing").replaceChildren();
  let v;
  try { v = await api("POST", "/api/networks/" + encodeURIComponent(id) + "/test"); }
  catch (e) { verdict.textContent = e.message; verdict.className = "verdict bad"; return; }
  verdict.textContent = v.ready ? "ready: nothing missing" : "not ready: " + v.missing.length + " thing(s) missing before traffic can flow";
  verdict.className = "verdict " + (v.ready ? "good" : "bad");
  const grants = (gs) => gs.map(g => g.network + ": " + g.services.join(", ")).join("; ") || "nobody";
  const idn = v.identity || {};
  setRows("#net-test-summary", [
    ["status", v.status], ["domains", list(v.domains) || "none"], ["services", v.services],
    ["member CAs", list(idn.member_cas) || "none"], ["pins", idn.pins], ["lab CIDRs", list(idn.lab_cidrs) || "none"],
    ["TLS CIDRs", list(idn.tls_cidrs) || "none"], ["may be reached by", grants(v.may_be_reached_by)], ["may reach", grants(v.may_reach)],
  ].map(([k, val]) => el("tr", {}, el("th", {}, k), el("td", {}, val))));
  setRows("#net-test-edges", v.edges.map((e, i) => {
    const t = e.tls;
    const answer = e.reachable ? e.status + " " + e.reason + " in " + num(e.rtt_ms, 1) + " ms" + (e.server ? " (" + e.server + ")" : "") : "FAILED: " + e.error;
    const cert = !t ? "" : !t.subject ? "presented " + t.client_certificate : t.subject + ", names " + (list(t.names) || "none") +
      "; trusted " + (t.trusted ? "yes" : "NO") + ", name matches a domain " + (t.name_match ? "yes" : "NO") +
      ", the hub attributes it to " + (t.identifies || "nobody") + "; presented " + t.client_certificate;
    const ok = e.reachable && (!t || t.identifies === v.network);
    return el("tr", { class: ok ? "" : "bad" }, el("td", {}, i + 1), el("td", {}, e.uri), el("td", {}, e.transport || ""),
      el("td", {}, e.address || ""), el("td", { class: "answer" }, answer), el("td", {}, cert));
  }));
  $("#net-test-missing").replaceChildren(...(v.missing.length ? v.missing.map(m => el("li", { class: "bad" }, m)) : [el("li", { class: "good" }, "nothing")]));
}

// loadRoute fills the source select with the networks (keeping the one
// chosen) and the service select once.
async function loadRoute() {
  const r = await api("GET", "/api/networks");
  state.networks = r.networks || [];
  const sel = $("#route-from"), keep = sel.value;
  sel.replaceChildren(...state.networks.map(n => el("option", { value: n.id }, n.id + (n.display_name ? " (" + n.display_name + ")" : ""))));
  if (keep && state.networks.some(n => n.id === keep)) sel.value = keep;
  const svcSel = $("#route-service");
  if (!svcSel.options.length) {
    svcSel.replaceChildren(...state.session.route_services.map(s => el("option", { value: s, selected: s === "im" }, s === "any" ? "any (OPTIONS)" : s)));
  }
}

async function checkRoute(ev) {
  ev.preventDefault();
  const f = ev.target;
  const p = new URLSearchParams({ from: f.from.value, uri: f.uri.value.trim(), service: f.service.value, size: f.size.value.trim() });
  const out = $("#route-result"), verdict = $("#route-verdict");
  out.hidden = false;
  let v;
  try { v = await api("GET", "/api/route-check?" + p); }
  catch (e) {
    verdict.textContent = e.message; verdict.className = "verdict bad";
    setRows("#route-detail", []); setRows("#route-edges", []); $("#route-notes").replaceChildren();
    return;
  }
  verdict.textContent = v.allowed ? "allowed: forwarded to " + v.destination : "refused: " + v.status + " " + v.reason;
  verdict.className = "verdict " + (v.allowed ? "good" : "bad");
  verdict.dataset.allowed = v.allowed ? "1" : "0";
  setRows("#route-detail", [
    ["request", v.method + " " + v.request_uri + (v.event ? " (Event " + v.event + ")" : "") + " from " + v.from],
    ["service", v.service || "—"], ["SIP answer", v.allowed ? "none from the hub: forwarded" : v.status + " " + v.reason],
    ["why", v.why], ["refusal label", v.refusal_label || "—"], ["destination network", v.destination || "—"],
  ].map(([k, val]) => el("tr", {}, el("th", {}, k), el("td", {}, val))));
  setRows("#route-edges", v.edges.length ? v.edges.map(e => el("tr", {}, el("td", {}, e.order), el("td", {}, e.uri), el("td", {}, e.transport), el("td", {}, e.address)))
    : [el("tr", {}, el("td", { colspan: 4, class: "muted" }, "none"))]);
  $("#route-notes").replaceChildren(...(v.notes || []).map(n => el("li", {}, n)));
}

async function loadPolicy() {
  const m = await api("GET", "/api/policy");
  const canChange = state.session.can_change;
  const box = $("#policy");
  const nets = m.networks || [];
  if (nets.length < 2) { box.replaceChildren(el("p", { class: "muted" }, "Add at least two networks to set a policy.")); return; }
  box.replaceChildren(...nets.map(dst => {
    const allowed = (m.allowed || {})[dst] || {};
    const everyone = (m.all_members || {})[dst] || [];
    const head = el("tr", {}, el("th", {}, "from \\ service"), ...m.services.map(s => el("th", {}, s)));
    const rows = nets.filter(src => src !== dst).map(src => el("tr", {}, el("th", {}, src), ...m.services.map(s => {
      const on = (allowed[src] || []).includes(s);
      const viaAll = everyone.includes(s);
      return el("td", {}, el("button", {
        type: "button", class: "cell change " + (on ? "allow" : viaAll ? "viaall" : "deny"), id: ["cell", dst, src, s].join("-"),
        title: on ? "allowed: click to deny" : viaAll ? "allowed for every member; click to allow this source itself" : "denied: click to allow",
        disabled: !canChange, "aria-pressed": on ? "true" : "false",
        on: { click: () => togglePolicy(dst, src, s, !on) },
      }, on ? "allow" : viaAll ? "all" : "—"));
    })));
    return el("div", { class: "matrix" }, el("h3", {}, "to " + dst), el("table", { id: "policy-" + dst }, el("thead", {}, head), el("tbody", {}, ...rows)));
  }));
}

async function togglePolicy(dst, src, service, allow) {
  try {
    await api("POST", "/api/policy", { destination: dst, source: src, service, allow });
    say((allow ? "allowed " : "denied ") + service + " from " + src + " to " + dst);
    await loadPolicy();
  } catch (e) { say(e.message, true); }
}

async function loadRooms() {
  const detail = (v) => { const d = $("#detail"); d.textContent = JSON.stringify(v, null, 2); d.hidden = false; };
  const [rooms, lists] = await Promise.allSettled([api("GET", "/api/rooms"), api("GET", "/api/lists")]);
  if (rooms.status === "fulfilled") {
    setRows("#rooms", (rooms.value.rooms || []).map(r => el("tr", { class: "click", on: { click: async () => detail(await api("GET", "/api/rooms/" + encodeURIComponent(r.uri))) } },
      el("td", {}, r.uri), el("td", {}, (r.members || []).length),
      el("td", { class: "muted" }, [r.subject, r.owner && "owner " + r.owner, r.members_only && "members only", r.moderated && "moderated"].filter(Boolean).join("; ")))));
  } else setRows("#rooms", [el("tr", {}, el("td", { colspan: 3, class: "bad" }, rooms.reason.message))]);
  if (lists.status === "fulfilled") {
    setRows("#lists", (lists.value.lists || []).map(l => el("tr", { class: "click", on: { click: async () => detail(await api("GET", "/api/lists/" + encodeURIComponent(l.uri))) } },
      el("td", {}, l.uri), el("td", {}, l.owner || "public"), el("td", {}, (l.entries || []).length))));
  } else setRows("#lists", [el("tr", {}, el("td", { colspan: 3, class: "bad" }, lists.reason.message))]);
}

async function loadQueues() {
  const r = await api("GET", "/api/queues");
  const canChange = state.session.can_change;
  setRows("#queues", (r.queues || []).map(q => el("tr", { class: "click", on: { click: () => showQueue(q.network) } },
    el("td", {}, q.network), el("td", {}, q.messages), el("td", {}, q.bytes), el("td", {}, when(q.oldest_unix_nano)),
    el("td", {}, el("button", { type: "button", class: "change", disabled: !canChange, on: { click: async (ev) => {
      ev.stopPropagation();
      try { await api("POST", "/api/queues/" + encodeURIComponent(q.network) + "/retry"); say("retrying " + q.network); } catch (e) { say(e.message, true); }
    } } }, "Retry now")))));
}

async function showQueue(network) {
  const r = await api("GET", "/api/queues/" + encodeURIComponent(network));
  $("#queue-msgs").hidden = false;
  setRows("#queue-msgs", (r.messages || []).map(m => el("tr", {}, el("td", {}, m.id), el("td", {}, m.source), el("td", {}, m.call_id), el("td", {}, m.from), el("td", {}, m.to))));
}

function renderTraffic(t) {
  if (!t) return;
  $("#traffic-time").textContent = "at " + t.time.replace(/\.\d+/, "");
  setRows("#traffic", (t.networks || []).map(n => el("tr", { id: "traffic-" + n.network },
    el("td", {}, n.network), el("td", { class: "sent" }, num(n.sent)), el("td", {}, num(n.sent_rate, 1)),
    el("td", { class: "received" }, num(n.received)), el("td", {}, num(n.received_rate, 1)),
    el("td", { class: "messages" }, num(n.messages)), el("td", { class: "refused" }, num(n.refused)),
    el("td", {}, Object.entries(n.refused_by_status || {}).map(([k, v]) => k + ": " + v).join(", ")),
    el("td", {}, n.latency_mean_ms ? num(n.latency_mean_ms, 1) + " ms" : ""), el("td", {}, n.latency_p95_ms ? num(n.latency_p95_ms, 0) + " ms" : ""))));
  setRows("#refusals", Object.entries(t.refusals_by_reason || {}).sort().map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))));
  setRows("#edges", (t.edges || []).map(e => el("tr", {}, el("td", {}, e.network), el("td", {}, e.edge),
    el("td", {}, Object.entries(e.outcomes).map(([k, v]) => k + " " + v).join(", ")))));
}

function auditParams() {
  const f = $("#audit-form");
  const p = new URLSearchParams();
  for (const k of ["since", "until", "network", "user", "call_id", "room", "kind"]) {
    const v = f[k].value.trim();
    if (v) p.set(k, (k === "since" || k === "until") && v.length <= 19 ? v + (v.length === 16 ? ":00Z" : "Z") : v);
  }
  if (f.cluster.checked) p.set("cluster", "1");
  return p;
}

async function searchAudit(ev) {
  ev.preventDefault();
  try {
    const r = await api("GET", "/api/audit?" + auditParams());
    const rows = r.entries || [];
    $("#audit-count").textContent = rows.length + " matching entries shown (" + r.scanned + " scanned)";
    setRows("#audit", rows.map(e => el("tr", { class: "entry" },
      el("td", {}, when(String(e.time))), el("td", {}, e.node), el("td", {}, e.seq), el("td", {}, e.kind), el("td", {}, e.method),
      el("td", {}, e.src_net), el("td", {}, e.dst_net), el("td", {}, e.status || ""), el("td", { class: "callid" }, e.call_id),
      el("td", {}, e.from), el("td", {}, e.to), el("td", {}, e.reason))));
  } catch (e) { say(e.message, true); }
}

// exportAudit downloads the export as a stream, counting entries as they
// arrive (the progress), then offers the file.
async function exportAudit() {
  const prog = $("#export-progress"), st = $("#export-status"), link = $("#export-link");
  prog.hidden = false; link.hidden = true; prog.removeAttribute("value");
  try {
    const r = await fetch("/api/audit/export?" + auditParams(), { credentials: "same-origin" });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    const reader = r.body.getReader();
    const parts = [];
    let lines = 0, bytes = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      bytes += value.length;
      for (const b of value) if (b === 10) lines++;
      st.textContent = "exporting: " + lines + " entries, " + bytes + " bytes";
    }
    prog.max = 1; prog.value = 1;
    st.textContent = "export done: " + lines + " entries, " + bytes + " bytes (check it offline with hubctl audit verify)";
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob(parts, { type: "application/x-ndjson" }));
    link.hidden = false;
  } catch (e) { st.textContent = ""; prog.hidden = true; say(e.message, true); }
}

async function verifyAudit() {
  const out = $("#verify-result");
  out.textContent = "verifying the node's ledger…";
  out.className = "";
  try {
    const r = await api("POST", "/api/audit/verify");
    const s = r.scrub, cp = r.checkpoint || {};
    out.textContent = (s.ok ? "ledger verified" : "LEDGER DAMAGED at seq " + s.first_bad_seq + ": " + s.error) +
      " — node " + s.node + ", " + s.entries_checked + " entries and " + s.tree_nodes_checked + " tree nodes checked; latest checkpoint size " + (cp.tree_size || 0);
    out.className = s.ok ? "good" : "bad";
  } catch (e) { out.textContent = e.message; out.className = "bad"; }
}

// ---- live updates -------------------------------------------------------

function live() {
  const es = new EventSource("/api/events");
  const dot = $("#live");
  es.addEventListener("open", () => { dot.className = "live on"; });
  es.addEventListener("error", () => { dot.className = "live off"; });
  es.addEventListener("traffic", (m) => {
    state.traffic = JSON.parse(m.data);
    if (!$("#page-traffic").hidden) renderTraffic(state.traffic);
    if (!$("#page-networks").hidden) {
      // Only the edge health cells: the rest of the table (and a half
      // filled form) stays as it is.
      for (const n of state.networks) {
        const td = document.querySelector("#net-" + CSS.escape(n.id) + " .edgehealth");
        if (td) td.textContent = edgeSummary(n.id);
      }
    }
  });
  es.addEventListener("cluster", (m) => { if (!$("#page-health").hidden) renderCluster(JSON.parse(m.data)); });
  es.addEventListener("ended", () => { es.close(); dot.className = "live off"; say("session ended: log in again", true); });
}

async function main() {
  try {
    state.session = await api("GET", "/api/session");
  } catch (e) { say(e.message, true); return; }
  const s = state.session;
  $("#who").textContent = s.name + " (" + s.role + ")";
  $("#node").textContent = "node " + s.node;
  if (!s.can_change) document.body.classList.add("readonly");
  serviceBoxes();
  $("#net-form").addEventListener("submit", submitNetwork);
  $("#net-cancel").addEventListener("click", resetNetForm);
  for (const b of document.querySelectorAll("#net-form input, #net-form textarea, #net-form button")) b.disabled = !s.can_change;
  $("#route-form").addEventListener("submit", checkRoute);
  $("#audit-form").addEventListener("submit", searchAudit);
  $("#audit-export").addEventListener("click", exportAudit);
  $("#audit-verify").addEventListener("click", verifyAudit);
  $("#logout").addEventListener("click", async () => { try { await api("POST", "/logout"); } finally { location.href = "/"; } });
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  live();
  show(location.hash.slice(1));
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", main);
