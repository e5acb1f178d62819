package bench

import "syscall"

// serverProcAttr has the kernel stop the server when the benchmark dies
// without stopping it (the signal is sent when the forking OS thread exits;
// Go retires threads only for goroutines that exit locked to one, so in
// practice that is the process).
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
