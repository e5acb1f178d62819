// Package pgcluster starts and stops a private, throwaway PostgreSQL cluster
// from locally installed binaries, for `pgcast dev` (a cluster kept across runs)
// and tests (an ephemeral cluster per test process in a temp dir).
//
// postgres runs as a direct child (not daemonized by pg_ctl) in its own process
// group, so a terminal Ctrl-C reaches only pgcast, which shuts postgres down in
// order. On Linux its parent-death signal is SIGINT. Caveat: the kernel sends
// that when the OS *thread* that forked the child exits; Go only retires threads
// when a goroutine exits locked to one (runtime.LockOSThread), so in practice it
// means process death. Leftovers of a crashed pgcast (and, outside Linux, of any
// killed pgcast) are cleaned up by the next Start.
package pgcluster
