//go:build !linux

package bench

import "syscall"

// serverProcAttr: there is no parent-death signal outside Linux (where the
// WebSocket benchmarks do not run anyway: they read /proc).
func serverProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
