// Package bench measures pgcast against references taken in the same run, on
// the same server: `pgcast bench capture` is RunCapture, `pgcast bench
// catalyst` RunCatalyst and `pgcast bench realtime` RunRealtime.
//
// Every scenario runs in its own fresh database, created on the server,
// migrated (which installs the capture triggers) and dropped at the end, so
// that one scenario's leftovers (event log, dead rows) never slow another.
// The WebSocket scenarios run `pgcast serve` as a child process, so that the
// server's CPU time and memory are measured apart from the clients'.
package bench
