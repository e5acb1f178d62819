package ws

import (
	"errors"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// A client that stops reading is a slow consumer whichever limit it meets
// first (R9): its queue overflowing (a Queue over Config.MaxBuffer items or
// Config.MaxBufferBytes bytes, see the protocols' Outboxes) or a write that
// the socket does not take within Config.WriteTimeout. Either way it is
// closed with 4008 and counted in pgcast_ws_slow_consumer_closes_total.

const (
	// lastWriteWait bounds the last write to a client whose write timed
	// out: the rest of the frame in progress and the close frame.
	lastWriteWait = time.Second
	// maxLastRoom bounds how far that last write may grow the socket's send
	// buffer (see makeRoom).
	maxLastRoom = 1 << 20
)

// writeFailed ends the writer after a failed write of fb. A write that timed
// out is a client that stopped reading: it is closed as a slow consumer
// (4008, unless a close was asked already) with a last write; any other
// failure closes the socket at once. closing says the failed write was the
// close frame itself.
func (c *Conn) writeFailed(fb *FrameBuf, err error, closing bool) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = c.lastWrite(fb, closing)
	}
	fb.reset()
	c.putBuf(fb)
	c.finishWriter(err)
}

// lastWrite finishes the frame a timed-out write stopped in and sends the
// close frame (or, when closing, the rest of the close frame), within
// lastWriteWait. The socket's buffer is full, since the client is not
// reading: it is grown by what this write needs, so that the kernel takes
// the bytes at once and delivers them whenever the client's window
// reopens, after the socket is closed too. That is best effort: the kernel
// caps the buffer (net.core.wmem_max, unless pgcast may exceed it); a
// client whose window reopens within lastWriteWait gets the close frame
// anyway.
func (c *Conn) lastWrite(fb *FrameBuf, closing bool) error {
	c.Close(CloseSlowConsumer, "slow consumer")
	var nb net.Buffers
	if closing {
		nb = fb.nb
	} else {
		c.mu.Lock()
		code, reason := c.code, c.reason
		c.mu.Unlock()
		nb = append(fb.rest(), appendCloseFrame(nil, code, reason))
	}
	n := 0
	for _, b := range nb {
		n += len(b)
	}
	c.makeRoom(n)
	c.wdeadline = time.Now().Add(lastWriteWait)
	if err := c.nc.SetWriteDeadline(c.wdeadline); err != nil {
		return err
	}
	_, err := nb.WriteTo(c.nc)
	return err
}

// makeRoom grows the socket's send buffer so that n more bytes fit; the
// buffer counts the kernel's overhead too, hence twice n. It tries
// SO_SNDBUFFORCE (which may exceed net.core.wmem_max, with CAP_NET_ADMIN),
// then SO_SNDBUF. The kernel doubles the value it is given.
func (c *Conn) makeRoom(n int) {
	if c.raw == nil || n > maxLastRoom {
		return
	}
	_ = c.raw.Control(func(fd uintptr) {
		cur, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		if err != nil {
			return
		}
		want := (cur + 2*n + 4096) / 2
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, want) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, want)
		}
	})
}
