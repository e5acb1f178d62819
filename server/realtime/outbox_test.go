package realtime

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/internal/wstest"
	"github.com/pgcast/pgcast/server/ws"
	"github.com/pgcast/pgcast/stream"
)

// newTestOutbox is an outbox on a connection that is never run: enough to
// watch what the writer would send and how the connection would close.
func newTestOutbox(max int, window time.Duration) (*rtOutbox, *testConn) {
	conn := &testConn{}
	o := newRTOutbox(ws.QueueLimits{Items: max}, window, conn, wstest.Counter(), wstest.Counter())
	return o, conn
}

// testConn stands for the *ws.Conn of an outbox under test, never started:
// a wake only marks it, and the first close asked is the one it keeps (and
// wakes it), as a ws.Conn before Start.
type testConn struct {
	mu     sync.Mutex
	woken  bool
	code   int
	closed bool
}

func (c *testConn) Notify() {
	c.mu.Lock()
	c.woken = true
	c.mu.Unlock()
}

func (c *testConn) WakeNow() { c.Notify() }

func (c *testConn) Close(code int, _ string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed, c.code = true, code
	c.mu.Unlock()
	c.Notify()
}

// framesPerWrite is how many text frames one write takes.
var framesPerWrite = new(ws.FrameBuf).Room()

func testItem(pos int64, class string) stream.Item {
	ev := &stream.Event{Position: pos, Kind: stream.KindRecordCreated, Environment: 1, ClassName: class}
	return stream.Item{Event: ev, Bytes: []byte(fmt.Sprintf("live %d", pos))}
}

// taken takes everything queued, as the writer would, and returns the
// frames' payloads.
func taken(o *rtOutbox) []string {
	var out []string
	for {
		var fb ws.FrameBuf
		o.Take(&fb)
		if fb.Empty() {
			return out
		}
		out = append(out, wstest.Texts(fb.Bytes())...)
	}
}

// woken reports whether the (never started) connection's writer was woken
// since the last call.
func woken(c *testConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.woken
	c.woken = false
	return w
}

func closedWith(c *testConn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		return 0
	}
	return c.code
}

// TestRealtimeOutboxResumeSwitch walks the switch from replay to live
// deterministically: held live events come after the replay, minus those
// replayed; a late live copy of a replayed event is dropped within the
// window and only then.
func TestRealtimeOutboxResumeSwitch(t *testing.T) {
	t.Parallel()
	o, conn := newTestOutbox(100, time.Hour)
	if !o.subscribe("posts.*", []byte("ack"), true) {
		t.Fatal("subscribe refused")
	}
	o.queueReplay(&replayReq{channel: "posts.*", after: 1, set: &replayedSet{}})
	req := o.nextReplay()
	if req == nil || o.nextReplay() != nil || !o.startReplay(req) {
		t.Fatal("queue")
	}
	for _, p := range []int64{5, 7, 9} { // published by the hub while the replay runs
		if !o.Enqueue(testItem(p, "posts")) {
			t.Fatal("held event refused")
		}
	}
	if got := taken(o); !slices.Equal(got, []string{"ack"}) {
		t.Fatalf("during the replay the writer got %v", got)
	}
	for _, p := range []int64{3, 5, 7} {
		if err := o.pushReplayed(context.Background(), req, []byte(fmt.Sprintf("replayed %d", p)), p); err != nil {
			t.Fatal(err)
		}
	}
	if !o.Enqueue(testItem(11, "posts")) {
		t.Fatal("held")
	}
	if !o.finishReplay(req) {
		t.Fatal("not released")
	}
	o.Enqueue(testItem(5, "posts"))  // the reader publishes a replayed entry late: dropped
	o.Enqueue(testItem(13, "posts")) // new
	want := []string{"replayed 3", "replayed 5", "replayed 7", "live 9", "live 11", "live 13"}
	if got := taken(o); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// A second replay skips what the first sent.
	if !o.subscribe("posts.created", []byte("ack2"), true) {
		t.Fatal("subscribe refused")
	}
	o.queueReplay(&replayReq{channel: "posts.created", after: 1, set: &replayedSet{}})
	req2 := o.nextReplay()
	o.startReplay(req2)
	for _, p := range []int64{3, 15} {
		_ = o.pushReplayed(context.Background(), req2, []byte(fmt.Sprintf("replayed %d", p)), p)
	}
	o.finishReplay(req2)
	if got := taken(o); !slices.Equal(got, []string{"ack2", "replayed 15"}) {
		t.Fatalf("second replay: %v", got)
	}
	if code := closedWith(conn); code != 0 {
		t.Fatalf("connection closed with %d", code)
	}

	// Past the window, a late copy is delivered (it cannot have been
	// replayed by a replay the connection still remembers).
	o2, _ := newTestOutbox(100, -time.Nanosecond)
	o2.subscribe("posts.*", []byte("ack"), true)
	o2.queueReplay(&replayReq{channel: "posts.*", set: &replayedSet{}})
	r := o2.nextReplay()
	o2.startReplay(r)
	_ = o2.pushReplayed(context.Background(), r, []byte("replayed 5"), 5)
	o2.finishReplay(r)
	o2.Enqueue(testItem(5, "posts"))
	if got := taken(o2); !slices.Equal(got, []string{"ack", "replayed 5", "live 5"}) {
		t.Fatalf("after the window: %v", got)
	}
	if len(o2.replayed) != 0 || o2.nReplayd != 0 {
		t.Fatalf("expired replay kept: %d sets, %d positions", len(o2.replayed), o2.nReplayd)
	}
}

// TestRealtimeOutboxUnsubscribeDuringReplay: unsubscribing cancels the
// replay, and held events of that channel are not sent after the
// acknowledgement.
func TestRealtimeOutboxUnsubscribeDuringReplay(t *testing.T) {
	t.Parallel()
	o, _ := newTestOutbox(100, time.Hour)
	o.subscribe("job.*", []byte("ack job"), false)
	o.subscribe("posts.*", []byte("ack posts"), true)
	o.queueReplay(&replayReq{channel: "posts.*", set: &replayedSet{}})
	req := o.nextReplay()
	o.startReplay(req)
	_ = o.pushReplayed(context.Background(), req, []byte("replayed 1"), 1)
	o.Enqueue(testItem(2, "posts"))
	job := testItem(3, "")
	job.Event.Kind, job.Event.Type = stream.KindPublished, "job.completed"
	o.Enqueue(job)
	o.unsubscribe("posts.*", []byte("unsubscribed posts"))
	if err := o.pushReplayed(context.Background(), req, []byte("replayed 4"), 4); err != errReplayCancelled {
		t.Fatalf("push after unsubscribe: %v", err)
	}
	o.replyFor(req, []byte("reset"))
	o.finishReplay(req)
	want := []string{"ack job", "ack posts", "replayed 1", "unsubscribed posts", "live 3"}
	if got := taken(o); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestRealtimeOutboxBounds: the queue (replies and held events included) is
// bounded; overflowing it closes with 4008; the writer takes bounded batches
// and is woken again for the rest; a replay waits for the writer.
func TestRealtimeOutboxBounds(t *testing.T) {
	t.Parallel()
	o, conn := newTestOutbox(3, time.Hour)
	for p := range int64(3) {
		if !o.Enqueue(testItem(p+1, "posts")) {
			t.Fatal("refused below the bound")
		}
	}
	if o.Enqueue(testItem(4, "posts")) {
		t.Fatal("accepted over the bound")
	}
	if code := closedWith(conn); code != ws.CloseSlowConsumer {
		t.Fatalf("closed with %d", code)
	}
	if o.Enqueue(testItem(5, "posts")) || o.reply([]byte("x")) {
		t.Fatal("accepted after closing")
	}

	o, conn = newTestOutbox(2, time.Hour)
	o.reply([]byte("a"))
	o.reply([]byte("b"))
	if o.reply([]byte("c")) {
		t.Fatal("reply over the bound")
	}
	if code := closedWith(conn); code != ws.CloseSlowConsumer {
		t.Fatalf("closed with %d", code)
	}

	o, conn = newTestOutbox(10_000, time.Hour)
	for p := range int64(600) {
		o.Enqueue(testItem(p+1, "posts"))
	}
	if !woken(conn) {
		t.Fatal("writer not woken")
	}
	var fb ws.FrameBuf
	o.Take(&fb)
	if frames := len(wstest.Texts(fb.Bytes())); frames != framesPerWrite {
		t.Fatalf("took %d", frames)
	}
	o.Enqueue(testItem(601, "posts"))
	if woken(conn) {
		t.Fatal("woken again for a queue the writer has yet to empty")
	}
	if rest := taken(o); len(rest) != 601-framesPerWrite || o.q.Len() != 0 {
		t.Fatalf("took %d more, left %d", len(rest), o.q.Len())
	}

	// A replay never queues more than replayWindow ahead of the writer.
	o.subscribe("posts.*", []byte("ack"), true)
	o.queueReplay(&replayReq{channel: "posts.*", set: &replayedSet{}})
	req := o.nextReplay()
	o.startReplay(req)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		for p := range int64(2 * replayWindow) {
			if err := o.pushReplayed(ctx, req, []byte("r"), p+1); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	n := 0
	for n < 2*replayWindow+1 {
		o.mu.Lock()
		queued := o.q.Len()
		o.mu.Unlock()
		if queued == 0 {
			for !woken(conn) {
				runtime.Gosched() // the pusher runs
			}
			continue
		}
		if queued > replayWindow+1 {
			t.Fatalf("%d frames queued", queued)
		}
		var fb ws.FrameBuf
		o.Take(&fb)
		n += len(wstest.Texts(fb.Bytes()))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cancel()
}

// TestWritePathAllocations guards realtime's delivery path: queueing
// shared events and writing them (one writev per flush) allocates nothing
// per delivery once warm. Batches stay well within what the queue keeps
// when it empties (rtKeepCap): a larger burst's array is let go on purpose.
func TestWritePathAllocations(t *testing.T) {
	nc := wstest.DrainConn(t)
	items := make([]stream.Item, 200)
	for i := range items {
		items[i] = testItem(int64(i+1), "posts")
		items[i].Bytes = []byte(fmt.Sprintf(`{"type":"event","event":{"id":"evt_%d","payload":{"title":"hello"}}}`, i+1))
	}

	conn := ws.NewConn(nc, ws.Config{}, slog.New(slog.DiscardHandler))
	o := newRTOutbox(ws.QueueLimits{Items: 100_000}, time.Hour, conn, wstest.Counter(), wstest.Counter())
	conn.SetOutbox(o)
	o.subscribe("posts.*", []byte("ack"), false)
	fb := new(ws.FrameBuf)
	deliver := func() {
		for batch := range slices.Chunk(items, rtKeepCap/2) {
			for _, it := range batch {
				o.Enqueue(it)
			}
			for {
				wrote, _, err := conn.Flush(fb)
				if err != nil {
					t.Fatal(err)
				}
				if !wrote {
					break
				}
			}
		}
	}
	deliver() // warm up: queue capacity, the socket's iovec cache, the deadline
	if allocs := testing.AllocsPerRun(100, deliver); allocs != 0 {
		t.Errorf("realtime: %v allocations per %d deliveries", allocs, len(items))
	}
}

// TestRealtimeOutboxByteBound: the queue is bounded in bytes too, held
// events included: the event or reply that would go over closes with 4008.
func TestRealtimeOutboxByteBound(t *testing.T) {
	t.Parallel()
	item := func(pos int64, size int) stream.Item {
		it := testItem(pos, "posts")
		it.Bytes = make([]byte, size)
		return it
	}
	newOutbox := func() (*rtOutbox, *testConn) {
		conn := &testConn{}
		return newRTOutbox(ws.QueueLimits{Items: 100, Bytes: 100}, time.Hour, conn, wstest.Counter(), wstest.Counter()), conn
	}
	o, conn := newOutbox()
	if !o.subscribe("posts.*", make([]byte, 10), true) { // 10 bytes queued
		t.Fatal("subscribe refused")
	}
	if !o.Enqueue(item(1, 50)) || !o.Enqueue(item(2, 40)) { // held: 100 bytes in all
		t.Fatal("held events refused within the bound")
	}
	if o.Enqueue(item(3, 1)) {
		t.Fatal("held event accepted over the byte bound")
	}
	if code := closedWith(conn); code != ws.CloseSlowConsumer {
		t.Fatalf("closed with %d", code)
	}

	// Released held events stay counted; a reply over the bytes overflows.
	o, conn = newOutbox()
	o.subscribe("posts.*", make([]byte, 10), true)
	o.queueReplay(&replayReq{channel: "posts.*", set: &replayedSet{}})
	req := o.nextReplay()
	o.startReplay(req)
	o.Enqueue(item(1, 60))
	o.finishReplay(req)
	if o.q.Len() != 2 || o.q.Bytes() != 70 {
		t.Fatalf("queued %d frames of %d bytes", o.q.Len(), o.q.Bytes())
	}
	if !o.reply(make([]byte, 30)) {
		t.Fatal("reply refused within the bound")
	}
	if o.reply([]byte("x")) {
		t.Fatal("reply accepted over the byte bound")
	}
	if code := closedWith(conn); code != ws.CloseSlowConsumer {
		t.Fatalf("closed with %d", code)
	}
}
