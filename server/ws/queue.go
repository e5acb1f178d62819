package ws

const (
	// DefaultQueueItems is QueueLimits.Items' default, and Config.MaxBuffer's.
	DefaultQueueItems = 100_000
	// DefaultItemBytes is the average item size the default byte bound
	// allows (QueueLimits.Bytes, Config.MaxBufferBytes): the frames both
	// protocols queue are typically a few hundred bytes, so with events of
	// usual sizes the item bound is met first, as it was before queues were
	// bounded in bytes; a client behind on unusually large events meets the
	// byte bound instead, which is what bounds the memory it pins.
	DefaultItemBytes = 4 << 10
	// queueMinCap is the smallest ring a queue allocates.
	queueMinCap = 16
)

// QueueLimits bound a Queue, in items and in bytes. The zero value means
// the defaults.
type QueueLimits struct {
	// Items bounds the items queued and held. Default DefaultQueueItems.
	Items int
	// Bytes bounds their bytes (as the queue's size function counts them).
	// Default Items × DefaultItemBytes.
	Bytes int
}

// WithDefaults fills in the defaults of the fields left zero (or negative:
// every queue is bounded).
func (l QueueLimits) WithDefaults() QueueLimits {
	if l.Items <= 0 {
		l.Items = DefaultQueueItems
	}
	if l.Bytes <= 0 {
		l.Bytes = l.Items * DefaultItemBytes
	}
	return l
}

// Queue is a connection's outgoing queue, first in first out, bounded in
// items and in bytes: both protocols' Outboxes keep their frames (or items)
// in one and put their policies on top (Catalyst's batching and coalescing,
// realtime's replies and held events). A push that would take it over
// either bound is refused; the Outbox then closes the connection as a slow
// consumer (4008). An item's bytes are what the queue's size function says
// (the frame bytes it shares with other connections, say).
//
// It is a ring whose capacity doubles when full and which is let go when it
// empties with a capacity above keep: steady traffic reuses one array,
// while a burst's larger one goes back to the allocator once the client has
// caught up (an idle connection holds at most keep items' worth). It does
// not shrink while it drains: a writer takes a backlog down to nothing
// within a few writes, and halving on the way would only allocate. Items
// taken out are cleared, so that the queue pins no event bytes the writer
// has sent.
//
// A Queue is not safe for concurrent use: its Outbox's lock guards it. Its
// zero value is not usable: see NewQueue.
type Queue[T any] struct {
	buf       []T // the ring: len is a power of two; nil while empty above keep
	head      int // index in buf of the first item
	n         int // items queued
	bytes     int // their bytes
	held      int // items counted against the bounds but kept by the caller
	heldBytes int
	lim       QueueLimits
	keep      int
	size      func(T) int
}

// NewQueue returns an empty queue bounded by lim (zero fields: the
// defaults), whose items count size(item) bytes each, and which keeps a
// ring of up to keep items once it empties.
func NewQueue[T any](lim QueueLimits, keep int, size func(T) int) Queue[T] {
	return Queue[T]{lim: lim.WithDefaults(), keep: keep, size: size}
}

// Len is the number of items queued (held ones not included).
func (q *Queue[T]) Len() int { return q.n }

// Bytes is the bytes of the items queued (held ones not included).
func (q *Queue[T]) Bytes() int { return q.bytes }

// fits reports whether one more item of size bytes stays within the bounds.
// An item alone in the queue is always taken, however large: the byte bound
// is a bound on a backlog, and one event larger than it must not close
// every connection it goes to.
func (q *Queue[T]) fits(size int) bool {
	items := q.n + q.held
	if items >= q.lim.Items {
		return false
	}
	return items == 0 || q.bytes+q.heldBytes+size <= q.lim.Bytes
}

// Push queues v at the back. It reports false, queueing nothing, when v
// would take the queue (held items included) over a bound: the overflow.
func (q *Queue[T]) Push(v T) bool {
	s := q.size(v)
	if !q.fits(s) {
		return false
	}
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = v
	q.n++
	q.bytes += s
	return true
}

// PushUnchecked queues v at the back whatever the bounds: for an item whose
// producer is bounded otherwise (a realtime replay waits for the writer
// instead; held items return to the queue). Later Pushes see it counted.
func (q *Queue[T]) PushUnchecked(v T) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = v
	q.n++
	q.bytes += q.size(v)
}

// Hold counts one item of size bytes that the caller keeps aside (realtime
// holds live events during a replay) against the bounds, as Push would. It
// reports false, counting nothing, on overflow.
func (q *Queue[T]) Hold(size int) bool {
	if !q.fits(size) {
		return false
	}
	q.held++
	q.heldBytes += size
	return true
}

// Unhold uncounts one held item of size bytes (as given to Hold).
func (q *Queue[T]) Unhold(size int) {
	q.held--
	q.heldBytes -= size
}

// Replace replaces the i-th item from the front (0 ≤ i < Len) with v, in
// place (Catalyst coalesces a class's count changes so). It reports false,
// replacing nothing, when v is larger and takes the queue over its byte
// bound.
func (q *Queue[T]) Replace(i int, v T) bool {
	if i < 0 || i >= q.n {
		panic("ws: queue index out of range")
	}
	p := &q.buf[(q.head+i)&(len(q.buf)-1)]
	d := q.size(v) - q.size(*p)
	if d > 0 && q.n+q.held > 1 && q.bytes+q.heldBytes+d > q.lim.Bytes {
		return false
	}
	*p, q.bytes = v, q.bytes+d
	return true
}

// Front returns the first n items (at most Len), in order, as two slices of
// the ring (the second empty unless they wrap around its end), without
// removing them: they are valid until the queue changes.
func (q *Queue[T]) Front(n int) (a, b []T) {
	n = min(n, q.n)
	if n <= 0 {
		return nil, nil
	}
	if end := q.head + n; end <= len(q.buf) {
		return q.buf[q.head:end], nil
	}
	return q.buf[q.head:], q.buf[:q.head+n-len(q.buf)]
}

// Drop removes the first n items (at most Len).
func (q *Queue[T]) Drop(n int) {
	n = min(n, q.n)
	if n <= 0 {
		return
	}
	a, b := q.Front(n)
	if n == q.n { // the usual case: the writer takes everything
		clear(a)
		clear(b)
		q.head, q.n, q.bytes = 0, 0, 0 // the next items lie in one piece
		if len(q.buf) > q.keep {
			q.buf = nil
		}
		return
	}
	for _, v := range a {
		q.bytes -= q.size(v)
	}
	for _, v := range b {
		q.bytes -= q.size(v)
	}
	clear(a)
	clear(b)
	q.head = (q.head + n) & (len(q.buf) - 1)
	q.n -= n
}

// PopInto appends the first n items (at most Len) to dst, removes them
// from the queue and returns the extended slice: the caller's scratch,
// reused from one take to the next.
func (q *Queue[T]) PopInto(dst []T, n int) []T {
	a, b := q.Front(n)
	dst = append(append(dst, a...), b...)
	q.Drop(len(a) + len(b))
	return dst
}

// Reset empties the queue, held items uncounted, and lets its ring go: for
// a connection that is closing.
func (q *Queue[T]) Reset() {
	q.buf, q.head, q.n, q.bytes, q.held, q.heldBytes = nil, 0, 0, 0, 0, 0
}

// grow moves the items to a ring twice as large.
func (q *Queue[T]) grow() {
	buf := make([]T, max(queueMinCap, 2*len(q.buf)))
	a, b := q.Front(q.n)
	copy(buf[copy(buf, a):], b)
	q.buf, q.head = buf, 0
}
