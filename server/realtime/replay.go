package realtime

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/pgcast/pgcast/stream"
)

// replayWorker runs the connection's resumes one at a time, off the read
// loop (which keeps answering pings meanwhile), until the connection ends.
func (c *rtConn) replayWorker() {
	defer close(c.workerDone)
	for c.ctx.Err() == nil {
		req := c.out.nextReplay()
		if req == nil {
			select {
			case <-c.out.replayWake:
			case <-c.ctx.Done():
			}
			continue
		}
		c.replay(req)
	}
}

var (
	errReplayCancelled = errors.New("replay cancelled")
	errOutboxClosed    = errors.New("connection closed")
)

// replay sends the channel's events after req.after, then releases the held
// live events.
func (c *rtConn) replay(req *replayReq) {
	o := c.out
	defer func() {
		if o.finishReplay(req) {
			c.conn.Notify()
		}
	}()
	if !o.startReplay(req) {
		return
	}
	err := stream.Replay(c.ctx, c.h.pool, stream.ReplayOptions{
		Environment: c.viewer.Environment, After: req.after, Namespace: stream.ChannelNamespace(req.channel), Logger: c.h.logger,
		Acquire: c.h.acquireReplaySlot,
	}, func(ev *stream.Event) error {
		typ := stream.RealtimeType(ev)
		if !stream.ChannelMatches(req.channel, typ) || !stream.Visible(c.viewer, ev) {
			return nil
		}
		b, ok := stream.RealtimeFrame(nil, ev, typ, req.opts)
		if !ok {
			return nil // the channel's filter does not admit it
		}
		return o.pushReplayed(c.ctx, req, b, ev.Position)
	})
	switch {
	case err == nil, errors.Is(err, errReplayCancelled), errors.Is(err, errOutboxClosed), c.ctx.Err() != nil:
	case errors.Is(err, stream.ErrPruned):
		o.replyFor(req, channelReply("reset", req.channel))
	default:
		c.h.logger.Warn("realtime resume failed; sending reset", "err", err)
		o.replyFor(req, channelReply("reset", req.channel))
	}
}

// acquireReplaySlot bounds the replay queries this node runs at once. A
// slot is held for one page's query, never while a client consumes it.
func (h *Handler) acquireReplaySlot(ctx context.Context) (func(), error) {
	select {
	case h.replaySlots <- struct{}{}:
		return func() { <-h.replaySlots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// replayReq is one resume: subscribe channel "since" after.
type replayReq struct {
	channel   string
	after     int64
	opts      *stream.ChannelOptions // the channel's filter and select, applied as live
	cancelled bool                   // unsubscribed meanwhile (guarded by rtOutbox.mu)
	set       *replayedSet           // what it sent
}

// replayedSet is the positions one replay sent, ascending.
type replayedSet struct {
	positions []int64
	expires   time.Time // zero while the replay runs
}

// queueReplay hands a resume to the worker (after subscribe(..., true)).
func (o *rtOutbox) queueReplay(req *replayReq) {
	o.mu.Lock()
	o.reqs = append(o.reqs, req)
	o.pending[req.channel] = req
	o.mu.Unlock()
	select {
	case o.replayWake <- struct{}{}:
	default:
	}
}

// nextReplay pops the next queued resume, or nil.
func (o *rtOutbox) nextReplay() *replayReq {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.reqs) == 0 {
		return nil
	}
	req := o.reqs[0]
	o.reqs[0] = nil
	o.reqs = o.reqs[1:]
	if len(o.reqs) == 0 {
		o.reqs = nil
	}
	return req
}

// startReplay registers req's set so later replays skip what it sends; false
// when req was cancelled.
func (o *rtOutbox) startReplay(req *replayReq) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if req.cancelled || o.closed {
		return false
	}
	o.replayed = append(o.replayed, req.set)
	return true
}

// pushReplayed queues one replayed event of req, waiting while the writer is
// replayWindow frames behind. An event an earlier replay on this connection
// sent is skipped.
func (o *rtOutbox) pushReplayed(ctx context.Context, req *replayReq, b []byte, pos int64) error {
	for {
		o.mu.Lock()
		switch {
		case o.closed:
			o.mu.Unlock()
			return errOutboxClosed
		case req.cancelled:
			o.mu.Unlock()
			return errReplayCancelled
		case o.q.Len() < replayWindow:
			if !o.replayedLocked(pos) {
				o.q.PushUnchecked(rtEntry{b: b, pos: pos})
				o.addReplayedLocked(req.set, pos)
			}
			o.mu.Unlock()
			o.conn.Notify()
			return nil
		}
		o.mu.Unlock()
		select {
		case <-o.space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// replyFor queues a reply about req's channel unless req was cancelled.
func (o *rtOutbox) replyFor(req *replayReq, b []byte) {
	o.mu.Lock()
	ok := !req.cancelled && o.replyLocked(b)
	o.mu.Unlock()
	if ok {
		o.conn.Notify()
	}
}

// finishReplay ends req; when no resume is left it releases the held live
// events. It reports whether the writer should be woken.
func (o *rtOutbox) finishReplay(req *replayReq) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	req.set.expires = time.Now().Add(o.window)
	if o.pending[req.channel] == req {
		delete(o.pending, req.channel)
	}
	o.holds--
	if o.holds > 0 || o.closed {
		return false
	}
	// Held events were counted in the queue's bounds when they came: they
	// move into it unchecked.
	for i, it := range o.held {
		o.q.Unhold(len(it.Bytes))
		if !o.replayedLocked(it.Event.Position) && o.subscribedLocked(it.Event) {
			o.q.PushUnchecked(rtEntry{b: it.Bytes, pos: it.Event.Position})
		}
		o.held[i] = stream.Item{}
	}
	if cap(o.held) > rtKeepCap {
		o.held = nil
	} else {
		o.held = o.held[:0]
	}
	return true
}

// subscribedLocked reports whether ev matches one of the connection's
// channels.
func (o *rtOutbox) subscribedLocked(ev *stream.Event) bool {
	typ := stream.RealtimeType(ev)
	for ch := range o.channels {
		if stream.ChannelMatches(ch, typ) {
			return true
		}
	}
	return false
}

// replayedLocked reports whether a recent replay sent pos, dropping the
// replays whose window has passed.
func (o *rtOutbox) replayedLocked(pos int64) bool {
	if len(o.replayed) == 0 {
		return false
	}
	now := time.Now()
	found := false
	keep := o.replayed[:0]
	for _, s := range o.replayed {
		if !s.expires.IsZero() && now.After(s.expires) {
			o.nReplayd -= len(s.positions)
			continue
		}
		keep = append(keep, s)
		if !found {
			_, found = slices.BinarySearch(s.positions, pos)
		}
	}
	clear(o.replayed[len(keep):])
	o.replayed = keep
	return found
}

// addReplayedLocked records pos (ascending within a replay), keeping at most
// dedupCap positions across the connection's replays: the oldest go first.
func (o *rtOutbox) addReplayedLocked(s *replayedSet, pos int64) {
	s.positions = append(s.positions, pos)
	o.nReplayd++
	for o.nReplayd > dedupCap && len(o.replayed) > 0 {
		old := o.replayed[0]
		drop := min(len(old.positions), o.nReplayd-dedupCap+dedupCap/4) // some slack: not one copy per event
		n := copy(old.positions, old.positions[drop:])
		old.positions = old.positions[:n]
		o.nReplayd -= drop
		if n == 0 && old != s {
			o.replayed = slices.Delete(o.replayed, 0, 1)
		} else if n == 0 {
			break
		}
	}
}
