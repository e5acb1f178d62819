package stream

import (
	"strconv"
	"time"
)

// ChannelOptions shape what one realtime channel of a connection delivers:
// Filter admits an event by its row (see Filter), Select trims its payload
// to some columns and the key. nil, or both nil, delivers every event of the
// channel whole, sharing the one frame the hub encodes per event.
type ChannelOptions struct {
	Filter *Filter
	Select *Select

	key string // String(), kept by Hub.AddChannelWith
}

func (o *ChannelOptions) plain() bool { return o == nil || (o.Filter == nil && o.Select == nil) }

// String is a canonical form of the options, equal for options that shape
// events alike: the key of the frames the hub shares between channels.
func (o *ChannelOptions) String() string {
	if o.plain() {
		return ""
	}
	return o.Filter.String() + "\x00" + o.Select.String()
}

// eventRows are an event's rows, decoded once per event (lazily, for the
// first channel with options) and shared by every subscription's filter:
// before is the row as it was (deletes, and updates whose old values are
// known: the new row with Event.Old put back), after the row as it is
// (creates and updates). Published events have their payload as after,
// when it is a JSON object.
type eventRows struct {
	ev            *Event
	decoded       bool
	before, after *Row
}

func (r *eventRows) rows() (before, after *Row) {
	if r.decoded {
		return r.before, r.after
	}
	r.decoded = true
	ev := r.ev
	switch {
	case ev.Kind == KindRecordDeleted:
		r.before, _ = NewRow(ev.Record)
		if r.before != nil && ev.Old != nil {
			r.before, _ = r.before.Overlay(ev.Old)
		}
	case ev.Kind.IsRecord():
		r.after, _ = NewRow(ev.Record)
		if r.after != nil && ev.Kind == KindRecordValueChanged && ev.Old != nil {
			r.before, _ = r.after.Overlay(ev.Old)
		}
	case len(ev.Payload) > 0:
		r.after, _ = NewRow(ev.Payload)
	}
	return r.before, r.after
}

// decide says whether a channel with options o delivers the event, and
// how it relates to o's filter (entering or leaving it). An update whose
// old values are unknown is decided on its new row.
func (o *ChannelOptions) decide(rows *eventRows) (bool, Transition) {
	if o == nil || o.Filter == nil {
		return true, TransitionNone
	}
	before, after := rows.rows()
	if before == nil && after == nil {
		return false, TransitionNone // not an object: no row to match
	}
	if before != nil && after != nil {
		return o.Filter.Deliver(before, after)
	}
	if after != nil {
		return o.Filter.Deliver(nil, after)
	}
	return o.Filter.Deliver(before, nil)
}

// appendFrame appends the event message for ev shaped by o: its payload
// trimmed by o.Select, and "transition" ("enter" or "leave") when the
// delivery changes whether the row matches o.Filter.
func (o *ChannelOptions) appendFrame(b []byte, ev *Event, typ string, rows *eventRows, t Transition) []byte {
	var payload []byte
	if o != nil && o.Select != nil {
		before, after := rows.rows()
		row := after
		if row == nil {
			row = before
		}
		if row != nil {
			payload = o.Select.AppendProject(nil, row, nil)
		}
	}
	return appendRealtimeEvent(b, ev, typ, payload, t)
}

// RealtimeFrame is the event message a channel with options o sends for ev
// (whose realtime type is typ), and whether it sends one: the same decision
// and bytes as the hub's, for a replay (resume) of that channel.
func RealtimeFrame(b []byte, ev *Event, typ string, o *ChannelOptions) ([]byte, bool) {
	if o.plain() {
		return AppendRealtimeEvent(b, ev, typ), true
	}
	rows := &eventRows{ev: ev}
	ok, t := o.decide(rows)
	if !ok {
		return b, false
	}
	return o.appendFrame(b, ev, typ, rows, t), true
}

// shapedFrames are the frames of one event shaped by channel options, kept
// while the hub fans the event out, so that subscriptions with equal
// options share one encoding.
type shapedFrames struct {
	keys   []string
	trans  []Transition
	frames [][]byte
}

func (f *shapedFrames) get(key string, t Transition) ([]byte, bool) {
	for i, k := range f.keys {
		if f.trans[i] == t && k == key {
			return f.frames[i], true
		}
	}
	return nil, false
}

func (f *shapedFrames) put(key string, t Transition, b []byte) {
	// Bounded by the distinct options of one event's subscribers; a hub
	// with thousands of distinct filters pays a linear scan per shaped
	// delivery, still no query and no re-decoding of the row.
	f.keys = append(f.keys, key)
	f.trans = append(f.trans, t)
	f.frames = append(f.frames, b)
}

// appendRealtimeEvent appends the /api/realtime event message for ev: its
// payload the record, the published payload, or payload when not nil; and
// a "transition" member after the payload when t is one.
func appendRealtimeEvent(b []byte, ev *Event, typ string, payload []byte, t Transition) []byte {
	b = append(b, `{"type":"event","event":{"id":"evt_`...)
	b = strconv.AppendInt(b, ev.Position, 10)
	b = append(b, `","type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"timestamp":"`...)
	b = ev.Time.UTC().Truncate(time.Millisecond).AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, `","source":`...)
	source := ev.Source
	if ev.Kind.IsRecord() {
		source = "collections"
	}
	b = appendJSONString(b, source)
	b = append(b, `,"payload":`...)
	switch {
	case payload != nil:
		b = append(b, payload...)
	case ev.Kind.IsRecord() && len(ev.Record) > 0:
		b = append(b, ev.Record...) // compact already (see recordFields.record)
	case ev.Kind.IsRecord() || len(ev.Payload) == 0:
		b = append(b, "{}"...)
	default:
		// As Postgres printed it: compacted as REST writes it.
		b = appendCompact(b, ev.Payload)
	}
	if t != TransitionNone {
		b = append(b, `,"transition":"`...)
		b = append(b, t.String()...)
		b = append(b, '"')
	}
	return append(b, "}}"...)
}

// realtimeFan is one event's realtime fan-out: the event's one plain frame,
// its visibility, its rows and shaped frames, each made on first need.
type realtimeFan struct {
	ev                 *Event
	typ                string
	item               Item
	vis                *visibility
	rows               eventRows
	shaped             shapedFrames
	delivered, dropped int
	offer              func(channel string, set subSet)
}

func (f *realtimeFan) reset(ev *Event, typ string) {
	if f.offer == nil {
		f.offer = f.offerTo
	}
	f.ev, f.typ, f.item, f.vis = ev, typ, Item{}, nil
	f.rows = eventRows{}
	clear(f.shaped.frames) // let the last event's frames go
	f.shaped.keys, f.shaped.trans, f.shaped.frames = f.shaped.keys[:0], f.shaped.trans[:0], f.shaped.frames[:0]
	f.delivered, f.dropped = 0, 0
}

// offerTo offers the event to the subscriptions in set, which have
// channel: once per subscription (seen), if it may read it, shaped by the
// channel's options when it has some (a filter that does not admit the
// event leaves it to another of the subscription's channels).
func (f *realtimeFan) offerTo(channel string, set subSet) {
	ev := f.ev
	for s := range set {
		if s.overflowed || s.seen == ev.Position {
			continue
		}
		if f.vis == nil {
			f.vis = visibilityOf(ev)
		}
		if !f.vis.allows(s.viewer, ev) {
			s.seen = ev.Position
			continue
		}
		var it Item
		var o *ChannelOptions
		if s.shaped > 0 {
			o = s.channels[channel]
		}
		if o != nil {
			if f.rows.ev == nil {
				f.rows.ev = ev
			}
			ok, t := o.decide(&f.rows)
			if !ok {
				continue
			}
			b, ok := f.shaped.get(o.key, t)
			if !ok {
				b = o.appendFrame(nil, ev, f.typ, &f.rows, t)
				f.shaped.put(o.key, t, b)
			}
			it = Item{Event: ev, Bytes: b}
		} else {
			if f.item.Bytes == nil {
				// Sized once: the envelope is under 200 bytes besides the
				// type, source and payload, so the frame is one allocation.
				n := 200 + len(f.typ) + len(ev.Source) + len(ev.Record) + len(ev.Payload)
				f.item = Item{Event: ev, Bytes: AppendRealtimeEvent(make([]byte, 0, n), ev, f.typ)}
			}
			it = f.item
		}
		s.seen = ev.Position
		if s.queue.Enqueue(it) {
			f.delivered++
		} else {
			s.overflowed = true
			f.dropped++
		}
	}
}
