package ledger

import "strings"

// NormalizeUser reduces a From/To header value or URI to "user@host" for the
// user index: `"Bob" <sip:bob@B.example:5061;transport=tls>;tag=x` becomes
// "bob@b.example". The display name, scheme, password, port, URI parameters
// and headers and header parameters are dropped; the host is lower-cased
// (RFC 3261 19.1.4 compares hosts case-insensitively) and the user part is
// kept as written, since RFC 3261 19.1.4 compares it case-sensitively. A URI
// without a user part yields just the host. Unparseable input yields "".
func NormalizeUser(s string) string {
	s = strings.TrimSpace(s)
	// name-addr: skip a quoted display name, which may contain '<'.
	if strings.HasPrefix(s, `"`) {
		i := 1
		for i < len(s) && s[i] != '"' {
			if s[i] == '\\' {
				i++
			}
			i++
		}
		if i >= len(s) {
			return ""
		}
		s = s[i+1:]
	}
	if i := strings.IndexByte(s, '<'); i >= 0 {
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			return ""
		}
		s = s[i+1 : i+j]
	} else if i := strings.IndexByte(s, ';'); i >= 0 {
		// addr-spec without brackets: ';' starts header params (RFC 3261 20.10).
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, ':'); i >= 0 {
		switch strings.ToLower(s[:i]) {
		case "sip", "sips", "tel", "pres", "im":
			s = s[i+1:]
		}
	}
	if i := strings.IndexAny(s, ";?"); i >= 0 {
		s = s[:i]
	}
	user, host, hasUser := strings.Cut(s, "@")
	if !hasUser {
		host, user = user, ""
	}
	contiguous := true // user "@" host is still one piece of s
	if i := strings.IndexByte(user, ':'); i >= 0 {
		user = user[:i] // user:password
		contiguous = false
	}
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i >= 0 {
			host = host[:i+1]
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if hasUpper(host) {
		host = strings.ToLower(host)
		contiguous = false
	}
	if host == "" {
		return ""
	}
	if user == "" {
		return host
	}
	if contiguous {
		// The common case (sip:alice@a.example): no new string; this runs
		// for From and To of every entry the hub writes.
		return s[:len(user)+1+len(host)]
	}
	return user + "@" + host
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}
