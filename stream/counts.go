package stream

import (
	"github.com/pgcast/pgcast/db"
)

// Record counts are derived from the log, not kept by the writers (see the
// package documentation, "Counts"): the Reader keeps every class's count
// as of its previous snapshot, starting from the counts as of its first one
// (db.ListenConn.StartingPoint: the pruner's checkpoint and the log after
// it). Each read works out the counts as of its own snapshot before it
// hands anything over, from the delta itself (a read of one page) or from
// the delta's bounds (a larger one, db.ListenConn.DeltaBounds), so that
// every count event of the read carries the class's count in that snapshot:
// the exact count after every change read so far, never an intermediate
// sum of interleaved transactions.
//
// Count events are the Reader's own: after a run of record_created /
// record_deleted entries of one transaction (a statement, or several in a
// row), one count event per class the run changed, side by side, at the
// position of the run's last entry. A count entry in the log is delivered
// as it is when it sets a count ({"count": n}, a watch seeded); the count
// entries of schema version 6 and before ({"delta": d}) are not delivered
// (their statement's run announces the count).

// countOp is what an entry does to its class's count.
type countOp uint8

const (
	countNone countOp = iota
	countStep         // record_created (+1), record_deleted (-1)
	countSet          // collection_created (0), a count entry with "count"
)

// entryCount is an entry's effect on its class's count: n is the step or
// the count set. announce: a step's class shows its count (a collection,
// a watch with counts: true).
type entryCount struct {
	op       countOp
	n        int64
	announce bool
}

// countOf says what an entry of kind k with data d does to its class's
// count. Record entries of pgcast's collections carry the class's field
// names ("fields"); a watched table's carry "counted" when the watch keeps
// its count.
func countOf(k Kind, d *entryData) entryCount {
	switch k {
	case KindRecordCreated:
		return entryCount{op: countStep, n: 1, announce: d.Fields != nil || d.Counted}
	case KindRecordDeleted:
		return entryCount{op: countStep, n: -1, announce: d.Fields != nil || d.Counted}
	case KindCollectionCreated:
		return entryCount{op: countSet}
	case KindRecordsCountChanged:
		if d.Count != nil {
			return entryCount{op: countSet, n: *d.Count, announce: true}
		}
	}
	return entryCount{}
}

// pendingCount is a class whose changes were handed over and whose count
// was not announced yet, with what its count event shows.
type pendingCount struct {
	class, pos int64
	ev         *Event // the class's last step handed over
}

// countsFromPage returns the counts, as of the read's snapshot, of the
// classes a whole delta (page) changes. Every entry counts, also those an
// interrupted read handed over already: r.counts is as of the last read
// that completed.
func (r *Reader) countsFromPage(page []pageEntry) map[int64]int64 {
	var final map[int64]int64
	for _, p := range page {
		if p.count.op == countNone {
			continue
		}
		if final == nil {
			final = map[int64]int64{}
		}
		switch p.count.op {
		case countStep:
			n, ok := final[p.ClassID]
			if !ok {
				n = r.counts[p.ClassID]
			}
			final[p.ClassID] = n + p.count.n
		case countSet:
			final[p.ClassID] = p.count.n
		}
	}
	return final
}

// countsFromChanges returns the counts, as of a large read's snapshot, of
// the classes its delta changes.
func (r *Reader) countsFromChanges(changes map[int64]db.CountChange) map[int64]int64 {
	final := make(map[int64]int64, len(changes))
	for c, ch := range changes {
		if ch.Set {
			final[c] = ch.N
		} else {
			final[c] = r.counts[c] + ch.N
		}
	}
	return final
}

// countAt is class's count as of the read whose counts are final.
func (r *Reader) countAt(final map[int64]int64, class int64) int64 {
	if n, ok := final[class]; ok {
		return n
	}
	return r.counts[class]
}

// withCounts returns the events of kept (entries not handed over yet, in
// order) with the count events they call for: those of a run of steps
// before the first entry that ends it, count entries that set a count with
// their class's count, legacy count entries left out. A run still open at
// the end stays pending (the next page may go on with it; announce ends
// it).
func (r *Reader) withCounts(kept []pageEntry, final map[int64]int64) []*Event {
	out := make([]*Event, 0, len(kept)+len(r.pending))
	for _, p := range kept {
		c := p.count
		if c.op == countStep && c.announce {
			if len(r.pending) > 0 && p.xid != r.runXid {
				out = r.flushCounts(out, final)
			}
			r.addPending(p)
			out = append(out, p.Event)
			continue
		}
		if len(r.pending) > 0 {
			out = r.flushCounts(out, final)
		}
		if p.Kind == KindRecordsCountChanged {
			if c.op != countSet {
				continue // a delta of schema version 6: see above
			}
			p.Count = r.countAt(final, p.ClassID)
		}
		out = append(out, p.Event)
	}
	return out
}

// addPending records a step handed over for its class's next count event.
func (r *Reader) addPending(p pageEntry) {
	r.runXid = p.xid
	for i := range r.pending {
		if r.pending[i].class == p.ClassID {
			r.pending[i].pos, r.pending[i].ev = p.Position, p.Event
			return
		}
	}
	r.pending = append(r.pending, pendingCount{class: p.ClassID, pos: p.Position, ev: p.Event})
}

// flushCounts appends a count event per pending class to out, with its
// count as of the read (final), and clears the run.
func (r *Reader) flushCounts(out []*Event, final map[int64]int64) []*Event {
	for _, pc := range r.pending {
		out = append(out, &Event{
			Position:    pc.pos,
			Kind:        KindRecordsCountChanged,
			Time:        pc.ev.Time,
			Environment: pc.ev.Environment,
			ClassID:     pc.class,
			ClassName:   pc.ev.ClassName,
			Read:        pc.ev.Read,
			Count:       r.countAt(final, pc.class),
		})
	}
	r.pending, r.runXid = r.pending[:0], 0
	return out
}

// announce hands over the count events of the run still open when a read
// completes, and makes final the reader's counts.
func (r *Reader) announce(final map[int64]int64) {
	if len(r.pending) > 0 {
		events := r.flushCounts(nil, final)
		r.cfg.Handler(events)
		r.metrics.events.Add(float64(len(events)))
	}
	for c, n := range final {
		r.counts[c] = n
	}
}
