package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgcast/pgcast/internal/startstop"
)

// The WebSocket scenarios run `pgcast serve` as a child process, so that the
// CPU time and memory read from /proc are the server's alone: the clients,
// which live in the benchmark's process, would otherwise be counted too.

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (the kernel's HZ may differ,
// but /proc reports in USER_HZ).
const clockTicks = 100

// serverOptions configure one server process.
type serverOptions struct {
	executable   string // the pgcast binary
	databaseURL  string
	secret       string // HS256 secret, at least 32 bytes
	messageTime  time.Duration
	messageLimit int
	logger       *slog.Logger
}

// serverProc is a running `pgcast serve`.
type serverProc struct {
	cmd      *exec.Cmd
	pid      int
	httpBase string // http://127.0.0.1:port
	wsBase   string // ws://127.0.0.1:port
	metrics  string // http://127.0.0.1:port/metrics (internal listener)
	stderr   *lineTail
	exited   chan struct{} // closed when the process has exited
	waitErr  error         // set before exited is closed
	http     *http.Client  // for readiness and metrics
	stopOnce sync.Once
	stopErr  error
}

// startServer starts `pgcast serve` on free loopback ports and returns once
// /readyz answers 200. A port taken between choosing it and the server
// binding it is retried with new ones.
func startServer(ctx context.Context, o serverOptions) (*serverProc, error) {
	var err error
	for range 3 {
		var p *serverProc
		p, err = startServerOnce(ctx, o)
		if err == nil {
			return p, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

func startServerOnce(ctx context.Context, o serverOptions) (*serverProc, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	internal, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.executable, "serve",
		"--addr", addr,
		"--internal-addr", internal,
		"--message-time", o.messageTime.String(),
		"--message-limit", strconv.Itoa(o.messageLimit),
		"--shutdown-timeout", "5s",
		"--log-level", "warn",
	)
	// Secrets travel in the environment, not on a command line others can
	// read. Inherited PGCAST_ variables are dropped so that the server runs
	// exactly with the settings above and its defaults.
	cmd.Env = append(filteredEnviron(), "DATABASE_URL="+o.databaseURL, "PGCAST_JWT_SECRET="+o.secret)
	tail := &lineTail{logger: o.logger, max: 40}
	cmd.Stdout, cmd.Stderr = tail, tail
	cmd.SysProcAttr = serverProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server %s: %w", o.executable, err)
	}
	p := &serverProc{
		cmd:      cmd,
		pid:      cmd.Process.Pid,
		httpBase: "http://" + addr,
		wsBase:   "ws://" + addr,
		metrics:  "http://" + internal + "/metrics",
		stderr:   tail,
		exited:   make(chan struct{}),
		http:     &http.Client{Timeout: 5 * time.Second},
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitReady(ctx, 60*time.Second); err != nil {
		_ = p.stop()
		return nil, err
	}
	o.logger.Debug("server started", "pid", p.pid, "addr", addr)
	return p, nil
}

// filteredEnviron is this process's environment without DATABASE_URL and
// PGCAST_ variables.
func filteredEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "DATABASE_URL" || strings.HasPrefix(name, "PGCAST_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// freePort returns a loopback address with a port that was free just now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}

func (p *serverProc) waitReady(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.httpBase+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := p.http.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready within %s%s", within, p.stderr.suffix())
		}
		select {
		case <-p.exited:
			return fmt.Errorf("server exited before it was ready (%v)%s", p.waitErr, p.stderr.suffix())
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// stop sends SIGTERM, waits for the graceful shutdown and kills the process
// if it takes too long. It is idempotent.
func (p *serverProc) stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			t := time.NewTimer(20 * time.Second)
			select {
			case <-p.exited:
				t.Stop()
			case <-t.C:
				_ = p.cmd.Process.Kill()
				<-p.exited
				p.stopErr = fmt.Errorf("server did not stop within 20 s of SIGTERM: killed%s", p.stderr.suffix())
				return
			}
		}
		var ee *exec.ExitError
		if p.waitErr != nil && !(errors.As(p.waitErr, &ee) && ee.Success()) {
			p.stopErr = fmt.Errorf("server exited with %v%s", p.waitErr, p.stderr.suffix())
		}
	})
	return p.stopErr
}

// alive reports an error if the server has exited.
func (p *serverProc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("server exited during the run (%v)%s", p.waitErr, p.stderr.suffix())
	default:
		return nil
	}
}

// cpuTime is the server's user plus system CPU time so far, and the system
// part.
func (p *serverProc) cpuTime() (total, sys time.Duration, err error) {
	return procCPUTimes(strconv.Itoa(p.pid))
}

// writeSyscalls is how many write-type system calls (write, writev,
// sendmsg, …) the server has made so far (/proc/<pid>/io's syscw); ok is
// false where that file cannot be read.
func (p *serverProc) writeSyscalls() (n int64, ok bool) {
	n, err := strconv.ParseInt(procField("/proc/"+strconv.Itoa(p.pid)+"/io", "syscw"), 10, 64)
	return n, err == nil
}

// rss is the server's resident set size in bytes.
func (p *serverProc) rss() (int64, error) {
	v := procField("/proc/"+strconv.Itoa(p.pid)+"/status", "VmRSS")
	kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read server RSS: VmRSS %q", v)
	}
	return kb * 1024, nil
}

// minRSS samples the server's RSS n times, every, and returns the smallest:
// between garbage collections the heap holds garbage that the next cycle
// frees, so the minimum is the closest to what the connections keep alive.
func (p *serverProc) minRSS(ctx context.Context, n int, every time.Duration) (int64, error) {
	best := int64(-1)
	for i := range n {
		if i > 0 {
			if err := startstop.Sleep(ctx, every); err != nil {
				return 0, err
			}
		}
		v, err := p.rss()
		if err != nil {
			return 0, err
		}
		if best < 0 || v < best {
			best = v
		}
	}
	return best, nil
}

// procCPUTime reads utime+stime (fields 14 and 15) of /proc/<pid>/stat,
// which count every thread of the process, the exited ones included.
func procCPUTime(pid string) (time.Duration, error) {
	total, _, err := procCPUTimes(pid)
	return total, err
}

// procCPUTimes is utime+stime and stime.
func procCPUTimes(pid string) (total, sys time.Duration, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read CPU time: %w", err)
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (total, sys time.Duration, err error) {
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses: the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("read CPU time: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, errors.New("read CPU time: short /proc stat")
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, errors.New("read CPU time: malformed /proc stat")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, time.Duration(st) * time.Second / clockTicks, nil
}

// machineBusy is the CPU time every core of the machine spent busy so far
// (the first line of /proc/stat minus idle and iowait).
func machineBusy() (time.Duration, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read machine CPU time: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, errors.New("read machine CPU time: empty /proc/stat")
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, errors.New("read machine CPU time: malformed /proc/stat")
	}
	var busy int64
	// user nice system idle iowait irq softirq steal: all but idle, iowait.
	for i, s := range fields[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, errors.New("read machine CPU time: malformed /proc/stat")
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// cpuMeter measures the average cores used by the server, this process (the
// clients and writers) and the whole machine over a window.
type cpuMeter struct {
	server                   *serverProc
	at                       time.Time
	srv, srvSys, self, total time.Duration
	writes                   int64 // the server's write system calls
	haveWrites               bool
}

func startCPUMeter(p *serverProc) (*cpuMeter, error) {
	m := &cpuMeter{server: p, at: time.Now()}
	m.writes, m.haveWrites = p.writeSyscalls()
	var err error
	if m.srv, m.srvSys, err = p.cpuTime(); err != nil {
		return nil, err
	}
	if m.self, err = procCPUTime("self"); err != nil {
		return nil, err
	}
	if m.total, err = machineBusy(); err != nil {
		return nil, err
	}
	return m, nil
}

// CPUUse is the average number of cores busy over a window.
type CPUUse struct {
	// Server is the pgcast server process alone; ServerSys the part in
	// the kernel (over loopback it may include some of the clients' TCP
	// receive processing, which the kernel can do in the sender's context).
	Server    float64 `json:"server_cores"`
	ServerSys float64 `json:"server_sys_cores"`
	// Bench is the benchmark's own process: the clients and the writers.
	Bench float64 `json:"bench_cores"`
	// Machine is every process on the machine, Postgres included.
	Machine float64 `json:"machine_cores"`
	// ServerWritesPerS is the server's write-type system calls per second
	// (its socket writes, mostly), and ServerSysUsPerWrite its kernel time
	// divided by them; zero where /proc/<pid>/io cannot be read.
	ServerWritesPerS    float64 `json:"server_write_syscalls_per_s,omitempty"`
	ServerSysUsPerWrite float64 `json:"server_sys_us_per_write,omitempty"`
}

func (m *cpuMeter) read() (CPUUse, error) {
	wall := time.Since(m.at).Seconds()
	srv, srvSys, err := m.server.cpuTime()
	if err != nil {
		return CPUUse{}, err
	}
	self, err := procCPUTime("self")
	if err != nil {
		return CPUUse{}, err
	}
	total, err := machineBusy()
	if err != nil {
		return CPUUse{}, err
	}
	u := CPUUse{
		Server:    round3((srv - m.srv).Seconds() / wall),
		ServerSys: round3((srvSys - m.srvSys).Seconds() / wall),
		Bench:     round3((self - m.self).Seconds() / wall),
		Machine:   round3((total - m.total).Seconds() / wall),
	}
	if writes, ok := m.server.writeSyscalls(); ok && m.haveWrites && writes > m.writes {
		u.ServerWritesPerS = round1(float64(writes-m.writes) / wall)
		u.ServerSysUsPerWrite = round3(float64((srvSys - m.srvSys).Microseconds()) / float64(writes-m.writes))
	}
	return u, nil
}

// serverCPU is the server's CPU time since the meter started.
func (m *cpuMeter) serverCPU() (time.Duration, error) {
	srv, _, err := m.server.cpuTime()
	return srv - m.srv, err
}

// gauge reads one sample from the server's /metrics, e.g.
// `pgcast_ws_connections{endpoint="object-records"}`; a missing sample is 0.
func (p *serverProc) gauge(ctx context.Context, sample string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metrics, nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read server metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("read server metrics: %s: %w", sample, err)
			}
			return f, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read server metrics: %w", err)
	}
	return 0, nil
}

// waitGauge waits until the sample reads want.
func (p *serverProc) waitGauge(ctx context.Context, sample string, want float64, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last float64
	for {
		v, err := p.gauge(ctx, sample)
		if err != nil {
			return err
		}
		if v == want {
			return nil
		}
		last = v
		if time.Now().After(deadline) {
			return fmt.Errorf("server metric %s is %v after %s, want %v", sample, last, within, want)
		}
		if err := startstop.Sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}
