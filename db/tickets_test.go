package db_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
)

func TestTickets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	now := time.Now().Truncate(time.Microsecond)
	issued := db.Ticket{ID: "0b6a1e0e-6d0a-4c55-9a57-0c5cf4f1b7a1", UserID: "u1", Role: "admin", Environment: 2, ExpiresAt: now.Add(time.Minute)}
	if err := db.IssueTicket(ctx, pool, issued); err != nil {
		t.Fatal(err)
	}
	got, err := db.TakeTicket(ctx, pool, issued.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.CreatedAt.IsZero() || got.UserID != "u1" || got.Role != "admin" || got.Environment != 2 || !got.ExpiresAt.Equal(issued.ExpiresAt) || got.ID != issued.ID {
		t.Fatalf("taken %+v, issued %+v: want it as issued, with its creation time", got, issued)
	}
	if _, err := db.TakeTicket(ctx, pool, issued.ID); !errors.Is(err, db.ErrTicketNotFound) {
		t.Fatalf("taken twice: %v, want ErrTicketNotFound", err)
	}

	// Restored as it was; restoring it twice is no error and stores one.
	for range 2 {
		if err := db.RestoreTicket(ctx, pool, got); err != nil {
			t.Fatal(err)
		}
	}
	again, err := db.TakeTicket(ctx, pool, issued.ID)
	if err != nil || !again.CreatedAt.Equal(got.CreatedAt) || !again.ExpiresAt.Equal(got.ExpiresAt) || again.UserID != got.UserID {
		t.Fatalf("restored %+v, %v; want %+v", again, err, got)
	}
	if _, err := db.TakeTicket(ctx, pool, issued.ID); !errors.Is(err, db.ErrTicketNotFound) {
		t.Fatalf("restored twice, taken twice: %v, want ErrTicketNotFound", err)
	}

	// Of concurrent takes of one ticket, exactly one gets it.
	if err := db.IssueTicket(ctx, pool, issued); err != nil {
		t.Fatal(err)
	}
	var (
		wg           sync.WaitGroup
		mu           sync.Mutex
		took, missed int
	)
	for range 8 {
		wg.Go(func() {
			_, err := db.TakeTicket(ctx, pool, issued.ID)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				took++
			case errors.Is(err, db.ErrTicketNotFound):
				missed++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if took != 1 || missed != 7 {
		t.Fatalf("8 concurrent takes: %d took it, %d missed; want 1 and 7", took, missed)
	}

	// Pruning deletes the tickets expired at its time, and only those.
	for i, exp := range []time.Duration{-time.Minute, 0, time.Minute} {
		tk := issued
		tk.ID = []string{"00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000003"}[i]
		tk.ExpiresAt = now.Add(exp)
		if err := db.IssueTicket(ctx, pool, tk); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := db.DeleteExpiredTickets(ctx, pool, now); err != nil || n != 2 {
		t.Fatalf("DeleteExpiredTickets = %d, %v; want 2", n, err)
	}
	if _, err := db.TakeTicket(ctx, pool, "00000000-0000-4000-8000-000000000003"); err != nil {
		t.Errorf("the unexpired ticket: %v", err)
	}
}
