package ws

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Waker is a connection the gate wakes: *Conn.
type Waker interface {
	// WakeNow is Conn.WakeNow.
	WakeNow()
}

// Fan-out gate timing: see FanoutGate.
const (
	gateQuiet    = 250 * time.Microsecond
	gateMaxDelay = 10 * time.Millisecond
)

// FanoutGate holds the writer wakes of a fan-out until the hub has finished
// it (no Enqueue for gateQuiet), or for at most gateMaxDelay, and then
// starts the writers together.
//
// Why: woken at once, a writer runs while the hub is still publishing and
// finds one event to write: one write system call per delivery. With many
// connections it is worse than that: thousands of fresh writers queue for
// the CPU ahead of the publishing goroutine, which then publishes in short
// slices, so every writer again finds one event. Held until the hub pauses,
// each writer finds everything the fan-out (a batch of events from the log)
// queued for it and writes it in one writev. Steady traffic pays about one
// fan-out's duration plus 2 × gateQuiet of latency; under overload, writes
// carry up to gateMaxDelay's worth of events.
//
// The zero value is ready; the Outboxes of one endpoint share one gate,
// calling Enqueued for every event the hub hands them and Hold for the
// connections to wake.
type FanoutGate struct {
	activity atomic.Uint64 // Enqueues so far: the hub is busy while it moves

	mu      sync.Mutex
	held    []Waker // wakes held
	spare   []Waker // the previous batch's array, reused
	timer   *time.Timer
	armed   bool
	first   time.Time // when the oldest held wake came
	checked uint64    // activity at the last check
}

// Enqueued tells the gate that the hub handed an Outbox an event: the
// fan-out goes on.
func (g *FanoutGate) Enqueued() { g.activity.Add(1) }

// Hold holds c's wake until the fan-out pauses.
func (g *FanoutGate) Hold(c Waker) {
	g.mu.Lock()
	g.held = append(g.held, c)
	if !g.armed {
		g.armed = true
		g.first = time.Now()
		g.checked = g.activity.Load()
		if g.timer == nil {
			g.timer = time.AfterFunc(gateQuiet, g.check)
		} else {
			g.timer.Reset(gateQuiet)
		}
	}
	g.mu.Unlock()
}

// check runs on the timer's goroutine: while the hub keeps enqueueing (and
// gateMaxDelay has not passed) it waits another gateQuiet; then it starts
// the held writers.
func (g *FanoutGate) check() {
	g.mu.Lock()
	if n := g.activity.Load(); n != g.checked && time.Since(g.first) < gateMaxDelay {
		g.checked = n
		g.timer.Reset(gateQuiet)
		g.mu.Unlock()
		return
	}
	batch := g.held
	g.held, g.spare = g.spare[:0], nil
	g.armed = false
	g.mu.Unlock()
	wakeAll(batch)
	clear(batch)
	g.mu.Lock()
	if g.spare == nil {
		g.spare = batch[:0]
	}
	g.mu.Unlock()
}

// wakeAll wakes the held writers, each with one write on this goroutine
// that never waits (wakeNow), spread over the available CPUs: a fan-out's
// worth of writes, usually one frame each, costs no goroutine per
// connection.
func wakeAll(conns []Waker) {
	workers := min(runtime.GOMAXPROCS(0), (len(conns)+wakeChunk-1)/wakeChunk)
	if workers <= 1 {
		for _, c := range conns {
			c.WakeNow()
		}
		return
	}
	per := (len(conns) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		part := conns[min(w*per, len(conns)):min((w+1)*per, len(conns))]
		wg.Go(func() {
			for _, c := range part {
				c.WakeNow()
			}
		})
	}
	for _, c := range conns[:per] {
		c.WakeNow()
	}
	wg.Wait()
}

// wakeChunk is the fewest wakes worth another goroutine.
const wakeChunk = 128
