package stream

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Protocol is what a subscription receives.
type Protocol uint8

// Protocols.
const (
	ProtocolRecords  Protocol = iota + 1 // /ws/events/object-records/: Catalyst record items
	ProtocolTasks                        // /ws/events/tasks/: Catalyst task items
	ProtocolRealtime                     // /api/realtime: one event message per event
)

// Item is one delivery: the event and its encoding for the subscription's
// protocol. Bytes are shared by every subscription receiving the event and
// must not be modified.
type Item struct {
	Event *Event
	Bytes []byte
}

// Queue is a connection's bounded outgoing queue. Enqueue is called by the
// hub and must never block: it returns false when the queue is full, and the
// connection then closes itself (slow consumer).
type Queue interface {
	Enqueue(Item) bool
}

// Subscription is one connection's interest. Create it with Hub.Subscribe;
// end it with Hub.Unsubscribe.
type Subscription struct {
	viewer   Viewer
	protocol Protocol
	classes  map[int64]struct{} // Catalyst: nil = every class
	fields   map[int64]struct{} // Catalyst records: nil = every field
	queue    Queue

	// Realtime channels and their options (nil: none), guarded by the
	// hub's lock; shaped counts the channels with options, so that a
	// subscription without any skips looking its channel up.
	channels map[string]*ChannelOptions
	shaped   int
	// seen is the position last delivered, so that an event matching several
	// channels is delivered once. Written only by the publishing goroutine.
	seen int64
	// overflowed is set once Enqueue has refused; no more is offered.
	overflowed bool
}

// SubscribeOptions describes a new subscription.
type SubscribeOptions struct {
	Viewer   Viewer
	Protocol Protocol
	// ClassIDs restricts Catalyst subscriptions to these object classes
	// (empty: all).
	ClassIDs []int64
	// FieldIDs restricts object_record_value_changed to changes of at least
	// one of these fields (empty: all). Other kinds pass.
	FieldIDs []int64
	Queue    Queue
}

// HubConfig configures a Hub. The zero value means the defaults.
type HubConfig struct {
	// Registerer receives the hub's metrics. Default: none.
	Registerer prometheus.Registerer
}

// Hub routes each event to the subscriptions that want it and may read it.
// Routing goes through an index (environment → class or channel →
// subscriptions), never a scan of every connection; permissions are
// evaluated in memory from the event's own data; each event is encoded at
// most once per protocol. Publish never blocks on a subscriber.
type Hub struct {
	pubMu sync.Mutex   // one publisher at a time (owns Subscription.seen and fan)
	mu    sync.RWMutex // guards envs and Subscription.channels
	envs  map[int64]*envIndex
	// fan is the publisher's scratch for one event's realtime fan-out
	// (guarded by pubMu): reused, so that fan-out allocates nothing per
	// event for it.
	fan realtimeFan

	metrics hubMetrics
}

type subSet map[*Subscription]struct{}

type classIndex struct {
	all     subSet
	byClass map[int64]subSet
}

type envIndex struct {
	records, tasks classIndex
	channels       channelIndex // realtime
	subs           int
}

// NewHub returns an empty hub.
func NewHub(cfg HubConfig) (*Hub, error) {
	h := &Hub{envs: map[int64]*envIndex{}, metrics: newHubMetrics()}
	if cfg.Registerer != nil {
		if err := h.metrics.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Subscribe registers a subscription. Events published after it returns
// are offered to it.
func (h *Hub) Subscribe(o SubscribeOptions) (*Subscription, error) {
	if o.Queue == nil {
		return nil, errors.New("stream: Subscribe needs a Queue")
	}
	if o.Protocol < ProtocolRecords || o.Protocol > ProtocolRealtime {
		return nil, errors.New("stream: Subscribe: unknown protocol")
	}
	s := &Subscription{viewer: o.Viewer, protocol: o.Protocol, queue: o.Queue, classes: idSet(o.ClassIDs), fields: idSet(o.FieldIDs)}
	h.mu.Lock()
	defer h.mu.Unlock()
	env := h.env(o.Viewer.Environment)
	env.subs++
	switch o.Protocol {
	case ProtocolRecords:
		env.records.add(s)
	case ProtocolTasks:
		env.tasks.add(s)
	case ProtocolRealtime:
		s.channels = map[string]*ChannelOptions{}
	}
	h.metrics.subscriptions.Inc()
	return s, nil
}

// Unsubscribe removes s. Idempotent.
func (h *Hub) Unsubscribe(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	env := h.envs[s.viewer.Environment]
	if env == nil {
		return
	}
	removed := false
	switch s.protocol {
	case ProtocolRecords:
		removed = env.records.remove(s)
	case ProtocolTasks:
		removed = env.tasks.remove(s)
	case ProtocolRealtime:
		if s.channels != nil {
			for ch := range s.channels {
				env.channels.remove(s, ch)
			}
			s.channels = nil
			removed = true
		}
	}
	if !removed {
		return
	}
	h.metrics.subscriptions.Dec()
	env.subs--
	if env.subs == 0 {
		delete(h.envs, s.viewer.Environment)
	}
}

// AddChannel subscribes a realtime subscription to channel ("posts.created"
// or "posts.*"), which the caller has validated, delivering every event of
// it. It returns the number of channels s now has; adding one it has is a
// no-op.
func (h *Hub) AddChannel(s *Subscription, channel string) int {
	return h.AddChannelWith(s, channel, nil)
}

// AddChannelWith is AddChannel with options (a filter, a select; nil: none).
// Adding a channel s has replaces its options.
func (h *Hub) AddChannelWith(s *Subscription, channel string, o *ChannelOptions) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.channels == nil {
		return 0
	}
	if o.plain() {
		o = nil
	} else {
		o.key = o.String()
	}
	old, ok := s.channels[channel]
	if old != nil {
		s.shaped--
	}
	if o != nil {
		s.shaped++
	}
	s.channels[channel] = o
	if !ok {
		h.env(s.viewer.Environment).channels.add(s, channel)
	}
	return len(s.channels)
}

// ChannelOptions returns the options s has for channel (nil: none, or not
// subscribed).
func (h *Hub) ChannelOptions(s *Subscription, channel string) *ChannelOptions {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return s.channels[channel]
}

// RemoveChannel unsubscribes s from channel; removing one it lacks is a
// no-op.
func (h *Hub) RemoveChannel(s *Subscription, channel string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o, ok := s.channels[channel]
	if !ok {
		return
	}
	if o != nil {
		s.shaped--
	}
	delete(s.channels, channel)
	if env := h.envs[s.viewer.Environment]; env != nil {
		env.channels.remove(s, channel)
	}
}

// HasChannel reports whether s is subscribed to channel.
func (h *Hub) HasChannel(s *Subscription, channel string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	_, ok := s.channels[channel]
	return ok
}

func (h *Hub) env(id int64) *envIndex {
	env := h.envs[id]
	if env == nil {
		env = &envIndex{
			records:  classIndex{all: subSet{}, byClass: map[int64]subSet{}},
			tasks:    classIndex{all: subSet{}, byClass: map[int64]subSet{}},
			channels: newChannelIndex(),
		}
		h.envs[id] = env
	}
	return env
}

func (ci *classIndex) add(s *Subscription) {
	if s.classes == nil {
		ci.all[s] = struct{}{}
		return
	}
	for c := range s.classes {
		addTo(ci.byClass, c, s)
	}
}

func (ci *classIndex) remove(s *Subscription) bool {
	if s.classes == nil {
		_, ok := ci.all[s]
		delete(ci.all, s)
		return ok
	}
	found := false
	for c := range s.classes {
		if set := ci.byClass[c]; set != nil {
			if _, ok := set[s]; ok {
				found = true
			}
		}
		removeFrom(ci.byClass, c, s)
	}
	return found
}

func addTo[K comparable](m map[K]subSet, k K, s *Subscription) {
	set := m[k]
	if set == nil {
		set = subSet{}
		m[k] = set
	}
	set[s] = struct{}{}
}

func removeFrom[K comparable](m map[K]subSet, k K, s *Subscription) {
	if set := m[k]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

func idSet(ids []int64) map[int64]struct{} {
	if len(ids) == 0 {
		return nil
	}
	m := make(map[int64]struct{}, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	return m
}

// Publish offers events, in order, to every subscription that wants them
// and may read them. It is the Reader's Handler.
func (h *Hub) Publish(events []*Event) {
	h.pubMu.Lock()
	defer h.pubMu.Unlock()
	h.mu.RLock()
	defer h.mu.RUnlock()
	var delivered, dropped int
	for _, ev := range events {
		env := h.envs[ev.Environment]
		if env == nil {
			continue
		}
		var d, x int
		switch {
		case ev.Kind.IsRecord() && (ev.RecordID != 0 || ev.Kind == KindRecordsCountChanged):
			// A watched table without one integer key column has no record
			// id: its changes are realtime-only (docs/watch.md).
			d, x = h.fanCatalyst(&env.records, ev)
		case ev.Kind.IsTask():
			d, x = h.fanCatalyst(&env.tasks, ev)
		}
		delivered, dropped = delivered+d, dropped+x
		if !env.channels.empty() {
			d, x = h.fanRealtime(env, ev)
			delivered, dropped = delivered+d, dropped+x
		}
	}
	h.metrics.events.Add(float64(len(events)))
	h.metrics.deliveries.Add(float64(delivered))
	if dropped > 0 {
		h.metrics.overflows.Add(float64(dropped))
	}
}

// fanCatalyst offers ev to the Catalyst subscriptions of its class and to
// those without a class filter.
func (h *Hub) fanCatalyst(ci *classIndex, ev *Event) (delivered, dropped int) {
	var item Item
	users := userIndex{ev: ev}
	offer := func(set subSet) {
		for s := range set {
			if s.overflowed || !s.wantsFields(ev) || !mayRead(s.viewer, ev, &users) {
				continue
			}
			if item.Bytes == nil {
				item = Item{Event: ev, Bytes: AppendCatalystItem(nil, ev)}
			}
			if s.queue.Enqueue(item) {
				delivered++
			} else {
				s.overflowed = true
				dropped++
			}
		}
	}
	offer(ci.all)
	offer(ci.byClass[ev.ClassID])
	return delivered, dropped
}

func (s *Subscription) wantsFields(ev *Event) bool {
	if s.fields == nil || ev.Kind != KindRecordValueChanged {
		return true
	}
	for _, f := range ev.FieldIDs {
		if _, ok := s.fields[f]; ok {
			return true
		}
	}
	return false
}

// fanRealtime offers ev to realtime subscriptions whose channel matches its
// type, once per subscription. A subscription whose channels have no
// options shares one frame per event; a channel with a filter admits the
// event by its row (decoded once per event, for every filter), and when
// several of a subscription's channels match, the first that admits the
// event (the exact channel, then wildcards from the shortest) shapes it.
func (h *Hub) fanRealtime(env *envIndex, ev *Event) (delivered, dropped int) {
	typ := RealtimeType(ev)
	if typ == "" {
		return 0, 0
	}
	f := &h.fan
	f.reset(ev, typ)
	env.channels.match(typ, f.offer)
	delivered, dropped = f.delivered, f.dropped
	f.reset(nil, "") // keep no event alive
	return delivered, dropped
}

type hubMetrics struct {
	events, deliveries, overflows prometheus.Counter
	subscriptions                 prometheus.Gauge
}

func newHubMetrics() hubMetrics {
	return hubMetrics{
		events:        prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_hub_events_total", Help: "Events published to the hub."}),
		deliveries:    prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_hub_deliveries_total", Help: "Events enqueued to connections."}),
		overflows:     prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_hub_overflows_total", Help: "Deliveries refused by a full connection queue (slow consumers)."}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgcast_hub_subscriptions", Help: "Active subscriptions."}),
	}
}

func (m hubMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.events, m.deliveries, m.overflows, m.subscriptions} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
