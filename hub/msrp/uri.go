package msrp

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// URI is an MSRP URI (RFC 4975 section 6): msrp[s]://[user@]host[:port]/session-id;transport.
type URI struct {
	Scheme    string // "msrp" or "msrps"
	Host      string // without brackets for IPv6
	Port      int
	Session   string
	Transport string // lower case, "tcp"
}

// ParseURI parses s.
func ParseURI(s string) (URI, error) {
	var u URI
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return u, fmt.Errorf("%w: URI %.60q", ErrMalformed, s)
	}
	u.Scheme = strings.ToLower(scheme)
	if u.Scheme != "msrp" && u.Scheme != "msrps" {
		return u, fmt.Errorf("%w: URI scheme %.10q", ErrMalformed, scheme)
	}
	auth, path, ok := strings.Cut(rest, "/")
	if !ok {
		return u, fmt.Errorf("%w: URI without session id %.60q", ErrMalformed, s)
	}
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		auth = auth[at+1:]
	}
	host, port := auth, ""
	if strings.HasPrefix(auth, "[") || strings.Count(auth, ":") == 1 {
		h, p, err := net.SplitHostPort(auth)
		if err != nil {
			if !strings.HasPrefix(auth, "[") || !strings.HasSuffix(auth, "]") {
				return u, fmt.Errorf("%w: URI authority %.60q", ErrMalformed, auth)
			}
			h = auth[1 : len(auth)-1]
		}
		host, port = h, p
	}
	if host == "" {
		return u, fmt.Errorf("%w: URI without host %.60q", ErrMalformed, s)
	}
	u.Host = strings.ToLower(host)
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 {
			return u, fmt.Errorf("%w: URI port %.10q", ErrMalformed, port)
		}
		u.Port = n
	}
	sess, params, ok := strings.Cut(path, ";")
	if !ok || sess == "" {
		return u, fmt.Errorf("%w: URI needs session-id;transport %.60q", ErrMalformed, s)
	}
	u.Session = sess
	tr, _, _ := strings.Cut(params, ";")
	u.Transport = strings.ToLower(tr)
	if u.Transport == "" {
		return u, fmt.Errorf("%w: URI without transport %.60q", ErrMalformed, s)
	}
	return u, nil
}

// String formats u.
func (u URI) String() string {
	host := u.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if u.Port != 0 {
		host += ":" + strconv.Itoa(u.Port)
	}
	return u.Scheme + "://" + host + "/" + u.Session + ";" + u.Transport
}

// Equal compares per RFC 4975 section 6.1: scheme, host and transport
// case-insensitively (ParseURI lower-cases them), the port, and the
// session-id exactly (it is case-sensitive).
func (u URI) Equal(v URI) bool {
	return u.Scheme == v.Scheme && u.Host == v.Host && u.Port == v.Port && u.Session == v.Session && u.Transport == v.Transport
}

// Addr is the host:port to connect to (port 2855, the registered MSRP
// port, when the URI has none; RFC 4975 section 6).
func (u URI) Addr() string {
	p := u.Port
	if p == 0 {
		p = 2855
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(p))
}
