package ws

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestMsgBucket(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_000_000, 0)
	b := newMsgBucket(1, 3)
	type want struct{ allowed, closeIt bool }
	for i, w := range []want{{true, false}, {true, false}, {true, false}, {false, false}, {false, false}, {false, true}} {
		if allowed, closeIt := b.take(t0); allowed != w.allowed || closeIt != w.closeIt {
			t.Fatalf("message %d at once: allowed %v close %v, want %+v", i+1, allowed, closeIt, w)
		}
	}
	// A client that was briefly too fast earns tokens back, up to the burst.
	later := t0.Add(time.Hour)
	for i := range 3 {
		if allowed, _ := b.take(later); !allowed {
			t.Fatalf("message %d an hour later refused", i+1)
		}
	}
	if allowed, _ := b.take(later); allowed {
		t.Fatal("the burst grew past its size")
	}
	// The refusal cost a token too: one second repays it, the next earns one.
	if allowed, _ := b.take(later.Add(time.Second)); allowed {
		t.Fatal("a refused message cost nothing")
	}
	if allowed, _ := b.take(later.Add(3 * time.Second)); !allowed {
		t.Fatal("one token a second: refused after two more seconds")
	}
	unlimited := newMsgBucket(-1, 1)
	for range 1000 {
		if allowed, closeIt := unlimited.take(t0); !allowed || closeIt {
			t.Fatal("a negative rate limits")
		}
	}
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted, err := ParseTrustedProxies([]string{"10.0.0.0/8", " ::1 ", "192.168.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, peer string
		xff        []string
		trusted    []netip.Prefix
		want       string
	}{
		{"no trusted proxies: the peer", "10.0.0.1:1234", []string{"1.2.3.4"}, nil, "10.0.0.1"},
		{"a trusted proxy's client", "10.0.0.1:1234", []string{"1.2.3.4"}, trusted, "1.2.3.4"},
		{"what the client wrote itself is ignored", "10.0.0.1:1234", []string{"6.6.6.6, 1.2.3.4"}, trusted, "1.2.3.4"},
		{"a chain of trusted proxies", "10.0.0.1:1234", []string{"1.2.3.4, 10.9.9.9, 192.168.1.1"}, trusted, "1.2.3.4"},
		{"several headers", "10.0.0.1:1234", []string{"6.6.6.6", "1.2.3.4"}, trusted, "1.2.3.4"},
		{"an untrusted peer's header is ignored", "5.5.5.5:1234", []string{"1.2.3.4"}, trusted, "5.5.5.5"},
		{"a trusted proxy without the header", "10.0.0.1:1234", nil, trusted, "10.0.0.1"},
		{"a malformed hop stops the walk", "10.0.0.1:1234", []string{"1.2.3.4, garbage"}, trusted, "10.0.0.1"},
		{"IPv6", "[::1]:80", []string{"2001:db8::1"}, trusted, "2001:db8::1"},
		{"IPv4 in IPv6", "[::ffff:10.0.0.1]:80", []string{"::ffff:1.2.3.4"}, trusted, "1.2.3.4"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := ClientIP(r, c.trusted); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if _, err := ParseTrustedProxies([]string{"10.0.0.0/8", "proxy.example"}); err == nil || !strings.Contains(err.Error(), `"proxy.example"`) {
		t.Errorf("a host name: %v", err)
	}
}
