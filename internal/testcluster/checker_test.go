package testcluster

import (
	"testing"
	"time"
)

// The checker finds every anomaly class of docs/partitions.md in a
// synthetic history, and nothing in a clean one.
func TestCheckerFindsEachAnomaly(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	w := &Workload{id: "w9-", acked: map[string]ackInfo{}}
	ack := func(val string, p int32, o int64, ms int) {
		w.acked[val] = ackInfo{key: val[:len("w9-k0")], seq: seqOf(val), partition: p, offset: o, sent: at(ms - 5), at: at(ms)}
	}
	ack("w9-k0/0", 0, 0, 10)
	ack("w9-k1/1", 0, 1, 20)
	ack("w9-k0/2", 0, 2, 30)
	clean := []readRec{{0, 0, "w9-k0/0"}, {0, 1, "w9-k1/1"}, {0, 2, "w9-k0/2"}, {0, 3, "w9-k1/3"}}
	if r := w.Check(clean); !r.OK() || r.UnackedButRead != 1 {
		t.Errorf("clean history: %s %v", r, r.Examples)
	}
	// k0/2 lost; k1/1 read at offset 2 too (duplicated, and offset 2 holds
	// another value than acknowledged: inconsistent); k0/0 after k0/4
	// (reordered).
	bad := []readRec{{0, 0, "w9-k0/4"}, {0, 1, "w9-k0/0"}, {0, 2, "w9-k1/1"}}
	r := w.Check(bad)
	if r.Lost != 1 || r.Duplicated != 0 || r.ReorderedWithinKey != 1 || r.InconsistentOffsets != 2 {
		t.Errorf("bad history: %s", r)
	}
	for _, class := range []string{"lost", "reordered-within-key", "inconsistent-offset"} {
		if _, ok := r.First[class]; !ok {
			t.Errorf("no first %s anomaly: %v", class, r.First)
		}
	}
	if r := w.Check([]readRec{{0, 0, "w9-k0/0"}, {0, 1, "w9-k1/1"}, {0, 2, "w9-k0/2"}, {1, 0, "w9-k0/2"}}); r.Duplicated != 1 {
		t.Errorf("duplicate not found: %s", r)
	}

	g := &GroupReader{topic: "t", prefix: "w9-", start: t0, reads: map[int32][]int32{}, readAt: map[int32][]int32{},
		commits: map[int32][]groupObs{}, fetches: map[int32][]groupObs{}}
	// Consumers read offsets 0..2 of partition 0 as in clean, and a record
	// (seq 7) at offset 3 that the final read does not have.
	g.reads[0] = []int32{1, 2, 3, 8}
	g.readAt[0] = []int32{1, 2, 3, 4}
	g.commits[0] = []groupObs{{3, at(100), at(100)}}
	g.fetches[0] = []groupObs{{3, at(200), at(210)}, {2, at(300), at(310)}, {4, at(400), at(410)}}
	gr := g.Check(clean)
	// offset 3: read seq 7, final has seq 3 elsewhere → dirty read of seq 7
	// (absent from the final read); fetch of 2 after 3 was acknowledged and
	// fetched → one regression; no skip (0..3 were all read).
	if gr.DirtyReads != 1 || gr.OffsetRegressions != 1 || gr.Skipped != 0 || gr.ChangedOffsets != 0 {
		t.Errorf("group history: %s", gr)
	}
	// A record read at one offset and found at another in the final read,
	// and a committed offset above a record never delivered.
	g.reads[0] = []int32{1, 3, 0, 0}
	g.fetches[0] = []groupObs{{3, at(200), at(210)}}
	gr = g.Check(clean)
	if gr.ChangedOffsets != 1 || gr.Skipped != 1 || gr.DirtyReads != 0 || gr.OffsetRegressions != 0 {
		t.Errorf("group history 2: %s", gr)
	}
	// The clean case.
	g.reads[0] = []int32{1, 2, 3, 4}
	g.fetches[0] = []groupObs{{3, at(200), at(210)}, {4, at(400), at(410)}}
	if gr = g.Check(clean); !gr.OK() {
		t.Errorf("clean group history: %s", gr)
	}
}
