package catalyst

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config configures the Catalyst endpoints. The zero value means the
// defaults.
type Config struct {
	// MessageLimit is the most items in one frame; a frame is sent as soon as
	// the buffer holds this many. Default 1000.
	MessageLimit int
	// MessageTime is the batching period, measured from the connection's
	// start: every tick sends up to MessageLimit buffered items. Default 5 s.
	MessageTime time.Duration
}

// WithDefaults fills in the defaults of the fields left zero.
func (c Config) WithDefaults() Config {
	if c.MessageLimit == 0 {
		c.MessageLimit = 1000
	}
	if c.MessageTime == 0 {
		c.MessageTime = 5 * time.Second
	}
	return c
}

// parseIDList parses a comma-separated list of positive integers; spaces
// around items are allowed and an empty parameter means no filter.
func parseIDList(name, raw string) ([]int64, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	parts := strings.Split(raw, ",")
	ids := make([]int64, 0, len(parts))
	for _, p := range parts {
		item := strings.TrimSpace(p)
		id, err := strconv.ParseInt(item, 10, 64)
		if err != nil || id <= 0 || strings.HasPrefix(item, "+") {
			return nil, fmt.Errorf("%s: %q is not a positive integer", name, item)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// readerPage is the most events the reader hands the hub at once (the
// default stream.ReaderConfig.PageSize): a statement's events arrive a page
// at a time.
const readerPage = 1000

// MinBuffer is the smallest connection buffer (ws.Config.MaxBuffer) that one
// statement cannot overflow for a client that reads, with Catalyst frames of
// messageLimit items: a frame still filling (fewer than messageLimit items)
// and two reader pages, one queued while the writer sends the other. A
// statement of up to two pages (2,000 rows) fits even before the writer has
// written anything; a longer one relies on the writer sending a page while
// the reader fetches the next (a database round trip). A smaller buffer
// closes readers that keep up with 4008. The queue's byte bound
// (ws.Config.MaxBufferBytes) defaults to ws.DefaultItemBytes an item, so it
// holds as many events unless they average more than that.
func MinBuffer(messageLimit int) int { return messageLimit + 2*readerPage }
