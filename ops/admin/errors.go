package admin

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"clearhub/raft"
)

// Join token errors. Token verification wraps exactly one of them.
var (
	ErrTokenMalformed = errors.New("malformed") // -> InvalidArgument
	ErrTokenInvalid   = errors.New("invalid")   // -> Unauthenticated
	ErrTokenExpired   = errors.New("expired")   // -> Unauthenticated
	ErrTokenRevoked   = errors.New("revoked")   // -> Unauthenticated
)

// errUnauthenticated and errPermissionDenied carry the auth interceptor's
// verdicts through toStatus like every other error.
var (
	errUnauthenticated  = errors.New("unauthenticated")
	errPermissionDenied = errors.New("permission denied")
)

// fieldErr is a request-level validation failure naming the field; it wraps
// raft.ErrInvalid (through *raft.FieldError) so it maps to InvalidArgument.
func fieldErr(field, reason string) error {
	return &raft.FieldError{Field: field, Reason: reason}
}

// authError is an auth failure whose message is exactly msg.
type authError struct {
	msg  string
	kind error
}

func (e *authError) Error() string { return e.msg }
func (e *authError) Unwrap() error { return e.kind }

func unauthenticated(format string, args ...any) error {
	return &authError{msg: fmt.Sprintf(format, args...), kind: errUnauthenticated}
}

func permissionDenied(format string, args ...any) error {
	return &authError{msg: fmt.Sprintf(format, args...), kind: errPermissionDenied}
}

// toStatus is the one place that maps errors to gRPC status codes. The
// message is the error's text, which names the field or id at fault.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if code, ok := codeOf(err); ok {
		return status.Error(code, err.Error())
	}
	// Errors that already are a gRPC status (a forwarded call's answer, a
	// transport failure talking to the leader) pass through unchanged.
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	return status.Error(codes.Internal, err.Error())
}

func codeOf(err error) (codes.Code, bool) {
	switch {
	case errors.Is(err, raft.ErrInvalid), errors.Is(err, ErrTokenMalformed):
		return codes.InvalidArgument, true
	case errors.Is(err, raft.ErrAlreadyExists):
		return codes.AlreadyExists, true
	case errors.Is(err, raft.ErrNotFound):
		return codes.NotFound, true
	case errors.Is(err, raft.ErrFailedPrecondition), errors.Is(err, raft.ErrUnknownVersion):
		return codes.FailedPrecondition, true
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNoLeader), errors.Is(err, raft.ErrClosed):
		return codes.Unavailable, true
	case errors.Is(err, ErrTokenInvalid), errors.Is(err, ErrTokenExpired), errors.Is(err, ErrTokenRevoked), errors.Is(err, errUnauthenticated):
		return codes.Unauthenticated, true
	case errors.Is(err, errPermissionDenied):
		return codes.PermissionDenied, true
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, true
	case errors.Is(err, context.Canceled):
		return codes.Canceled, true
	}
	return codes.OK, false
}

// codeFromUint reads a code carried in a ProposeResponse; anything out of
// range becomes Unknown so a peer cannot smuggle in an invalid code.
func codeFromUint(c uint32) codes.Code {
	if c > uint32(codes.Unauthenticated) {
		return codes.Unknown
	}
	return codes.Code(c)
}
