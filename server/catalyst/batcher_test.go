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
