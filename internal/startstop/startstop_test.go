package startstop_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pgcast/pgcast/internal/startstop"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// service is the shape Base is for: a goroutine that runs until Stop,
// held back at will so that a test sees each state.
type service struct {
	startstop.Base
	up      chan struct{} // the goroutine calls started once this closes
	release chan struct{} // the goroutine ends once its context ends and this closes
}

func newService() *service {
	s := &service{up: make(chan struct{}), release: make(chan struct{})}
	s.Name = "test: service"
	return s
}

func (s *service) Start(ctx context.Context) error {
	runCtx, started, stopped, err := s.StartInit(ctx)
	if err != nil {
		return err
	}
	go func() {
		defer stopped()
		select {
		case <-s.up:
			started()
		case <-runCtx.Done():
			<-s.release
			return
		}
		<-runCtx.Done()
		<-s.release
	}()
	return nil
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// The signals: Started once the service says so, Stopped once its
// goroutine ends; both may be asked for before Start. Stop waits, and is
// idempotent; the service runs under a context its starter's cancellation
// does not end.
func TestBaseLifecycle(t *testing.T) {
	t.Parallel()
	s := newService()
	started, stopped := s.Started(), s.Stopped()
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel() // the starter's context: not the service's
	if closed(started) || closed(stopped) {
		t.Fatal("signalled before the service is up")
	}
	close(s.up)
	<-started
	if s.Started() != started || s.Stopped() != stopped {
		t.Fatal("the signals changed")
	}
	if closed(stopped) {
		t.Fatal("stopped while running")
	}
	close(s.release)
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !closed(stopped) {
		t.Fatal("Stop returned before the goroutine ended")
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// A service starts once: a second Start, even after Stop, is refused.
func TestBaseStartsOnce(t *testing.T) {
	t.Parallel()
	s := newService()
	close(s.up)
	close(s.release)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := s.Start(context.Background())
	if !errors.Is(err, startstop.ErrStarted) || err.Error() != "test: service: already started" {
		t.Fatalf("second Start: %v", err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); !errors.Is(err, startstop.ErrStarted) {
		t.Fatalf("Start after Stop: %v", err)
	}
}

// Stop before Start is a no-op, and Start still works after it.
func TestBaseStopBeforeStart(t *testing.T) {
	t.Parallel()
	s := newService()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(s.up)
	close(s.release)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-s.Started()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Stop gives up when its context ends before the goroutine does, and says
// so; the goroutine still ends, and a later Stop waits for it.
func TestBaseStopBounded(t *testing.T) {
	t.Parallel()
	s := newService()
	close(s.up)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-s.Started()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Stop(ctx)
	if !errors.Is(err, context.Canceled) || err.Error() != "test: service: stop: context canceled" {
		t.Fatalf("Stop with an ended context: %v", err)
	}
	close(s.release)
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-s.Stopped()
}

// A service that ends without having started (stopped while starting)
// signals Started too, so that nobody waits for it for ever.
func TestBaseStoppedSignalsStarted(t *testing.T) {
	t.Parallel()
	s := newService()
	close(s.release)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-s.Started()
	<-s.Stopped()
}

func TestSleep(t *testing.T) {
	t.Parallel()
	if err := startstop.Sleep(context.Background(), time.Nanosecond); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := startstop.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep with an ended context: %v", err)
	}
}
