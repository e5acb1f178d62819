package stream

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/pgcast/pgcast/db"
)

// A statement that outlasts its bound cannot be told from a connection gone
// silent, so the session ends and the next one retries the read. When the
// statement was merely slow (a busy machine, a delta of a million entries,
// whose bounds take one pass over it), a fixed bound would fail the same way
// on every retry: readiness would stay down, on every node at once, since
// all nodes read the same log. So each timeout doubles the bound of the
// next connection's statements, up to maxTimeout, and each read that
// completes halves it again, down to QueryTimeout. Meanwhile a silent
// connection takes up to the stretched bound to be noticed. Connection
// attempts keep QueryTimeout: their work does not grow with the log, and a
// stretched bound would only delay the retry on a dead network path.

// maxTimeout caps the stretched bound: 16 × QueryTimeout (80 s by default),
// and at least a minute.
func (r *Reader) maxTimeout() time.Duration { return max(16*r.cfg.QueryTimeout, time.Minute) }

// timeout is the bound of the reader's next statement.
func (r *Reader) timeout() time.Duration { return time.Duration(r.queryTimeout.Load()) }

// setTimeout records the bound and exports it.
func (r *Reader) setTimeout(d time.Duration) {
	r.queryTimeout.Store(int64(d))
	r.metrics.queryTimeout.Set(d.Seconds())
}

// stretch doubles the bound when a connection ended because a statement
// timed out.
func (r *Reader) stretch(err error) {
	if !isTimeout(err) {
		return
	}
	r.metrics.timeouts.Inc()
	d := min(2*r.timeout(), r.maxTimeout())
	r.setTimeout(d)
	r.cfg.Logger.Warn("a reader statement timed out: the next connection's statements may take longer", "query_timeout", d.String())
}

// eased halves a stretched bound after a read completed.
func (r *Reader) eased() {
	if d := r.timeout(); d > r.cfg.QueryTimeout {
		r.setTimeout(max(d/2, r.cfg.QueryTimeout))
	}
}

// progressed marks progress: a read, or a page of a large one, completed.
// Readiness looks at it (see Ready).
func (r *Reader) progressed() { r.lastRead.Store(time.Now().UnixNano()) }

func isTimeout(err error) bool {
	return db.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}
