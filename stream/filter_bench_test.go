package stream

import (
	"encoding/json"
	"fmt"
	"testing"
)

// benchRecord is a typical application row: 8 columns of mixed types, as
// to_jsonb prints them.
const benchRecord = `{"id": 48213, "note": null, "total": 1250.75, "status": "shipped", "title": "Order 48213 – blue widgets", ` +
	`"paid_at": "2026-03-14T09:26:53.589793+00:00", "createdAt": "2026-03-14T09:20:01.000Z", "customer_id": 731}`

// benchFilters returns n subscribers' filters, a mix of what clients
// subscribe with: equality, ranges, lists, patterns, timestamps, nulls and
// AND chains, with operands that vary by subscriber.
func benchFilters(tb testing.TB, n int) []*Filter {
	fs := make([]*Filter, n)
	for i := range fs {
		var s string
		switch i % 10 {
		case 0:
			s = fmt.Sprintf("customer_id=eq.%d", 700+i%50)
		case 1:
			s = "status=in.(paid,shipped,delivered)"
		case 2:
			s = fmt.Sprintf("total=gt.%d,status=neq.cancelled", i)
		case 3:
			s = "title=ilike.*widget*"
		case 4:
			s = fmt.Sprintf("paid_at=gte.2026-03-%02dT00:00:00Z", 1+i%28)
		case 5:
			s = "note=is.null,status=not.in.(cancelled,refunded)"
		case 6:
			s = `title=imatch.^order [0-9]+ `
		case 7:
			s = fmt.Sprintf("customer_id=in.(%d,%d,%d),total=lte.5000", i, i+1, 731)
		case 8:
			s = fmt.Sprintf("status=eq.shipped,total=gte.100,createdAt=lt.2026-04-01,customer_id=neq.%d", i)
		case 9:
			s = "title=like.Order*,note=isdistinct.fragile"
		}
		fs[i] = mustFilter(tb, s)
	}
	return fs
}

// BenchmarkFilter1000Subscribers is the per-event cost of filters with
// 1,000 filtered subscribers: the row is decoded once, then every
// subscriber's filter is matched against it.
func BenchmarkFilter1000Subscribers(b *testing.B) {
	filters := benchFilters(b, 1000)
	record := json.RawMessage(benchRecord)
	matched := 0
	b.ReportAllocs()
	for b.Loop() {
		row, err := NewRow(record)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range filters {
			if f.Match(row) {
				matched++
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/subscriber")
	if matched == 0 {
		b.Fatal("no filter matched")
	}
}

// BenchmarkFilterUpdate1000Subscribers: an update, judged on its old and
// new rows (entering, leaving) for 1,000 subscribers.
func BenchmarkFilterUpdate1000Subscribers(b *testing.B) {
	filters := benchFilters(b, 1000)
	record := json.RawMessage(benchRecord)
	changes := json.RawMessage(`{"status": "paid", "total": 90}`)
	b.ReportAllocs()
	for b.Loop() {
		row, err := NewRow(record)
		if err != nil {
			b.Fatal(err)
		}
		old, err := row.Overlay(changes)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range filters {
			f.Deliver(old, row)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/subscriber")
}

// BenchmarkRowDecode is the once-per-event part alone.
func BenchmarkRowDecode(b *testing.B) {
	record := json.RawMessage(benchRecord)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewRow(record); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSelectProject trims the row for one select.
func BenchmarkSelectProject(b *testing.B) {
	row := mustRow(b, benchRecord)
	sel := mustSelect(b, "status,total")
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = sel.AppendProject(buf[:0], row, nil)
	}
}
