package realtime

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/server/ws"
	"github.com/pgcast/pgcast/stream"
)

// rtConn is one /api/realtime connection. The read loop owns known; the
// outbox's lock guards everything shared with the hub and the replay worker.
type rtConn struct {
	h      *Handler
	conn   *ws.Conn
	out    *rtOutbox
	sub    *stream.Subscription
	viewer stream.Viewer
	ctx    context.Context // ends with the connection
	cancel context.CancelFunc
	expiry *time.Timer // closes with 4001; nil without a token
	// release uncounts the connection from the per-user and per-IP caps.
	release func()
	refused prometheus.Counter // client frames refused over the message rate

	known      map[string]nsKind // namespaces found in the database
	workerDone chan struct{}     // non-nil once the replay worker runs
}

// open sets the connection up and starts it; its read loop runs on a
// goroutine of its own (the HTTP handler returns, letting the server's
// request buffers go).
func (h *Handler) open(parent context.Context, conn *ws.Conn, viewer stream.Viewer, expires time.Time, release func()) {
	ctx, cancel := context.WithCancel(parent)
	out := newRTOutbox(h.ep.Config().QueueLimits(), h.dedupWindow, conn, h.ep.Frames(), h.ep.Items())
	out.gate = &h.gate
	conn.SetOutbox(out)
	c := &rtConn{h: h, conn: conn, out: out, viewer: viewer, ctx: ctx, cancel: cancel, release: release, known: map[string]nsKind{}}
	c.refused = h.ep.RefusedMessages()
	// Queued before the subscription exists, so it is the first frame.
	c.reply(mustJSON(struct {
		Type     string `json:"type"`
		ClientID string `json:"clientId"`
	}{"connected", "rt_" + uuid.NewString()}))
	sub, err := h.hub.Subscribe(stream.SubscribeOptions{Viewer: viewer, Protocol: stream.ProtocolRealtime, Queue: out})
	if err != nil {
		h.logger.Error("realtime subscribe", "err", err)
		cancel()
		conn.Abort()
		release()
		return
	}
	c.sub = sub
	h.ep.Opened(conn)
	if !expires.IsZero() {
		// With the leeway Verify allowed, so that a token accepted at the
		// upgrade is not dropped the same instant. Fires at once if the
		// token expired since it was verified.
		c.expiry = time.AfterFunc(time.Until(expires.Add(h.auth.Leeway())), func() { conn.Close(CloseTokenExpired, "token expired") })
	}
	conn.Start()
	go c.run()
}

// run is the connection's goroutine: the read loop, then the end.
func (c *rtConn) run() {
	h := c.h
	c.conn.ReadLoop(c.onMessage, c.onRefused)
	c.cancel()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	h.hub.Unsubscribe(c.sub)
	if c.workerDone != nil {
		<-c.workerDone
	}
	c.conn.Finish()
	c.release()
	h.ep.Closed(c.conn)
}

// onRefused answers a client frame refused over the message rate (on the
// read loop): the message was not handled.
func (c *rtConn) onRefused() {
	c.refused.Inc()
	c.reply(errRateLimited.frame())
}

// onMessage handles one client frame, on the read loop. Errors are replies;
// none closes the connection.
func (c *rtConn) onMessage(data []byte) {
	m, cerr := parseClientMessage(data)
	if cerr != nil {
		c.reply(cerr.frame())
		return
	}
	switch m.action {
	case actionPing:
		c.reply([]byte(`{"type":"pong"}`))
	case actionSubscribe:
		c.subscribe(m)
	case actionUnsubscribe:
		c.unsubscribe(m.channel)
	}
}

// reply queues a reply frame.
func (c *rtConn) reply(b []byte) {
	if c.out.reply(b) {
		c.conn.Notify()
	}
}

func (c *rtConn) subscribe(m clientMessage) {
	o := c.out
	o.mu.Lock()
	_, have := o.channels[m.channel]
	n := len(o.channels)
	o.mu.Unlock()
	if have {
		// Subscribing again replaces the channel's filter and select.
		c.h.hub.AddChannelWith(c.sub, m.channel, m.opts)
		c.reply(channelReply("subscribed", m.channel))
		return
	}
	if n >= maxRealtimeChannels {
		c.reply(errSubscriptionLimit.frame())
		return
	}
	if reply, ok := c.checkChannel(m.channel); !ok {
		if reply != nil {
			c.reply(reply)
		}
		return
	}
	if !m.resume {
		// Acknowledge first: the channel's events can only follow it.
		if o.subscribe(m.channel, channelReply("subscribed", m.channel), false) {
			c.h.hub.AddChannelWith(c.sub, m.channel, m.opts)
			c.conn.Notify()
		}
		return
	}
	if !o.subscribe(m.channel, channelReply("subscribed", m.channel), true) {
		c.reply((&clientError{code: "subscription_limit", message: "Too many resumes in progress on this connection"}).frame())
		return
	}
	c.conn.Notify()
	// The hub now offers the channel's live events, which the outbox holds;
	// only then may the replay read the log (see rtOutbox).
	c.h.hub.AddChannelWith(c.sub, m.channel, m.opts)
	o.queueReplay(&replayReq{channel: m.channel, after: m.since, opts: m.opts, set: &replayedSet{}})
	if c.workerDone == nil {
		c.workerDone = make(chan struct{})
		go c.replayWorker()
	}
}

func (c *rtConn) unsubscribe(channel string) {
	// Out of the hub first: every live event of the channel is then queued
	// (or held) before the acknowledgement.
	c.h.hub.RemoveChannel(c.sub, channel)
	if c.out.unsubscribe(channel, channelReply("unsubscribed", channel)) {
		c.conn.Notify()
	}
}
