package engine

import "fmt"

// checkAppendInvariants verifies, after an append, that the segment list is
// ordered, that offsets and index entries strictly increase and that the
// published ends agree. Only with -tags invariants; caller holds l.mu.
func (l *Log) checkAppendInvariants(h *handle) {
	segs := l.segments()
	for i := max(1, len(segs)-2); i < len(segs); i++ {
		if segs[i].base <= segs[i-1].base {
			panic(fmt.Sprintf("engine invariant: %s segments out of order: %d then %d", l.tp, segs[i-1].base, segs[i].base))
		}
		if Offset(segs[i-1].next.Load()) > segs[i].base {
			panic(fmt.Sprintf("engine invariant: %s segment %d ends at %d past next base %d", l.tp, segs[i-1].base, segs[i-1].next.Load(), segs[i].base))
		}
	}
	a := segs[len(segs)-1]
	if Offset(a.next.Load()) != l.LogEndOffset() {
		panic(fmt.Sprintf("engine invariant: %s active segment ends at %d, log end %d", l.tp, a.next.Load(), l.LogEndOffset()))
	}
	// The newest index entries (older ones were checked when appended).
	prev := int64(a.base) - 1
	var prevPos uint32
	for i := max(0, h.oidx.Entries()-2); i < h.oidx.Entries(); i++ {
		o, p := h.oidx.Entry(i)
		if o <= prev || (i > 0 && p <= prevPos) || int64(p) >= a.size.Load() {
			panic(fmt.Sprintf("engine invariant: %s offset index entry %d (%d,%d) after (%d,%d), size %d", l.tp, i, o, p, prev, prevPos, a.size.Load()))
		}
		prev, prevPos = o, p
	}
	lastTs := int64(-1)
	for i := max(0, h.tidx.Entries()-2); i < h.tidx.Entries(); i++ {
		ts, _ := h.tidx.Entry(i)
		if ts < lastTs {
			panic(fmt.Sprintf("engine invariant: %s time index goes back: %d after %d", l.tp, ts, lastTs))
		}
		lastTs = ts
	}
}
