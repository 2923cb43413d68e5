//go:build !unix

package hub

func defaultMaxConnections() int { return 768 }
