package realtime

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/stream"
)

// Which channels a subscribe may name. A channel's first segment is its
// namespace, and event types are "{collection}.created", ".updated" and
// ".deleted" for a collection, and "{namespace}.<name>[.<name>…]" (at least
// two segments, see pgcast.publish) for a namespace events are published to:
// the five built-in ones and those registered in pgcast.publish_namespaces.
//
//   - A namespace that is none of these, in the viewer's environment, gets
//     unknown_namespace: nothing is denied (it may be created later, and the
//     client can subscribe then; system.collection.created announces new
//     collections), so not forbidden.
//   - A channel of a known namespace that no event type can ever match
//     ("posts", "posts.created.*", "posts.create", "job", "*") gets
//     invalid_channel naming the channels that exist, in "channels" too,
//     rather than an acknowledgement of a subscription that delivers nothing.

// nsKind says what a namespace is; 0: nothing known.
type nsKind uint8

const (
	nsCollection nsKind = 1 << iota // a collection of the viewer's environment
	nsPublished                     // events are published to it
)

// channelError is an error reply about a channel, with the channels that
// exist when it is invalid_channel for a known namespace.
type channelError struct {
	code, message string
	channels      []string
}

func (e channelError) frame() []byte {
	return mustJSON(struct {
		Type     string   `json:"type"`
		Code     string   `json:"code"`
		Message  string   `json:"message"`
		Channels []string `json:"channels,omitempty"`
	}{"error", e.code, e.message, e.channels})
}

// checkChannel decides whether a subscribe to channel (grammatical: see
// stream.ValidChannel) goes ahead. When it does not, reply is the error to send,
// or nil when the connection is ending.
func (c *rtConn) checkChannel(channel string) (reply []byte, ok bool) {
	ns := stream.ChannelNamespace(channel)
	if ns == "*" {
		return channelError{code: "invalid_channel",
			message: `Channel "*" names no namespace: subscribe to a namespace's channels, e.g. posts.* or job.*`}.frame(), false
	}
	kind, err := c.namespaceKind(ns)
	if err != nil {
		if c.ctx.Err() != nil {
			return nil, false
		}
		c.h.logger.Warn("realtime: look up channel namespace", "err", err)
		return (&clientError{code: "internal_error", message: "Could not check the channel; try again"}).frame(), false
	}
	switch {
	case kind == 0:
		return channelError{code: "unknown_namespace", message: fmt.Sprintf(
			"Channel %q: no collection or event namespace %q exists in this environment; subscribe once it does (system.collection.created announces new collections)",
			channel, ns)}.frame(), false
	case kind&nsPublished != 0 && channel != ns: // a type has two segments or more
		return nil, true
	case kind&nsCollection != 0 && (channel == ns+".*" || slices.Contains(stream.CollectionChannels(ns), channel)):
		return nil, true
	}
	var channels []string
	if kind&nsCollection != 0 {
		channels = stream.CollectionChannels(ns)
	}
	channels = append(channels, ns+".*")
	msg := fmt.Sprintf("Channel %q matches no event: the channels of collection %s are %s", channel, ns, strings.Join(channels, ", "))
	if kind&nsPublished != 0 {
		msg = fmt.Sprintf("Channel %q matches no event: event types of %s are %s.<name>; subscribe to %s.* or to one type", channel, ns, ns, ns)
	}
	return channelError{code: "invalid_channel", message: msg, channels: channels}.frame(), false
}

// namespaceKind says what ns is in the viewer's environment: a built-in
// namespace, a collection, a registered application namespace. What it
// finds in the database is remembered for the connection's life (a
// collection is not renamed); "nothing" is not, so a namespace created
// later can be subscribed to.
func (c *rtConn) namespaceKind(ns string) (nsKind, error) {
	switch ns {
	case "auth", "storage", "function", "job", "system":
		return nsPublished, nil
	}
	if k, ok := c.known[ns]; ok {
		return k, nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, namespaceTimeout)
	defer cancel()
	found, err := db.LookupNamespace(ctx, c.h.pool, c.viewer.Environment, ns)
	if err != nil {
		return 0, err
	}
	var k nsKind
	if found.Collection {
		k |= nsCollection
	}
	if found.Published {
		k |= nsPublished
	}
	if k != 0 {
		if len(c.known) >= knownNamespacesCache {
			clear(c.known)
		}
		c.known[ns] = k
	}
	return k, nil
}
