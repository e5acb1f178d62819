package ws

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func strQueue(lim QueueLimits, keep int) Queue[string] {
	return NewQueue(lim, keep, func(s string) int { return len(s) })
}

// checkQueue compares q with the model: items in order, count and bytes.
func checkQueue(t *testing.T, q *Queue[string], model []string) {
	t.Helper()
	a, b := q.Front(q.Len())
	got := append(slices.Clone(a), b...)
	if !slices.Equal(got, model) {
		t.Fatalf("queue holds %q, want %q", got, model)
	}
	bytes := 0
	for _, s := range model {
		bytes += len(s)
	}
	if q.Len() != len(model) || q.Bytes() != bytes {
		t.Fatalf("Len %d Bytes %d, want %d and %d", q.Len(), q.Bytes(), len(model), bytes)
	}
	if len(q.buf)&(len(q.buf)-1) != 0 || q.n > len(q.buf) {
		t.Fatalf("ring of %d for %d items", len(q.buf), q.n)
	}
	// What was taken out is cleared: the ring pins nothing the writer sent.
	for i := q.n; i < len(q.buf); i++ {
		if s := q.buf[(q.head+i)&(len(q.buf)-1)]; s != "" {
			t.Fatalf("slot %d outside the queue still holds %q", i, s)
		}
	}
}

// TestQueueFIFO runs random pushes, pops, drains and replacements against a
// slice: order, counts and bytes agree through growth, wrap-around and
// letting the ring go.
func TestQueueFIFO(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	q := strQueue(QueueLimits{Items: 1 << 20, Bytes: 1 << 30}, 32)
	var model []string
	var dst []string
	for step := range 20_000 {
		switch op := rng.IntN(10); {
		case op < 5: // a burst now and then, so that the ring grows and is let go
			n := 1 + rng.IntN(3)
			if rng.IntN(50) == 0 {
				n = 200 + rng.IntN(300)
			}
			for range n {
				s := strings.Repeat("x", rng.IntN(20)) + string(rune('a'+step%26))
				if !q.Push(s) {
					t.Fatal("push refused within the bounds")
				}
				model = append(model, s)
			}
		case op < 7:
			got := q.PopInto(nil, 1)
			if len(got) != min(len(model), 1) || (len(got) == 1 && got[0] != model[0]) {
				t.Fatalf("PopInto(1) = %q; want the front of %d", got, len(model))
			}
			model = model[len(got):]
		case op < 9:
			n := rng.IntN(q.Len() + 2)
			dst = q.PopInto(dst[:0], n)
			k := min(n, len(model))
			if !slices.Equal(dst, model[:k]) {
				t.Fatalf("PopInto(%d) = %q, want %q", n, dst, model[:k])
			}
			model = model[k:]
		default:
			if len(model) > 0 {
				i := rng.IntN(len(model))
				s := strings.Repeat("y", rng.IntN(30))
				if !q.Replace(i, s) {
					t.Fatal("replace refused within the bounds")
				}
				model[i] = s
			}
		}
		checkQueue(t, &q, model)
	}
}

// TestQueueBounds: a push over the item bound or the byte bound is refused
// and changes nothing; held items count; an item alone is taken however
// large; PushUnchecked goes over and later pushes see it.
func TestQueueBounds(t *testing.T) {
	t.Parallel()
	q := strQueue(QueueLimits{Items: 3, Bytes: 10}, 8)
	for _, s := range []string{"aa", "bb", "cc"} {
		if !q.Push(s) {
			t.Fatalf("push %q refused", s)
		}
	}
	if q.Push("d") {
		t.Fatal("fourth item accepted with Items 3")
	}
	checkQueue(t, &q, []string{"aa", "bb", "cc"})

	q.Drop(1) // 2 items, 4 bytes
	if q.Push("eeeeeee") {
		t.Fatal("11 bytes accepted with Bytes 10")
	}
	if !q.Push("eeeeee") { // exactly 10
		t.Fatal("10 bytes refused with Bytes 10")
	}
	checkQueue(t, &q, []string{"bb", "cc", "eeeeee"})

	// Replace: a larger item over the byte bound is refused, a smaller one
	// taken.
	if q.Replace(0, "bbb") {
		t.Fatal("replacement over the byte bound accepted")
	}
	if !q.Replace(2, "e") {
		t.Fatal("smaller replacement refused")
	}
	checkQueue(t, &q, []string{"bb", "cc", "e"})

	// Held items count against both bounds until unheld.
	q.Reset()
	if !q.Hold(6) || !q.Push("aaaa") {
		t.Fatal("refused within the bounds")
	}
	if q.Push("x") || q.Hold(1) {
		t.Fatal("over the byte bound with a held item")
	}
	q.Unhold(6)
	if !q.Push("bbbbbb") {
		t.Fatal("unheld bytes still counted")
	}
	checkQueue(t, &q, []string{"aaaa", "bbbbbb"})

	// An item alone is taken whatever its size; a second is not.
	q.Reset()
	if !q.Push(strings.Repeat("z", 100)) {
		t.Fatal("a lone large item refused")
	}
	if q.Push("a") {
		t.Fatal("accepted behind an item over the byte bound")
	}

	// PushUnchecked ignores the bounds; Push then refuses until there is
	// room again.
	q.Reset()
	for range 5 {
		q.PushUnchecked("u")
	}
	if q.Len() != 5 || q.Push("v") {
		t.Fatal("unchecked pushes not counted")
	}
	q.Drop(3)
	if !q.Push("v") {
		t.Fatal("refused with room")
	}
	checkQueue(t, &q, []string{"u", "u", "v"})
	q.Reset()
	checkQueue(t, &q, nil)
	if q.buf != nil {
		t.Fatal("Reset kept the ring")
	}
}

// TestQueueDefaults: zero (or negative) limits are the defaults, and
// Config's fill in from MaxBuffer.
func TestQueueDefaults(t *testing.T) {
	t.Parallel()
	if got := (QueueLimits{Bytes: -1}).WithDefaults(); got != (QueueLimits{DefaultQueueItems, DefaultQueueItems * DefaultItemBytes}) {
		t.Fatalf("defaults %+v", got)
	}
	if got := (QueueLimits{Items: 10}).WithDefaults(); got.Bytes != 10*DefaultItemBytes {
		t.Fatalf("bytes default %d", got.Bytes)
	}
	if got := (Config{MaxBuffer: 3000}).WithDefaults().QueueLimits(); got != (QueueLimits{3000, 3000 * DefaultItemBytes}) {
		t.Fatalf("config %+v", got)
	}
	if got := (Config{MaxBufferBytes: 5}).WithDefaults().QueueLimits(); got != (QueueLimits{DefaultQueueItems, 5}) {
		t.Fatalf("config %+v", got)
	}
	q := NewQueue(QueueLimits{}, 0, func(int) int { return 1 })
	if q.lim != (QueueLimits{}).WithDefaults() {
		t.Fatalf("queue limits %+v", q.lim)
	}
}

// TestQueueMemory: a ring up to keep is kept once the queue empties, a
// larger one let go (not before); steady traffic within keep allocates
// nothing. Not parallel: AllocsPerRun.
func TestQueueMemory(t *testing.T) {
	q := strQueue(QueueLimits{}, 64)
	for range 1000 {
		q.Push("x")
	}
	if len(q.buf) != 1024 {
		t.Fatalf("ring of %d for 1000 items", len(q.buf))
	}
	q.Drop(999)
	if len(q.buf) != 1024 {
		t.Fatalf("ring of %d for 1 item", len(q.buf))
	}
	q.Drop(1)
	if q.buf != nil {
		t.Fatalf("empty queue keeps a ring of %d over keep 64", len(q.buf))
	}
	for range 40 {
		q.Push("x")
	}
	q.Drop(40)
	if len(q.buf) != 64 {
		t.Fatalf("empty queue keeps %d, want its ring of 64", len(q.buf))
	}

	var dst []string
	allocs := testing.AllocsPerRun(100, func() {
		for range 50 {
			q.Push("x")
		}
		for q.Len() > 0 {
			dst = q.PopInto(dst[:0], 16)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 50 items within keep", allocs)
	}
}

// BenchmarkQueue pushes items and drains them into a caller's slice, batch
// at a time: one op is one item.
func BenchmarkQueue(b *testing.B) {
	type item struct {
		p   []byte
		pos int64
	}
	payload := make([]byte, 100)
	for _, batch := range []int{16, 1000} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			q := NewQueue(QueueLimits{}, 64, func(it item) int { return len(it.p) })
			var dst []item
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				q.Push(item{payload, int64(i)})
				if i++; i%batch == 0 {
					for q.Len() > 0 {
						dst = q.PopInto(dst[:0], 64)
					}
				}
			}
		})
	}
}
