package replica

import (
	"sync"
	"sync/atomic"
)

// The ISR check (Manager.Tick, every replica.lag.time.max.ms / 4) looks
// only at the led partitions that may have a follower to drop. A follower
// in the ISR leaves it only while its log end differs from the leader's
// (Kafka's rule: a replica at the leader's log end is caught up whatever
// the time since its last fetch). A led partition is quiet when no ISR
// change is pending and every ISR follower's last known log end equals
// the leader's log end, which equals the log's: nothing but a change of
// the leader's state (an append, a fetch below the log end, an ISR or
// role change) can make a quiet partition lose a follower, so a quiet
// partition needs no check until that change. Each such change marks
// the partition (isrWatch.mark, while holding its mu, after the change);
// Tick checks the marked partitions and unmarks those it finds quiet.
// An idle broker's tick thus looks at no partition, whatever it hosts.

// isrWatch is the Manager's set of partitions the ISR check looks at.
type isrWatch struct {
	mu    sync.Mutex // a leaf
	parts map[*Partition]struct{}
	// looked counts the partitions ticks looked at (tests).
	looked atomic.Uint64
}

// mark adds p to the set (a no-op while it is in it). Call it after the
// change of p's leader state, holding p.mu or not.
func (w *isrWatch) mark(p *Partition) {
	if w == nil || p.isrMarked.Load() || !p.isrMarked.CompareAndSwap(false, true) {
		return
	}
	w.mu.Lock()
	if w.parts == nil {
		w.parts = map[*Partition]struct{}{}
	}
	w.parts[p] = struct{}{}
	w.mu.Unlock()
}

// marked returns the partitions in the set.
func (w *isrWatch) marked() []*Partition {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*Partition, 0, len(w.parts))
	for p := range w.parts {
		out = append(out, p)
	}
	return out
}

// settle takes p out of the set when its flag was cleared (it was found
// quiet) and no change marked it since. Call it without p.mu.
func (w *isrWatch) settle(p *Partition) {
	w.mu.Lock()
	if !p.isrMarked.Load() {
		delete(w.parts, p)
	}
	w.mu.Unlock()
}

// forget takes p out of the set for good (it left the Manager).
func (w *isrWatch) forget(p *Partition) {
	w.mu.Lock()
	delete(w.parts, p)
	w.mu.Unlock()
}

// size is the number of partitions in the set.
func (w *isrWatch) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.parts)
}

// markISR marks p for the ISR check after a change of its leader state.
// Caller holds mu.
func (p *Partition) markISR() { p.isrSet.mark(p) }

// quietLocked reports whether the ISR check can leave p alone until its
// leader state changes: not a leader, or a leader with no pending ISR
// change whose ISR followers are all at its log end. Caller holds mu.
func (p *Partition) quietLocked() bool {
	if p.role != RoleLeader || p.leader == nil {
		return true
	}
	return p.leader.LEO() == p.log.LogEndOffset() && p.leader.quiet()
}

// quiet reports whether no ISR change is pending and every ISR follower's
// last known log end is the leader's: Tick proposes nothing now or later
// until one of these changes.
func (l *Leader) quiet() bool {
	if l.pending != nil {
		return false
	}
	for _, r := range l.isr {
		if r == l.id {
			continue
		}
		f, ok := l.followers[r]
		if !ok || f.leo != l.leo {
			return false
		}
	}
	return true
}
