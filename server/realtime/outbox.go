package realtime

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/server/ws"
	"github.com/pgcast/pgcast/stream"
)

const (
	// replayWindow is how many frames a replay may queue ahead of the
	// writer before it waits: a slow client slows its replay down instead of
	// growing the queue.
	replayWindow = 256
	// rtKeepCap is the queue capacity kept once the queue empties (2 KiB):
	// enough for steady traffic without reallocating; a burst's larger
	// ring is let go.
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

// connection is what an outbox needs of its connection: *ws.Conn.
type connection interface {
	Notify()
	WakeNow()
	Close(code int, reason string)
}

// rtEntry is one frame waiting for the writer.
type rtEntry struct {
	b   []byte
	pos int64 // the event's position; 0 for replies
}

// entrySize is what a frame counts against the queue's byte bound: its
// payload.
func entrySize(e rtEntry) int { return len(e.b) }

// rtOutbox is a realtime connection's Outbox, shared by the hub (Enqueue),
// the read loop (replies), the replay worker and the writer (Take). Its
// frames wait in a ws.Queue bounded in items and bytes (ws.Config.MaxBuffer
// and MaxBufferBytes), replies and held events included; overflowing it
// closes the connection with 4008. A replay's frames are bounded by
// replayWindow instead: the replay waits for the writer.
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
	window time.Duration
	conn   connection
	gate   *ws.FanoutGate // nil: the writer is woken at once
	frames prometheus.Counter
	events prometheus.Counter

	// space gets a token whenever the writer takes frames (a waiting
	// replay re-checks the queue); replayWake whenever a resume is queued.
	space      chan struct{}
	replayWake chan struct{}

	mu       sync.Mutex
	q        ws.Queue[rtEntry] // frames for the writer
	held     []stream.Item     // live events held while holds > 0, counted in q's bounds
	holds    int               // resumes queued or running
	closed   bool
	channels map[string]struct{}   // the connection's channels (≤ 50)
	pending  map[string]*replayReq // channel → its unfinished resume
	reqs     []*replayReq          // resumes waiting for the worker
	replayed []*replayedSet        // recent replays, oldest first
	nReplayd int                   // positions across replayed
}

func newRTOutbox(bounds ws.QueueLimits, window time.Duration, conn connection, frames, events prometheus.Counter) *rtOutbox {
	return &rtOutbox{
		q: ws.NewQueue(bounds, rtKeepCap, entrySize), window: window, conn: conn, frames: frames, events: events,
		space: make(chan struct{}, 1), replayWake: make(chan struct{}, 1),
		channels: map[string]struct{}{}, pending: map[string]*replayReq{},
	}
}

// Enqueue is called by the hub; it never blocks.
func (o *rtOutbox) Enqueue(it stream.Item) bool {
	if o.gate != nil {
		o.gate.Enqueued()
	}
	o.mu.Lock()
	switch {
	case o.closed:
		o.mu.Unlock()
		return false
	case o.holds == 0 && o.replayedLocked(it.Event.Position):
		o.mu.Unlock()
		return true // a replay sent it
	case o.holds > 0:
		if !o.q.Hold(len(it.Bytes)) {
			return o.overflowUnlock()
		}
		o.held = append(o.held, it)
		o.mu.Unlock()
		return true
	}
	// Wake the writer only when the queue was empty: otherwise a writer is
	// already due to take it (woken by the push that made the queue
	// non-empty, and it takes until the queue is empty). The wake goes
	// through the gate, which holds it while the hub is fanning out.
	wasEmpty := o.q.Len() == 0
	if !o.q.Push(rtEntry{b: it.Bytes, pos: it.Event.Position}) {
		return o.overflowUnlock()
	}
	o.mu.Unlock()
	if wasEmpty {
		if o.gate != nil {
			o.gate.Hold(o.conn)
		} else {
			o.conn.Notify()
		}
	}
	return true
}

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
	if !o.q.Push(rtEntry{b: b}) {
		o.overflowLocked()
		o.conn.Close(ws.CloseSlowConsumer, "slow consumer") // never blocks, takes no lock of ours
		return false
	}
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

// overflowLocked closes the outbox, whose queue is full, and lets go of
// what it holds; the caller closes the connection as a slow consumer.
func (o *rtOutbox) overflowLocked() {
	o.closed = true
	o.q.Reset()
	o.held = nil
}

// overflowUnlock is overflowLocked for a caller that holds o.mu, which it
// unlocks before closing the connection.
func (o *rtOutbox) overflowUnlock() bool {
	o.overflowLocked()
	o.mu.Unlock()
	o.conn.Close(ws.CloseSlowConsumer, "slow consumer")
	return false
}

// Take adds queued frames to fb, in order, as many as it has room for.
func (o *rtOutbox) Take(fb *ws.FrameBuf) {
	o.mu.Lock()
	n := min(o.q.Len(), fb.Room())
	first, wrapped := o.q.Front(n)
	events := addFrames(fb, first) + addFrames(fb, wrapped)
	o.q.Drop(n)
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

// addFrames adds the entries' frames to fb and returns how many are
// events.
func addFrames(fb *ws.FrameBuf, entries []rtEntry) (events int) {
	for _, e := range entries {
		fb.Text(e.b)
		if e.pos > 0 {
			events++
		}
	}
	return events
}

// Discard drops everything queued; later Enqueues are refused.
func (o *rtOutbox) Discard() {
	o.mu.Lock()
	o.closed = true
	o.q.Reset()
	o.held = nil
	o.mu.Unlock()
}
