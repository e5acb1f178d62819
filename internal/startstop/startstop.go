package startstop

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrStarted is returned by StartInit when the service was started before:
// a service runs once, and a stopped one is not restarted.
var ErrStarted = errors.New("already started")

// Base gives a service Start-once, an idempotent Stop that waits for the
// service's goroutine, and Started and Stopped signals. Embed it and write
// Start as
//
//	func (s *Service) Start(ctx context.Context) error {
//	    runCtx, started, stopped, err := s.StartInit(ctx)
//	    if err != nil {
//	        return err
//	    }
//	    go func() {
//	        defer stopped()
//	        started() // once the service is up
//	        s.run(runCtx)
//	    }()
//	    return nil
//	}
//
// The zero value is ready to use; Name, set before Start, prefixes its
// errors ("stream: reader").
type Base struct {
	// Name is the service's name in errors.
	Name string

	mu      sync.Mutex
	begun   bool
	cancel  context.CancelFunc
	started chan struct{}
	stopped chan struct{}
}

// StartInit begins a start. It returns the context the service runs under
// (ctx's values, but not its cancellation: a service outlives the context
// it was started with and ends with Stop), started, to call once the
// service is up, and stopped, to call (deferred) when its goroutine ends;
// stopped also signals Started, so that a service that failed to start
// never leaves a waiter hanging. It returns an error wrapping ErrStarted
// when the service was started before.
func (b *Base) StartInit(ctx context.Context) (runCtx context.Context, started, stopped func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.begun {
		return nil, nil, nil, fmt.Errorf("%s: %w", b.Name, ErrStarted)
	}
	b.begun = true
	b.chansLocked()
	runCtx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	startedCh, stoppedCh := b.started, b.stopped
	started = sync.OnceFunc(func() { close(startedCh) })
	stopped = sync.OnceFunc(func() {
		started()
		close(stoppedCh)
	})
	return runCtx, started, stopped, nil
}

// chansLocked makes the signal channels on first use, so that Started and
// Stopped may be called before Start.
func (b *Base) chansLocked() {
	if b.started == nil {
		b.started, b.stopped = make(chan struct{}), make(chan struct{})
	}
}

// Started is closed once the service is up, or has ended without starting.
func (b *Base) Started() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chansLocked()
	return b.started
}

// Stopped is closed once the service's goroutine has ended.
func (b *Base) Stopped() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chansLocked()
	return b.stopped
}

// Stop ends the service and waits for its goroutine, or for ctx. It is
// idempotent, and a no-op before Start (which may still be called after).
func (b *Base) Stop(ctx context.Context) error {
	b.mu.Lock()
	cancel, stopped := b.cancel, b.stopped
	b.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: stop: %w", b.Name, ctx.Err())
	}
}

// Sleep waits for d, or until ctx ends, whose error it then returns.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
