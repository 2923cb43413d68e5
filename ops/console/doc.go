// Package console is the operator web console (issue 15, docs/console.md):
// plain HTML, CSS and JavaScript embedded in the binary (no build step, no
// CDN), served by hubd over TLS with the node certificate.
//
// Trust. A browser carries no client certificate, so an operator who has
// one asks the admin API for a login link (ConsoleService.CreateLogin,
// `hubctl console login`): a random, single-use token, valid for a minute,
// bound to that certificate's name, admin role and serial. The browser
// trades it for a session cookie (HttpOnly, Secure, SameSite=Strict). For
// the session the console holds, in memory only, a short-lived operator
// certificate from the cluster CA with the same name and role, and makes
// every read and change as a gRPC client of the node's own admin listener
// with it. So the admin API's per-RPC access table decides what the
// console may do, and its audit trail names the person, exactly as for
// hubctl. The console refuses changes for roles that may change nothing
// (readonly, auditor) before calling, and ends a session whose original
// certificate is revoked or expires.
//
// Every state-changing request carries the session's CSRF token in a
// header and a same-origin Origin; pages load only the console's own
// script and style files (Content-Security-Policy without 'unsafe-inline').
package console
