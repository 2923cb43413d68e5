package admin

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"clearhub/proto/hubv1"
	"clearhub/raft"
)

// LogLevel is the node's runtime log level; *slog.LevelVar implements it.
type LogLevel interface {
	Level() slog.Level
	Set(slog.Level)
}

var _ LogLevel = (*slog.LevelVar)(nil)

// logLevels are the levels SetLogLevel takes, the words hubd's --log-level
// and log.level take.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// ParseLogLevel reads debug, info, warn (or warning) or error, in any case.
func ParseLogLevel(s string) (slog.Level, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "warning" {
		s = "warn"
	}
	l, ok := logLevels[s]
	return l, ok
}

// LogLevelName is the word for l that ParseLogLevel reads back ("info"), or
// slog's own form in lower case for a level between them ("info+2").
func LogLevelName(l slog.Level) string {
	return strings.ToLower(l.String())
}

// SetLogLevel reads (empty level) or changes this node's log level. It acts
// on the node that answers only: a cluster-wide change is one call per
// node (hubctl log-level --all). The change is logged and audited.
func (s *Server) SetLogLevel(ctx context.Context, req *hubv1.SetLogLevelRequest) (*hubv1.SetLogLevelResponse, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if s.logLevel == nil {
		return nil, &auditErr{msg: "log level: this node's log level cannot be changed at runtime", kind: raft.ErrFailedPrecondition}
	}
	old := s.logLevel.Level()
	if req.GetLevel() == "" {
		return &hubv1.SetLogLevelResponse{Node: s.nodeID, Level: LogLevelName(old)}, nil
	}
	lvl, ok := ParseLogLevel(req.GetLevel())
	if !ok {
		return nil, fieldErr("level", fmt.Sprintf("%q: want debug, info, warn or error", req.GetLevel()))
	}
	// Say so where the operator will see it whichever way the level moves:
	// before the change when it hides more (under the old level), after
	// it when it shows more (under the new one).
	note := func() {
		s.log.Log(ctx, max(slog.LevelInfo, min(old, lvl)), "log level changed",
			"from", LogLevelName(old), "to", LogLevelName(lvl), "actor", c.Name, "role", c.roleLabel())
	}
	if lvl > old {
		note()
		s.logLevel.Set(lvl)
	} else {
		s.logLevel.Set(lvl)
		note()
	}
	if lvl != old {
		s.audit(ctx, "SetLogLevel", c.Name, fmt.Sprintf("log level of node %s %s -> %s", s.nodeID, LogLevelName(old), LogLevelName(lvl)))
	}
	return &hubv1.SetLogLevelResponse{Node: s.nodeID, Level: LogLevelName(lvl)}, nil
}
