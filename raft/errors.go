package raft

import "errors"

// Sentinel errors. The FSM and the validators wrap them with the field or id
// at fault ("networks[a].domains[1]: ..."), and ops/admin maps them to gRPC
// codes in one place, so errors.Is works end to end.
var (
	ErrNotLeader          = errors.New("not the raft leader")
	ErrNoLeader           = errors.New("no raft leader known")
	ErrInvalid            = errors.New("invalid")             // -> InvalidArgument
	ErrNotFound           = errors.New("not found")           // -> NotFound
	ErrAlreadyExists      = errors.New("already exists")      // -> AlreadyExists
	ErrFailedPrecondition = errors.New("failed precondition") // -> FailedPrecondition
	ErrUnknownVersion     = errors.New("unknown command version")
	ErrClosed             = errors.New("raft node closed")
)
