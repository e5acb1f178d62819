package stream

import (
	"slices"
	"strings"

	"github.com/pgcast/pgcast/db"
)

// Channels and event types of the realtime API, in one place: the grammar
// of a channel, the realtime type of an event, which types a channel
// matches, the Hub's index of channels, and the condition db applies to
// replay a namespace (the same rule as RealtimeType, produced from it).
//
// A channel is segments of [A-Za-z0-9_-]+ separated by dots, the last of
// which may be "*": "posts.created" matches that type exactly, "posts.*"
// (and "system.collection.*") every type that starts with the part before
// the "*". Its first segment is its namespace.

// collectionCreatedType is the realtime type of collection_created.
const collectionCreatedType = "system.collection.created"

// recordVerbs are the last segments of the realtime types of record
// events, "<class>.<verb>"; other kinds carry their type in Event.Type
// (typedKinds) or have no realtime form.
var recordVerbs = [numKinds]string{
	KindRecordCreated:      "created",
	KindRecordValueChanged: "updated",
	KindRecordDeleted:      "deleted",
}

// RealtimeType is the /api/realtime event type of ev ("posts.created",
// "job.completed", ...), or "" when ev has no realtime form.
func RealtimeType(ev *Event) string {
	if ev.Kind >= numKinds {
		return ""
	}
	if verb := recordVerbs[ev.Kind]; verb != "" {
		return ev.ClassName + "." + verb
	}
	if ev.Kind == KindCollectionCreated || ev.Kind == KindPublished {
		return ev.Type
	}
	return ""
}

// CollectionChannels are the exact channels of collection's events, the
// types of its record events: "posts.created", "posts.updated",
// "posts.deleted".
func CollectionChannels(collection string) []string {
	var out []string
	for _, verb := range recordVerbs {
		if verb != "" {
			out = append(out, collection+"."+verb)
		}
	}
	return out
}

// ValidChannel reports whether s is a channel by the grammar: segments of
// [A-Za-z0-9_-]+ separated by dots, the last of which may be "*". Whether
// its namespace exists is another question (the server's).
func ValidChannel(s string) bool {
	seg := 0 // length of the current segment
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if seg == 0 {
				return false
			}
			seg = 0
		case c == '*':
			// Only as a whole, last segment.
			if seg != 0 || i != len(s)-1 {
				return false
			}
			seg = 1
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			seg++
		default:
			return false
		}
	}
	return seg > 0
}

// ChannelNamespace is the namespace of a channel or event type, its first
// segment: "posts" for "posts.created" and "posts.*".
func ChannelNamespace(channel string) string {
	ns, _, _ := strings.Cut(channel, ".")
	return ns
}

// ChannelMatches reports whether a realtime channel ("posts.created",
// "posts.*", "system.collection.*") matches an event type: exactly, or for a
// channel ending in ".*", every type that starts with the part before the
// "*". It is the rule the Hub's channel index implements.
func ChannelMatches(channel, typ string) bool {
	if typ == "" {
		return false
	}
	if p, ok := wildcardPrefix(channel); ok {
		return len(p) > 0 && p[len(p)-1] == '.' && strings.HasPrefix(typ, p)
	}
	return channel == typ
}

// wildcardPrefix is, for a channel ending in "*", the prefix of the types
// it matches ("posts." for "posts.*").
func wildcardPrefix(channel string) (string, bool) {
	return strings.CutSuffix(channel, "*")
}

// channelIndex finds the realtime subscriptions of one environment whose
// channels match an event type without a scan: exact channels by name,
// wildcard channels by their prefix.
type channelIndex struct {
	exact  map[string]subSet // "posts.created"
	prefix map[string]subSet // "posts." for "posts.*"
	// wild names the channel of each prefix ("posts." → "posts.*"), so
	// that matching builds no string per event.
	wild map[string]string
}

func newChannelIndex() channelIndex {
	return channelIndex{exact: map[string]subSet{}, prefix: map[string]subSet{}, wild: map[string]string{}}
}

func (ci *channelIndex) add(s *Subscription, channel string) {
	if p, ok := wildcardPrefix(channel); ok {
		addTo(ci.prefix, p, s)
		ci.wild[p] = channel
	} else {
		addTo(ci.exact, channel, s)
	}
}

func (ci *channelIndex) remove(s *Subscription, channel string) {
	if p, ok := wildcardPrefix(channel); ok {
		removeFrom(ci.prefix, p, s)
		if ci.prefix[p] == nil {
			delete(ci.wild, p)
		}
	} else {
		removeFrom(ci.exact, channel, s)
	}
}

func (ci *channelIndex) empty() bool { return len(ci.exact) == 0 && len(ci.prefix) == 0 }

// match calls offer with each channel matching typ and the set of
// subscriptions that have it: the exact channel, then every prefix of typ ending at a dot
// ("posts." for "posts.created", "system." and "system.collection." for
// "system.collection.created"). A subscription may be in several sets.
func (ci *channelIndex) match(typ string, offer func(channel string, set subSet)) {
	if set := ci.exact[typ]; set != nil {
		offer(typ, set)
	}
	for i := 0; i < len(typ); i++ {
		if typ[i] == '.' {
			if set := ci.prefix[typ[:i+1]]; set != nil {
				offer(ci.wild[typ[:i+1]], set)
			}
		}
	}
}

// The log entry kinds of the realtime type rule, for namespaceFilter.
var (
	recordTypeKinds = entryKinds(func(k Kind) bool { return recordVerbs[k] != "" })
	collectionKinds = entryKinds(func(k Kind) bool { return k == KindCollectionCreated })
	publishedKinds  = entryKinds(func(k Kind) bool { return k == KindPublished })
)

// entryKinds are the log's names (pgcast.events.kind) of the kinds for
// which keep is true.
func entryKinds(keep func(Kind) bool) []string {
	var out []string
	for name, k := range kindsByEntry {
		if keep(k) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// namespaceFilter is RealtimeType's rule as the condition db applies to
// log entries: the entries whose realtime type is in namespace ns. Record
// events are "<class>.<verb>", collection_created is
// collectionCreatedType, published events carry their type.
func namespaceFilter(ns string) *db.TypeFilter {
	f := &db.TypeFilter{ClassKinds: recordTypeKinds, Class: ns, TypeKinds: publishedKinds, TypePrefix: ns + "."}
	if ChannelNamespace(collectionCreatedType) == ns {
		f.Kinds = collectionKinds
	}
	return f
}
