package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/internal/wstest"
	pgws "github.com/pgcast/pgcast/server/ws"
)

// TestShutdownGrace (issue 10 item 11): on Stop, /readyz fails for the grace period
// before the first WebSocket is closed, so a load balancer sees it first;
// the grace takes at most half of the time Stop is given.
func TestShutdownGrace(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name          string
		grace, within time.Duration
		wantAtLeast   time.Duration
	}{
		{"grace", 700 * time.Millisecond, 20 * time.Second, 700 * time.Millisecond},
		{"half of the shutdown timeout", time.Hour, 3 * time.Second, 1400 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, func(cfg *Config) { cfg.ShutdownGrace = c.grace })
			ws := s.rtConnect("")
			closed := make(chan int, 1)
			go func() {
				code, _ := wstest.ReadUntilClose(ws, 30*time.Second)
				closed <- code
			}()
			ctx, cancel := context.WithTimeout(context.Background(), c.within)
			defer cancel()
			start := time.Now()
			stopped := make(chan error, 1)
			go func() { stopped <- s.srv.Stop(ctx) }()
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
				resp, err := http.Get(s.base + "/readyz")
				if err != nil {
					t.Fatalf("/readyz during the grace: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					break
				}
			}
			// Seen within the grace (unless the machine is slow): the socket
			// is open still.
			if time.Since(start) < c.wantAtLeast {
				select {
				case <-closed:
					t.Fatal("the socket closed before /readyz answered 503")
				default:
				}
			}
			if code := <-closed; code != pgws.CloseGoingAway {
				t.Errorf("closed with %d", code)
			}
			if took := time.Since(start); took < c.wantAtLeast {
				t.Errorf("first close %v after Stop, want ≥ %v", took, c.wantAtLeast)
			}
			if err := <-stopped; err != nil {
				t.Errorf("Stop: %v", err)
			}
		})
	}
}
