package realtime

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/internal/wstest"
	"github.com/pgcast/pgcast/server/ws"
	"github.com/pgcast/pgcast/stream"
)

// nopConn is a connection whose wakes and closes do nothing.
type nopConn struct{}

func (nopConn) Notify()           {}
func (nopConn) WakeNow()          {}
func (nopConn) Close(int, string) {}

// BenchmarkOutbox pushes events through a realtime connection's queue, as
// the hub and the writer do: Enqueue and, every batch events, Takes until
// the queue is empty, without writing. One op is one event enqueued.
func BenchmarkOutbox(b *testing.B) {
	for _, batch := range []int{16, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			items := make([]stream.Item, 256)
			for i := range items {
				ev := &stream.Event{Position: int64(i + 1), Kind: stream.KindRecordCreated, Environment: 1, ClassName: "posts"}
				items[i] = stream.Item{Event: ev, Bytes: fmt.Appendf(nil, `{"type":"event","event":{"id":"evt_%d","payload":{"title":"hello"}}}`, i+1)}
			}
			o := newRTOutbox(ws.QueueLimits{Items: 100_000}, time.Hour, nopConn{}, wstest.Counter(), wstest.Counter())
			o.subscribe("posts.*", []byte("ack"), false)
			fb := new(ws.FrameBuf)
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			i := 0
			for b.Loop() {
				o.Enqueue(items[i%len(items)])
				if i++; i%batch == 0 {
					for {
						o.Take(fb)
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

// BenchmarkOutboxFanout enqueues each event into 10,000 connections' queues,
// as the hub's fan-out does, then takes from each, as their writers do: the
// per-connection state no longer fits in the caches, so what it costs is
// mostly the cache lines one delivery touches. One op is one delivery.
func BenchmarkOutboxFanout(b *testing.B) {
	const conns = 10_000
	outs := make([]*rtOutbox, conns)
	for i := range outs {
		outs[i] = newRTOutbox(ws.QueueLimits{Items: 100_000}, time.Hour, nopConn{}, wstest.Counter(), wstest.Counter())
		outs[i].subscribe("posts.*", []byte("ack"), false)
		for !outs[i].drainForBench() {
		}
	}
	ev := &stream.Event{Position: 1, Kind: stream.KindRecordCreated, Environment: 1, ClassName: "posts"}
	it := stream.Item{Event: ev, Bytes: []byte(`{"type":"event","event":{"id":"evt_1","payload":{"title":"hello"}}}`)}
	fb := new(ws.FrameBuf)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		o := outs[n%conns]
		o.Enqueue(it)
		if n++; n%conns == 0 {
			ev.Position++ // a new event for every connection
			it.Event = ev
			for _, o := range outs {
				o.Take(fb)
				fb.Reset()
			}
		}
	}
}

// drainForBench takes everything queued without writing; true once empty.
func (o *rtOutbox) drainForBench() bool {
	fb := new(ws.FrameBuf)
	o.Take(fb)
	return fb.Empty()
}
