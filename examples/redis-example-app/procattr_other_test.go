//go:build !linux

package main

import "os/exec"

// dieWithTest does nothing where there is no parent-death signal; the tests'
// cleanups still stop every redis-server they start.
func dieWithTest(*exec.Cmd) {}
