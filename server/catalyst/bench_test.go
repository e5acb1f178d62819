package catalyst

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/internal/wstest"
	"github.com/pgcast/pgcast/server/ws"
	"github.com/pgcast/pgcast/stream"
)

// BenchmarkBatcher pushes items through a Catalyst connection's queue, as
// the hub and the writer do: Enqueue (one item in eight a count change of
// one of four classes, coalesced) and, every batch items, a tick's Take of
// every frame (frames of 100 items), without writing them. One op is one
// item enqueued.
func BenchmarkBatcher(b *testing.B) {
	for _, batch := range []int{64, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			items := make([]stream.Item, 256)
			for i := range items {
				ev := &stream.Event{Position: int64(i + 1), Kind: stream.KindRecordCreated, Environment: 1, ClassID: 7, ClassName: "posts"}
				if i%8 == 7 {
					ev.Kind, ev.ClassID = stream.KindRecordsCountChanged, int64(i%4)
				}
				items[i] = stream.Item{Event: ev, Bytes: fmt.Appendf(nil, `{"type":"event","event":{"id":"evt_%d","payload":{"title":"hello"}}}`, i+1)}
			}
			bt := newBatcher(100, ws.QueueLimits{Items: 100_000}, time.Hour, wstest.Counter(), wstest.Counter())
			defer bt.Discard()
			fb := new(ws.FrameBuf)
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			i := 0
			for b.Loop() {
				bt.Enqueue(items[i%len(items)])
				if i++; i%batch == 0 {
					bt.mu.Lock()
					bt.due = true // the tick (its timer is an hour away)
					bt.mu.Unlock()
					for {
						bt.Take(fb)
						if fb.Empty() {
							break
						}
						fb.Reset()
					}
				}
			}
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)*1000/float64(i), "allocs/1000items")
		})
	}
}
