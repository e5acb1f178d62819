package pgcluster

import "syscall"

// postmasterAttr puts postgres in its own process group and has the kernel
// send it SIGINT when its parent (thread) dies; see the package doc.
func postmasterAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGINT, Credential: cred}
}
