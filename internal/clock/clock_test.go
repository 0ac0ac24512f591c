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

func TestTimerOnManualClock(t *testing.T) {
	m := NewManual(time.Unix(0, 0))
	tm := NewTimer(m, time.Second)
	m.Advance(time.Second - time.Nanosecond)
	if !m.AwaitCallbacks(10 * time.Second) {
		t.Fatal("callbacks still running")
	}
	select {
	case <-tm.C:
		t.Fatal("timer fired before its deadline")
	default:
	}
	m.Advance(time.Nanosecond)
	if got := <-tm.C; !got.Equal(time.Unix(1, 0)) {
		t.Fatalf("timer delivered %v", got)
	}
	if tm.Stop() {
		t.Fatal("stop of a fired timer reported true")
	}
	tm = NewTimer(m, time.Second)
	if !tm.Stop() || m.Waiters() != 0 {
		t.Fatalf("stop of a pending timer: %d waiters left", m.Waiters())
	}
	rt := NewTimer(Real, time.Millisecond)
	<-rt.C
}

func TestAwaitCallbacksWaitsForFiredCallbacks(t *testing.T) {
	m := NewManual(time.Unix(0, 0))
	release := make(chan struct{})
	var done bool
	m.AfterFunc(time.Second, func() { <-release; done = true })
	if !m.AwaitCallbacks(10 * time.Second) {
		t.Fatal("a callback not yet due counted as running")
	}
	m.Advance(time.Second)
	if m.AwaitCallbacks(time.Millisecond) {
		t.Fatal("AwaitCallbacks returned while the callback blocks")
	}
	close(release)
	if !m.AwaitCallbacks(10*time.Second) || !done {
		t.Fatal("the callback did not return")
	}
}

func TestManualDeadlines(t *testing.T) {
	m := NewManual(time.Unix(0, 0))
	m.After(2 * time.Second)
	stop := m.AfterFunc(time.Second, func() {})
	want := []time.Time{time.Unix(1, 0), time.Unix(2, 0)}
	if got := m.Deadlines(); len(got) != 2 || !got[0].Equal(want[0]) || !got[1].Equal(want[1]) {
		t.Fatalf("deadlines %v, want %v", got, want)
	}
	if !m.AwaitDeadline(time.Unix(2, 0), 10*time.Second) {
		t.Fatal("AwaitDeadline missed a set timer")
	}
	stop()
	if m.AwaitDeadline(time.Unix(1, 0), time.Millisecond) {
		t.Fatal("AwaitDeadline found a stopped timer")
	}
}
