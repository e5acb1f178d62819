package ws

import (
	"time"
)

// writeNow is the writer's first round without blocking (see wakeNow).
func (c *Conn) writeNow() {
	fb := c.getBuf()
	c.state.And(^wsAgain)
	c.mu.Lock()
	blocking := c.closeReq || c.pongDue || c.pingDue
	c.mu.Unlock()
	if blocking { // rare: let the goroutine do it all
		go c.writeWith(fb)
		return
	}
	c.out.Take(fb)
	if fb.Empty() {
		if c.state.CompareAndSwap(wsStarted|wsWriting, wsStarted) {
			c.putBuf(fb)
			return
		}
		go c.writeWith(fb)
		return
	}
	more := fb.Room() == 0 // the queue may hold more than one write takes
	err := c.extendWrite()
	done := false
	if err == nil {
		done, err = fb.tryWrite(c.raw)
	}
	if err != nil {
		c.writeFailed(fb, err, false)
		return
	}
	if done && !more && c.state.CompareAndSwap(wsStarted|wsWriting, wsStarted) {
		c.putBuf(fb)
		return
	}
	go c.writeWith(fb) // the rest of fb first, then whatever else is due
}

// write is the writer: it writes until nothing is left, then exits; or
// until it has written the close frame or failed, and then it is finished
// for good (wsWriting stays set: no writer starts again).
func (c *Conn) write() { c.writeWith(c.getBuf()) }

// writeWith is write with fb, which may hold the rest of a tryWrite: that
// goes out first.
func (c *Conn) writeWith(fb *FrameBuf) {
	if fb.nb != nil {
		if err := c.writeFrames(fb); err != nil {
			c.writeFailed(fb, err, false)
			return
		}
	}
	for {
		c.state.And(^wsAgain)
		wrote, final, err := c.Flush(fb)
		if err != nil {
			c.writeFailed(fb, err, final)
			return
		}
		if final {
			c.putBuf(fb)
			c.finishWriter(nil)
			return
		}
		if !wrote && c.state.CompareAndSwap(wsStarted|wsWriting, wsStarted) {
			// A wake from now on starts another writer: fb is no longer
			// touched but by the pool.
			c.putBuf(fb)
			return
		}
	}
}

// flush writes, in one writev, what is pending: a pong, a ping and queued
// frames; or the close frame, which is final (what else is pending is
// dropped).
func (c *Conn) Flush(fb *FrameBuf) (wrote, final bool, err error) {
	c.mu.Lock()
	if c.closeReq {
		code, reason := c.code, c.reason
		c.mu.Unlock()
		fb.closeFrame(code, reason)
		return true, true, c.writeFrames(fb)
	}
	pong, pongDue, pingDue := c.pong, c.pongDue, c.pingDue
	c.pong, c.pongDue, c.pingDue = "", false, false
	c.mu.Unlock()
	if pongDue {
		fb.control(opPong, pong)
	}
	if pingDue {
		fb.control(opPing, "")
	}
	c.out.Take(fb)
	if fb.Empty() {
		return false, false, nil
	}
	return true, false, c.writeFrames(fb)
}

// writeFrames writes fb; after a failure fb keeps what was not written,
// for writeFailed.
func (c *Conn) writeFrames(fb *FrameBuf) error {
	if err := c.extendWrite(); err != nil {
		return err
	}
	return fb.writeTo(c.nc)
}

// extendWrite keeps the write deadline at least Config.WriteTimeout/2 ahead. A
// deadline that has passed also fails writes that would not wait (tryWrite).
func (c *Conn) extendWrite() error {
	if now := time.Now(); c.wdeadline.Sub(now) < c.cfg.WriteTimeout/2 {
		c.wdeadline = now.Add(c.cfg.WriteTimeout)
		return c.nc.SetWriteDeadline(c.wdeadline)
	}
	return nil
}

// finishWriter ends the writing side: after the close frame the peer has
// closeHandshakeWait to answer before the read loop gives up; after a
// failed write the socket is closed at once, which ends the read loop (a
// write that timed out is handled first: see writeFailed).
func (c *Conn) finishWriter(err error) {
	c.mu.Lock()
	c.closeSent = true
	if c.pinger != nil {
		c.pinger.Stop()
	}
	if err == nil {
		_ = c.nc.SetReadDeadline(time.Now().Add(closeHandshakeWait))
	}
	c.mu.Unlock()
	if err != nil {
		c.logger.Debug("websocket write failed", "err", err)
		_ = c.nc.Close()
	}
	c.out.Discard()
	close(c.written)
}

func (c *Conn) getBuf() *FrameBuf {
	if c.bufs == nil {
		if c.fb == nil {
			c.fb = new(FrameBuf)
		}
		return c.fb
	}
	if fb, _ := c.bufs.Get().(*FrameBuf); fb != nil {
		return fb
	}
	return new(FrameBuf)
}

func (c *Conn) putBuf(fb *FrameBuf) {
	if c.bufs == nil {
		return
	}
	fb.reset()
	fb.trim()
	c.bufs.Put(fb)
}
