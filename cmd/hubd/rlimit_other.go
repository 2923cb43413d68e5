//go:build !unix

package main

import "log/slog"

func raiseFileLimit(*slog.Logger) {}
