package catalyst

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/internal/wstest"
	"github.com/pgcast/pgcast/server/ws"
	"github.com/pgcast/pgcast/stream"
)

// TestWritePathAllocations guards Catalyst's delivery path: queueing
// shared events and writing them (one writev per flush) allocates nothing
// per delivery once warm. Batches stay well within what the batcher keeps
// when it empties (batcherKeepCap): a larger burst's array is let go on
// purpose.
func TestWritePathAllocations(t *testing.T) {
	items := make([]stream.Item, 200)
	for i := range items {
		ev := &stream.Event{Position: int64(i + 1), Kind: stream.KindRecordCreated, Environment: 1, ClassName: "posts"}
		items[i] = stream.Item{Event: ev, Bytes: []byte(fmt.Sprintf(`{"type":"event","event":{"id":"evt_%d","payload":{"title":"hello"}}}`, i+1))}
	}

	nc := wstest.DrainConn(t)
	conn := ws.NewConn(nc, ws.Config{}, slog.New(slog.DiscardHandler))
	b := newBatcher(1000, ws.QueueLimits{Items: 100_000}, time.Hour, wstest.Counter(), wstest.Counter())
	b.attach(conn)
	conn.SetOutbox(b)
	fb := new(ws.FrameBuf)
	deliverCatalyst := func() {
		for _, it := range items[:batcherKeepCap/2] {
			b.Enqueue(it)
		}
		b.mu.Lock()
		b.due = true // the tick (its timer is an hour away)
		b.mu.Unlock()
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
	deliverCatalyst()
	if allocs := testing.AllocsPerRun(100, deliverCatalyst); allocs != 0 {
		t.Errorf("catalyst: %v allocations per %d deliveries", allocs, batcherKeepCap/2)
	}
	b.Discard()
}

// TestBatcherBounds: the queue is bounded in items and in bytes; a count
// change coalesced into the buffered one takes no room; the item that would
// overflow closes the batcher, and the connection attached later is closed
// with 4008.
func TestBatcherBounds(t *testing.T) {
	t.Parallel()
	item := func(pos int64, kind stream.Kind, class int64, size int) stream.Item {
		ev := &stream.Event{Position: pos, Kind: kind, Environment: 1, ClassID: class}
		return stream.Item{Event: ev, Bytes: make([]byte, size)}
	}
	for _, tc := range []struct {
		name   string
		bounds ws.QueueLimits
		size   int
	}{
		{"items", ws.QueueLimits{Items: 3, Bytes: 1 << 20}, 10},
		{"bytes", ws.QueueLimits{Items: 100, Bytes: 30}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBatcher(1000, tc.bounds, time.Hour, wstest.Counter(), wstest.Counter())
			defer b.Discard()
			for i, it := range []stream.Item{
				item(1, stream.KindRecordCreated, 1, tc.size),
				item(2, stream.KindRecordsCountChanged, 1, tc.size),
				item(3, stream.KindRecordCreated, 1, tc.size),
				item(4, stream.KindRecordsCountChanged, 1, tc.size), // replaces 2
			} {
				if !b.Enqueue(it) {
					t.Fatalf("item %d refused within the bounds", i)
				}
			}
			if b.Enqueue(item(5, stream.KindRecordCreated, 1, tc.size)) {
				t.Fatal("accepted over the bound")
			}
			if b.Enqueue(item(6, stream.KindRecordsCountChanged, 1, 1)) {
				t.Fatal("accepted after the overflow")
			}
			nc := wstest.DrainConn(t)
			conn := ws.NewConn(nc, ws.Config{}, slog.New(slog.DiscardHandler))
			b.attach(conn)
			if code, closed := conn.CloseCode(); !closed || code != ws.CloseSlowConsumer {
				t.Fatalf("connection closed %v with %d", closed, code)
			}
		})
	}

	// A larger count change that would go over the byte bound overflows.
	b := newBatcher(1000, ws.QueueLimits{Items: 100, Bytes: 30}, time.Hour, wstest.Counter(), wstest.Counter())
	defer b.Discard()
	b.Enqueue(item(1, stream.KindRecordsCountChanged, 1, 10))
	b.Enqueue(item(2, stream.KindRecordCreated, 1, 10))
	if !b.Enqueue(item(3, stream.KindRecordsCountChanged, 1, 20)) {
		t.Fatal("replacement within the bound refused")
	}
	if b.Enqueue(item(4, stream.KindRecordsCountChanged, 1, 21)) {
		t.Fatal("replacement over the byte bound accepted")
	}
}
