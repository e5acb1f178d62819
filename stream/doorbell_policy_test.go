package stream

import (
	"testing"
	"time"
)

// The reader waits for the doorbell while commits are rare, drains above
// DoorbellMaxRate, and waits again only below two thirds of it.
func TestDoorbellPolicyFollowsTheCommitRate(t *testing.T) {
	t.Parallel()
	r, err := NewReader(ReaderConfig{URL: "postgres://localhost/x", Handler: func([]*Event) {}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	feed := func(perSecond int, d time.Duration) {
		t.Helper()
		step := time.Millisecond
		for end := now.Add(d); now.Before(end); now = now.Add(step) {
			r.observe(now, perSecond/1000)
		}
	}
	if r.busy {
		t.Fatal("a new reader must wait for the doorbell")
	}
	feed(1000, time.Second)
	if r.busy {
		t.Fatal("1000 commits/s: below the default 1500, the reader must wait for the doorbell")
	}
	feed(3000, time.Second)
	if !r.busy {
		t.Fatal("3000 commits/s: the reader must drain")
	}
	feed(1200, time.Second)
	if !r.busy {
		t.Fatal("1200 commits/s: within the hysteresis band the reader keeps draining")
	}
	feed(0, time.Second)
	if r.busy {
		t.Fatal("idle: the reader must wait for the doorbell again")
	}

	always, err := NewReader(ReaderConfig{URL: "postgres://localhost/x", Handler: func([]*Event) {}, DoorbellMaxRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	if !always.busy {
		t.Fatal("DoorbellMaxRate < 0: the reader drains whenever a read finds entries")
	}
}
