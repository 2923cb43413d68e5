package main

import (
	"sort"
	"strings"
	"time"

	"clearhub/proto/hubv1"
)

// serviceByName maps the command-line names of services to the enum.
var serviceByName = map[string]hubv1.Service{
	"presence": hubv1.Service_SERVICE_PRESENCE,
	"im":       hubv1.Service_SERVICE_IM,
	"session":  hubv1.Service_SERVICE_SESSION,
	"chat":     hubv1.Service_SERVICE_CHAT,
	"file":     hubv1.Service_SERVICE_FILE,
}

// validServices lists the names in enum order, for help and errors.
const validServices = "presence, im, session, chat, file, all"

// allServices is every service in enum order.
func allServices() []hubv1.Service {
	return []hubv1.Service{
		hubv1.Service_SERVICE_PRESENCE,
		hubv1.Service_SERVICE_IM,
		hubv1.Service_SERVICE_SESSION,
		hubv1.Service_SERVICE_CHAT,
		hubv1.Service_SERVICE_FILE,
	}
}

// parseServices turns --services values (comma-separated, repeatable) into
// enum values in enum order without duplicates. "all" means every service.
// The error names flag and lists the valid names.
func parseServices(flag string, vals []string) ([]hubv1.Service, error) {
	seen := map[hubv1.Service]bool{}
	for _, v := range vals {
		for _, name := range strings.Split(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			if name == "all" {
				for _, s := range allServices() {
					seen[s] = true
				}
				continue
			}
			s, ok := serviceByName[name]
			if !ok {
				return nil, usagef("%s: unknown service %q (valid: %s)", flag, name, validServices)
			}
			seen[s] = true
		}
	}
	out := make([]hubv1.Service, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// serviceName is the command-line name of s.
func serviceName(s hubv1.Service) string {
	for n, v := range serviceByName {
		if v == s {
			return n
		}
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "SERVICE_"))
}

// serviceList renders services for tables, "-" when empty.
func serviceList(ss []hubv1.Service) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = serviceName(s)
	}
	return joinOrDash(names)
}

// statusName renders a network status for tables.
func statusName(s hubv1.NetworkStatus) string {
	switch s {
	case hubv1.NetworkStatus_NETWORK_STATUS_ACTIVE:
		return "active"
	case hubv1.NetworkStatus_NETWORK_STATUS_SUSPENDED:
		return "suspended"
	case hubv1.NetworkStatus_NETWORK_STATUS_UNSPECIFIED:
		return "-"
	}
	return s.String()
}

// unixNano renders a timestamp for tables, "-" when unset.
func unixNano(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339)
}
