package catalyst

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/server/ws"
	"github.com/pgcast/pgcast/stream"
)

const (
	// writeBudget bounds the bytes of Catalyst frames built for one write
	// (at least one frame is always built): a backlog of full frames goes
	// out in several writes rather than one of unbounded size.
	writeBudget = 256 << 10
	// scratchKeepItems bounds the items a pooled FrameBuf's scratch keeps.
	scratchKeepItems = 4096
)

// scratch is the FrameBuf scratch of Take: the items taken, grouped in
// frames.
type scratch struct {
	items  []stream.Item
	groups []int
}

// Reset drops the references to shared event bytes.
func (sc *scratch) Reset() {
	clear(sc.items)
	sc.items = sc.items[:0]
	sc.groups = sc.groups[:0]
}

// Trim lets go of a burst's arrays.
func (sc *scratch) Trim() {
	if cap(sc.items) > scratchKeepItems {
		sc.items, sc.groups = nil, nil
	}
}

// appendFrame appends one Catalyst frame, header included: a JSON
// array of the items' shared encodings.
func appendFrame(b []byte, items []stream.Item) []byte {
	n := 2 + max(len(items)-1, 0) // brackets and commas
	for _, it := range items {
		n += len(it.Bytes)
	}
	b = ws.AppendTextHeader(b, n)
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it.Bytes...)
	}
	return append(b, ']')
}

// batcherKeepCap is the item capacity a batcher's queue keeps once it
// empties (4 KiB): enough for steady batches without reallocating, while a
// burst's larger ring is let go.
const batcherKeepCap = 128

// itemSize is what an item counts against the queue's byte bound: its
// shared encoding.
func itemSize(it stream.Item) int { return len(it.Bytes) }

// batcher is a Catalyst connection's Outbox: a ws.Queue of items in commit
// order, bounded in items and bytes (ws.Config.MaxBuffer and
// MaxBufferBytes), with Catalyst's policy on top: at most one count item
// per object class (a newer count replaces the buffered one in place), full
// frames written at once, the rest at the next tick, a multiple of tick
// after the connection started. The tick's timer is armed only while items
// wait, so an idle connection has no timer firing.
type batcher struct {
	limit int
	tick  time.Duration
	start time.Time
	// conn is nil until attach: the batcher subscribes before the upgrade,
	// so that no event committed after the client's 101 can be missed, and
	// keeps what arrives until the connection exists and starts.
	conn atomic.Pointer[ws.Conn]

	mu      sync.Mutex
	q       ws.Queue[stream.Item]
	countAt map[int64]int // object class → index of its count item in q
	closed  bool
	timer   *time.Timer // the next tick
	armed   bool        // timer is set and has not fired
	due     bool        // a tick has fired: the next take sends a frame

	frames, sent prometheus.Counter
}

func newBatcher(limit int, bounds ws.QueueLimits, tick time.Duration, frames, sent prometheus.Counter) *batcher {
	return &batcher{
		limit: limit, tick: tick, start: time.Now(), frames: frames, sent: sent,
		q: ws.NewQueue(bounds, batcherKeepCap, itemSize),
	}
}

// attach gives the batcher its connection (before the connection starts,
// which writes what waits); one that overflowed meanwhile is closed.
func (b *batcher) attach(c *ws.Conn) {
	b.conn.Store(c)
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		c.Close(ws.CloseSlowConsumer, "slow consumer")
	}
}

// notify wakes the connection's writer, once there is a connection.
func (b *batcher) notify(inline bool) {
	if c := b.conn.Load(); c != nil {
		c.Wake(inline)
	}
}

// Enqueue is called by the hub; it never blocks.
func (b *batcher) Enqueue(it stream.Item) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	count := it.Event.Kind == stream.KindRecordsCountChanged
	if count {
		if i, ok := b.countAt[it.Event.ClassID]; ok {
			if !b.q.Replace(i, it) {
				return b.overflowUnlock()
			}
			b.mu.Unlock()
			return true
		}
	}
	if !b.q.Push(it) {
		return b.overflowUnlock()
	}
	if count {
		if b.countAt == nil {
			b.countAt = map[int64]int{}
		}
		b.countAt[it.Event.ClassID] = b.q.Len() - 1
	}
	full := b.q.Len() >= b.limit
	if !full && !b.armed {
		b.armLocked()
	}
	b.mu.Unlock()
	if full {
		b.notify(false)
	}
	return true
}

// overflowUnlock closes a batcher whose queue is full, with b.mu held (it
// unlocks it): the connection is closed as a slow consumer.
func (b *batcher) overflowUnlock() bool {
	b.closed = true
	b.releaseLocked()
	b.mu.Unlock()
	if c := b.conn.Load(); c != nil {
		c.Close(ws.CloseSlowConsumer, "slow consumer")
	} // else attach closes it
	return false
}

// armLocked sets the timer for the next tick.
func (b *batcher) armLocked() {
	d := b.tick - time.Since(b.start)%b.tick
	if b.timer == nil {
		b.timer = time.AfterFunc(d, b.ticked)
	} else {
		b.timer.Reset(d)
	}
	b.armed = true
}

// ticked runs on the timer's goroutine, which becomes the writer unless
// one is running.
func (b *batcher) ticked() {
	b.mu.Lock()
	b.armed = false
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.due = true
	b.mu.Unlock()
	b.notify(true)
}

// Take adds to fb every full frame of exactly limit items and, after a
// tick, one frame of up to limit items; never an empty frame. It stops
// after writeBudget bytes; the writer comes back for the rest. The items
// are copied out under the lock (into fb's scratch), the frames built
// outside it.
func (b *batcher) Take(fb *ws.FrameBuf) {
	sc, _ := fb.Scratch.(*scratch)
	if sc == nil {
		sc = new(scratch)
		fb.Scratch = sc
	}
	b.mu.Lock()
	size, frames := 0, 0
	for size < writeBudget && (b.q.Len() >= b.limit || (b.due && b.q.Len() > 0)) {
		n := min(b.q.Len(), b.limit)
		queued := b.q.Bytes()
		sc.items = b.q.PopInto(sc.items, n)
		size += queued - b.q.Bytes() + n // the items and their commas
		sc.groups = append(sc.groups, n)
		frames++
		b.dropCounts(n)
		b.due = false // one frame per tick; full frames continue
	}
	if b.q.Len() == 0 {
		b.due = false
	} else if !b.armed {
		b.armLocked()
	}
	b.mu.Unlock()
	if frames == 0 {
		return
	}
	b.frames.Add(float64(frames))
	b.sent.Add(float64(len(sc.items)))
	body := slices.Grow(fb.Body(), size+frames*(ws.MaxFrameHeader+2))
	items := sc.items
	for _, n := range sc.groups {
		body = appendFrame(body, items[:n])
		items = items[n:]
	}
	fb.Owned(body)
}

// dropCounts reindexes the count positions after the first n items left
// the queue.
func (b *batcher) dropCounts(n int) {
	for class, i := range b.countAt {
		if i < n {
			delete(b.countAt, class)
		} else {
			b.countAt[class] = i - n
		}
	}
}

func (b *batcher) releaseLocked() {
	b.q.Reset()
	b.countAt = nil
	if b.timer != nil {
		b.timer.Stop()
		b.armed = false
	}
}

// Discard drops everything buffered; later Enqueues are refused.
func (b *batcher) Discard() {
	b.mu.Lock()
	b.closed = true
	b.releaseLocked()
	b.mu.Unlock()
}
