package clock

import (
	"context"
	"testing"
	"time"
)

func TestManualTimersFireAtTheirDeadline(t *testing.T) {
	m := NewManual(time.Unix(1000, 0))
	a := m.After(2 * time.Second)
	fired := make(chan struct{})
	stopB := m.AfterFunc(time.Second, func() { close(fired) })
	stopC := m.AfterFunc(time.Second, func() { t.Error("stopped timer fired") })
	if !stopC() {
		t.Fatal("stop of a pending timer reported false")
	}
	if got := m.Waiters(); got != 2 {
		t.Fatalf("waiters = %d, want 2", got)
	}
	m.Advance(999 * time.Millisecond)
	select {
	case <-a:
		t.Fatal("After fired early")
	default:
	}
	m.Advance(time.Millisecond)
	<-fired
	if stopB() {
		t.Fatal("stop of a fired timer reported true")
	}
	select {
	case <-a:
		t.Fatal("After fired early")
	default:
	}
	m.Set(time.Unix(1002, 0))
	if got := <-a; !got.Equal(time.Unix(1002, 0)) {
		t.Fatalf("After delivered %v", got)
	}
	if got := m.Waiters(); got != 0 {
		t.Fatalf("waiters = %d, want 0", got)
	}
	select {
	case <-m.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
}

func TestSleepOnManualClock(t *testing.T) {
	m := NewManual(time.Unix(0, 0))
	done := make(chan bool)
	go func() { done <- Sleep(context.Background(), m, time.Minute) }()
	if !m.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("Sleep set no timer")
	}
	m.Advance(time.Minute)
	if !<-done {
		t.Fatal("Sleep reported cancelled")
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- Sleep(ctx, m, time.Minute) }()
	if !m.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("Sleep set no timer")
	}
	cancel()
	if <-done {
		t.Fatal("Sleep reported the whole wait after cancel")
	}
	if n := m.Waiters(); n != 0 {
		t.Fatalf("%d timers left by a cancelled Sleep", n)
	}
}

func TestRealClockTimers(t *testing.T) {
	<-After(Real, time.Millisecond)
	fired := make(chan struct{})
	AfterFunc(Real, time.Millisecond, func() { close(fired) })
	<-fired
}
