//go:build !linux

package pgcluster

import "syscall"

// postmasterAttr puts postgres in its own process group. There is no
// parent-death signal outside Linux; leftovers are cleaned by the next Start.
func postmasterAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
