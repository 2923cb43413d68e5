// Package tests holds end-to-end tests: they build the real hubd and hubctl
// binaries and drive processes over real sockets on loopback.
package tests
