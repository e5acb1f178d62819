package server

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/stream"
)

const (
	// replayWindow is how many frames a replay may queue ahead of the
	// writer before it waits: a slow client slows its replay down instead of
	// growing the queue.
	replayWindow = 256
	// rtKeepCap is the queue capacity kept once the queue empties (2 KiB):
	// enough for steady traffic without reallocating; a burst's larger
	// backing array is let go.
	rtKeepCap = 64
	// defaultDedupWindow is how long a finished replay's positions are kept
	// to drop their live copies. A live copy arrives when the reader
	// publishes the entry: within the reader's lag (a poll interval plus a
	// read), far below this, unless the reader has lost the database.
	defaultDedupWindow = 2 * time.Minute
	// dedupCap bounds the replayed positions a connection keeps, across its
	// replays. When exceeded the oldest go first: live copies, if any, are
	// of the newest entries (those the reader had not yet published).
	dedupCap = 100_000
)

// rtEntry is one frame waiting for the writer.
type rtEntry struct {
	b   []byte
	pos int64 // the event's position; 0 for replies
}

// replayReq is one resume: subscribe channel "since" after.
type replayReq struct {
	channel   string
	after     int64
	cancelled bool         // unsubscribed meanwhile (guarded by rtOutbox.mu)
	set       *replayedSet // what it sent
}

// replayedSet is the positions one replay sent, ascending.
type replayedSet struct {
	positions []int64
	expires   time.Time // zero while the replay runs
}

// rtOutbox is a realtime connection's outgoing queue, shared by the hub
// (Enqueue), the read loop (replies), the replay worker and the writer
// (take). It is bounded by max frames, replies and held events included;
// overflowing it closes the connection with 4008.
//
// Resume without gap or duplicate. A resume of channel C after position P:
//
//  1. the read loop queues the acknowledgement and starts holding live
//     events (holds > 0: Enqueue sets them aside in held);
//  2. it adds C to the hub: from now on C's live events are held;
//  3. the worker replays from the log (stream.Replay) every committed entry
//     of C after P, up to the log's end when it starts, recording each
//     position sent in the request's replayedSet;
//  4. when the last replay ends, held events are queued, minus those
//     replayed and those of channels unsubscribed meanwhile.
//
// Every entry either was published by the hub before step 2, and then
// committed before the replay read it (it is replayed), or it is published
// after, and then it is held (and dropped if replayed). The reader may
// publish, after step 4, an entry that committed before the replay read it
// (reader lag); so a finished replay's positions are kept for dedupWindow
// and live copies of them dropped. Positions are unique, so this never drops
// an event that was not sent.
type rtOutbox struct {
	max    int
	window time.Duration
	conn   *wsConn
	gate   *fanoutGate // nil: the writer is woken at once
	frames prometheus.Counter
	events prometheus.Counter

	// space gets a token whenever the writer takes frames (a waiting
	// replay re-checks the queue); replayWake whenever a resume is queued.
	space      chan struct{}
	replayWake chan struct{}

	mu       sync.Mutex
	q        []rtEntry // frames for the writer are q[head:]
	head     int
	held     []stream.Item // live events held while holds > 0
	holds    int           // resumes queued or running
	closed   bool
	channels map[string]struct{}   // the connection's channels (≤ 50)
	pending  map[string]*replayReq // channel → its unfinished resume
	reqs     []*replayReq          // resumes waiting for the worker
	replayed []*replayedSet        // recent replays, oldest first
	nReplayd int                   // positions across replayed
}

func newRTOutbox(max int, window time.Duration, conn *wsConn, frames, events prometheus.Counter) *rtOutbox {
	return &rtOutbox{
		max: max, window: window, conn: conn, frames: frames, events: events,
		space: make(chan struct{}, 1), replayWake: make(chan struct{}, 1),
		channels: map[string]struct{}{}, pending: map[string]*replayReq{},
	}
}

// Enqueue is called by the hub; it never blocks.
func (o *rtOutbox) Enqueue(it stream.Item) bool {
	if o.gate != nil {
		o.gate.activity.Add(1)
	}
	o.mu.Lock()
	switch {
	case o.closed:
		o.mu.Unlock()
		return false
	case o.holds == 0 && o.replayedLocked(it.Event.Position):
		o.mu.Unlock()
		return true // a replay sent it
	case o.sizeLocked() >= o.max:
		o.overflowLocked()
		o.mu.Unlock()
		o.conn.close(CloseSlowConsumer, "slow consumer")
		return false
	case o.holds > 0:
		o.held = append(o.held, it)
		o.mu.Unlock()
		return true
	}
	// Wake the writer only when the queue was empty: otherwise a writer is
	// already due to take it (woken by the push that made the queue
	// non-empty, and it takes until the queue is empty). The wake goes
	// through the gate, which holds it while the hub is fanning out.
	wasEmpty := o.head == len(o.q)
	o.pushLocked(rtEntry{b: it.Bytes, pos: it.Event.Position})
	o.mu.Unlock()
	if wasEmpty {
		if o.gate != nil {
			o.gate.hold(o.conn)
		} else {
			o.conn.notify()
		}
	}
	return true
}

// Fan-out gate timing: see fanoutGate.
const (
	gateQuiet    = 250 * time.Microsecond
	gateMaxDelay = 10 * time.Millisecond
)

// fanoutGate holds the writer wakes of a fan-out until the hub has finished
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
type fanoutGate struct {
	activity atomic.Uint64 // Enqueues so far: the hub is busy while it moves

	mu      sync.Mutex
	held    []*wsConn // wakes held
	spare   []*wsConn // the previous batch's array, reused
	timer   *time.Timer
	armed   bool
	first   time.Time // when the oldest held wake came
	checked uint64    // activity at the last check
}

// hold holds c's wake until the fan-out pauses.
func (g *fanoutGate) hold(c *wsConn) {
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
func (g *fanoutGate) check() {
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
func wakeAll(conns []*wsConn) {
	workers := min(runtime.GOMAXPROCS(0), (len(conns)+wakeChunk-1)/wakeChunk)
	if workers <= 1 {
		for _, c := range conns {
			c.wakeNow()
		}
		return
	}
	per := (len(conns) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		part := conns[min(w*per, len(conns)):min((w+1)*per, len(conns))]
		wg.Go(func() {
			for _, c := range part {
				c.wakeNow()
			}
		})
	}
	for _, c := range conns[:per] {
		c.wakeNow()
	}
	wg.Wait()
}

// wakeChunk is the fewest wakes worth another goroutine.
const wakeChunk = 128

// reply queues a reply and reports whether the writer should be woken.
func (o *rtOutbox) reply(b []byte) bool {
	o.mu.Lock()
	ok := o.replyLocked(b)
	o.mu.Unlock()
	return ok
}

// replyLocked queues a reply. A client that keeps asking without reading
// overflows like a slow consumer.
func (o *rtOutbox) replyLocked(b []byte) bool {
	if o.closed {
		return false
	}
	if o.sizeLocked() >= o.max {
		o.overflowLocked()
		o.conn.close(CloseSlowConsumer, "slow consumer") // never blocks, takes no lock of ours
		return false
	}
	o.pushLocked(rtEntry{b: b})
	return true
}

// subscribe records channel and queues its acknowledgement; with resume it
// also starts holding live events. It reports false (and does nothing) when
// too many resumes are queued or the connection is closed.
func (o *rtOutbox) subscribe(channel string, ack []byte, resume bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || (resume && len(o.reqs) >= maxPendingResumes) {
		return false
	}
	if !o.replyLocked(ack) {
		return false
	}
	o.channels[channel] = struct{}{}
	if resume {
		o.holds++
	}
	return true
}

// queueReplay hands a resume to the worker (after subscribe(..., true)).
func (o *rtOutbox) queueReplay(req *replayReq) {
	o.mu.Lock()
	o.reqs = append(o.reqs, req)
	o.pending[req.channel] = req
	o.mu.Unlock()
	select {
	case o.replayWake <- struct{}{}:
	default:
	}
}

// unsubscribe forgets channel, cancels its resume and queues the
// acknowledgement.
func (o *rtOutbox) unsubscribe(channel string, ack []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.channels, channel)
	if req := o.pending[channel]; req != nil {
		req.cancelled = true
		delete(o.pending, channel)
	}
	return o.replyLocked(ack)
}

// nextReplay pops the next queued resume, or nil.
func (o *rtOutbox) nextReplay() *replayReq {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.reqs) == 0 {
		return nil
	}
	req := o.reqs[0]
	o.reqs[0] = nil
	o.reqs = o.reqs[1:]
	if len(o.reqs) == 0 {
		o.reqs = nil
	}
	return req
}

// startReplay registers req's set so later replays skip what it sends; false
// when req was cancelled.
func (o *rtOutbox) startReplay(req *replayReq) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if req.cancelled || o.closed {
		return false
	}
	o.replayed = append(o.replayed, req.set)
	return true
}

// pushReplayed queues one replayed event of req, waiting while the writer is
// replayWindow frames behind. An event an earlier replay on this connection
// sent is skipped.
func (o *rtOutbox) pushReplayed(ctx context.Context, req *replayReq, b []byte, pos int64) error {
	for {
		o.mu.Lock()
		switch {
		case o.closed:
			o.mu.Unlock()
			return errOutboxClosed
		case req.cancelled:
			o.mu.Unlock()
			return errReplayCancelled
		case len(o.q)-o.head < replayWindow:
			if !o.replayedLocked(pos) {
				o.pushLocked(rtEntry{b: b, pos: pos})
				o.addReplayedLocked(req.set, pos)
			}
			o.mu.Unlock()
			o.conn.notify()
			return nil
		}
		o.mu.Unlock()
		select {
		case <-o.space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// replyFor queues a reply about req's channel unless req was cancelled.
func (o *rtOutbox) replyFor(req *replayReq, b []byte) {
	o.mu.Lock()
	ok := !req.cancelled && o.replyLocked(b)
	o.mu.Unlock()
	if ok {
		o.conn.notify()
	}
}

// finishReplay ends req; when no resume is left it releases the held live
// events. It reports whether the writer should be woken.
func (o *rtOutbox) finishReplay(req *replayReq) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	req.set.expires = time.Now().Add(o.window)
	if o.pending[req.channel] == req {
		delete(o.pending, req.channel)
	}
	o.holds--
	if o.holds > 0 || o.closed {
		return false
	}
	for i, it := range o.held {
		if !o.replayedLocked(it.Event.Position) && o.subscribedLocked(it.Event) {
			o.pushLocked(rtEntry{b: it.Bytes, pos: it.Event.Position})
		}
		o.held[i] = stream.Item{}
	}
	if cap(o.held) > rtKeepCap {
		o.held = nil
	} else {
		o.held = o.held[:0]
	}
	return true
}

// subscribedLocked reports whether ev matches one of the connection's
// channels.
func (o *rtOutbox) subscribedLocked(ev *stream.Event) bool {
	typ := stream.RealtimeType(ev)
	for ch := range o.channels {
		if stream.ChannelMatches(ch, typ) {
			return true
		}
	}
	return false
}

// replayedLocked reports whether a recent replay sent pos, dropping the
// replays whose window has passed.
func (o *rtOutbox) replayedLocked(pos int64) bool {
	if len(o.replayed) == 0 {
		return false
	}
	now := time.Now()
	found := false
	keep := o.replayed[:0]
	for _, s := range o.replayed {
		if !s.expires.IsZero() && now.After(s.expires) {
			o.nReplayd -= len(s.positions)
			continue
		}
		keep = append(keep, s)
		if !found {
			_, found = slices.BinarySearch(s.positions, pos)
		}
	}
	clear(o.replayed[len(keep):])
	o.replayed = keep
	return found
}

// addReplayedLocked records pos (ascending within a replay), keeping at most
// dedupCap positions across the connection's replays: the oldest go first.
func (o *rtOutbox) addReplayedLocked(s *replayedSet, pos int64) {
	s.positions = append(s.positions, pos)
	o.nReplayd++
	for o.nReplayd > dedupCap && len(o.replayed) > 0 {
		old := o.replayed[0]
		drop := min(len(old.positions), o.nReplayd-dedupCap+dedupCap/4) // some slack: not one copy per event
		n := copy(old.positions, old.positions[drop:])
		old.positions = old.positions[:n]
		o.nReplayd -= drop
		if n == 0 && old != s {
			o.replayed = slices.Delete(o.replayed, 0, 1)
		} else if n == 0 {
			break
		}
	}
}

func (o *rtOutbox) sizeLocked() int { return len(o.q) - o.head + len(o.held) }

func (o *rtOutbox) pushLocked(e rtEntry) {
	if o.head > 0 && len(o.q) == cap(o.q) {
		n := copy(o.q, o.q[o.head:])
		clear(o.q[n:])
		o.q, o.head = o.q[:n], 0
	}
	o.q = append(o.q, e)
}

func (o *rtOutbox) overflowLocked() {
	o.closed = true
	o.q, o.head, o.held = nil, 0, nil
}

// take adds queued frames to fb, in order, as many as it has room for.
func (o *rtOutbox) take(fb *frameBuf) {
	o.mu.Lock()
	n := min(len(o.q)-o.head, fb.room())
	events := 0
	for i := o.head; i < o.head+n; i++ {
		fb.text(o.q[i].b)
		if o.q[i].pos > 0 {
			events++
		}
		o.q[i] = rtEntry{}
	}
	o.head += n
	if o.head == len(o.q) {
		o.head = 0
		if cap(o.q) > rtKeepCap {
			o.q = nil
		} else {
			o.q = o.q[:0]
		}
	}
	replaying := o.holds > 0 // a replay may wait for room (pushReplayed)
	o.mu.Unlock()
	if replaying && n > 0 {
		select {
		case o.space <- struct{}{}:
		default:
		}
	}
	if n > 0 {
		o.frames.Add(float64(n))
		if events > 0 {
			o.events.Add(float64(events))
		}
	}
}

func (o *rtOutbox) discard() {
	o.mu.Lock()
	o.closed = true
	o.q, o.head, o.held = nil, 0, nil
	o.mu.Unlock()
}
