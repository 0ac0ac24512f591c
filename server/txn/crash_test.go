package txn

import (
	"errors"
	"fmt"
	"testing"
)

// The crash harness: one scripted client runs transactions through the
// coordinator against modelled partitions while the broker "crashes" at
// every write of __transaction_state in turn (the write lands but is not
// synced; the coordinator then fails every write until it is restarted
// from what the log holds — with or without that last unsynced record —
// and markers it had in flight are either lost or written). After each
// crash the coordinator resumes from the log. Every variant must end with:
// every transaction resolved on every partition it wrote to, committed
// exactly when the client was told it committed, never both ways, and
// the transactional id idle.

// modelPart is a partition's view of transactions: the open transaction
// per producer id and how each ended.
type modelPart struct {
	open map[int64]openTxn
}

type openTxn struct {
	epoch int16
	seq   int
}

type crashRun struct {
	*harness
	t        *testing.T
	cfg      Config
	keep     bool // the crashed write survives the restart
	writeOld bool // markers in flight at the crash reach their partitions
	parts    map[TopicPartition]*modelPart
	resolved map[int]map[TopicPartition]bool // seq → partition → committed
	expect   map[int]bool                    // seq → committed?
	opened   map[int][]TopicPartition
	restarts int
}

func newCrashRun(t *testing.T, crashAt int, keep, writeOld bool) *crashRun {
	cfg := testConfig()
	r := &crashRun{
		harness: newHarness(t, cfg), t: t, cfg: cfg, keep: keep, writeOld: writeOld,
		parts:    map[TopicPartition]*modelPart{},
		resolved: map[int]map[TopicPartition]bool{},
		expect:   map[int]bool{},
		opened:   map[int][]TopicPartition{},
	}
	r.store.crashAt = crashAt
	r.write = r.applyMarker
	return r
}

func (r *crashRun) part(p TopicPartition) *modelPart {
	mp := r.parts[p]
	if mp == nil {
		mp = &modelPart{open: map[int64]openTxn{}}
		r.parts[p] = mp
	}
	return mp
}

// applyMarker is a partition leader taking a marker.
func (r *crashRun) applyMarker(req *MarkerRequest, p TopicPartition) error {
	mp := r.part(p)
	o, ok := mp.open[req.ProducerID]
	if !ok {
		return nil // no transaction open here: Kafka writes the marker anyway
	}
	if req.ProducerEpoch < o.epoch {
		return ErrMarkerFenced
	}
	delete(mp.open, req.ProducerID)
	res := r.resolved[o.seq]
	if res == nil {
		res = map[TopicPartition]bool{}
		r.resolved[o.seq] = res
	}
	if prev, ok := res[p]; ok && prev != req.Commit {
		r.t.Fatalf("transaction %d resolved both ways on %s", o.seq, p)
	}
	res[p] = req.Commit
	return nil
}

// produce writes transactional data of seq to the partitions.
func (r *crashRun) produce(seq int, pe ProducerIDEpoch, tps ...TopicPartition) {
	for _, p := range tps {
		mp := r.part(p)
		if o, ok := mp.open[pe.ProducerID]; ok && o.seq != seq {
			r.t.Fatalf("transaction %d writes to %s while %d is still open there", seq, p, o.seq)
		}
		mp.open[pe.ProducerID] = openTxn{epoch: pe.Epoch, seq: seq}
		r.opened[seq] = append(r.opened[seq], p)
	}
}

// settle restarts a crashed coordinator, then delivers markers.
func (r *crashRun) settle() {
	if r.store.crashed {
		r.restarts++
		if r.restarts > 3 {
			r.t.Fatal("crashed again after a restart")
		}
		inflight := r.markers.take()
		if r.writeOld {
			for _, sm := range inflight {
				for _, p := range sm.req.Partitions {
					r.applyMarker(sm.req, p)
				}
			}
		}
		r.co.Close()
		r.store = r.store.afterCrash(r.keep)
		r.markers = &sentMarkers{}
		r.start(r.cfg)
	}
	r.deliver()
}

func retriable(err error) bool {
	return errors.Is(err, ErrConcurrentTransactions) || errors.Is(err, ErrCoordinatorNotAvailable) ||
		errors.Is(err, ErrNotCoordinator) || errors.Is(err, ErrCoordinatorLoadInProgress)
}

// do retries op on retriable errors, settling in between.
func (r *crashRun) do(what string, op func() error) error {
	for range 20 {
		err := op()
		r.settle()
		if !retriable(err) {
			return err
		}
	}
	r.t.Fatalf("%s: still failing after 20 attempts", what)
	return nil
}

func (r *crashRun) initPE(expected *ProducerIDEpoch) ProducerIDEpoch {
	var res InitResult
	if err := r.do("InitProducerId", func() error { res = r.init("app", 60000, expected); return res.Err }); err != nil {
		r.t.Fatalf("InitProducerId: %v", err)
	}
	return ProducerIDEpoch{res.ProducerID, res.Epoch}
}

func (r *crashRun) must(what string, err error) {
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
}

// script runs the client's transactions.
func (r *crashRun) script() {
	a, b := tp("a", 0), tp("b", 0)
	offsets := r.co.opts.OffsetsPartition("grp")

	// 1: committed, with offsets.
	pe := r.initPE(nil)
	r.must("add 1", r.do("add", func() error { return r.add("app", pe, a, b) }))
	r.produce(1, pe, a, b)
	r.must("offsets 1", r.do("add offsets", func() error {
		var e error
		r.co.AddOffsets("app", pe.ProducerID, pe.Epoch, "grp", func(err error) { e = err })
		return e
	}))
	r.produce(1, pe, offsets)
	r.must("commit 1", r.do("commit", func() error { return r.end("app", pe, true) }))
	r.expect[1] = true

	// 2: aborted by the client.
	r.must("add 2", r.do("add", func() error { return r.add("app", pe, a) }))
	r.produce(2, pe, a)
	r.must("abort 2", r.do("abort", func() error { return r.end("app", pe, false) }))
	r.expect[2] = false

	// 3: a new instance fences the producer mid-transaction.
	r.must("add 3", r.do("add", func() error { return r.add("app", pe, b) }))
	r.produce(3, pe, b)
	zombie := pe
	pe = r.initPE(nil)
	r.expect[3] = false
	if pe.ProducerID != zombie.ProducerID || pe.Epoch <= zombie.Epoch+1 {
		r.t.Fatalf("new instance got %+v after %+v", pe, zombie)
	}
	if err := r.do("zombie commit", func() error { return r.end("app", zombie, true) }); !errors.Is(err, ErrProducerFenced) {
		r.t.Fatalf("zombie commit: %v", err)
	}

	// 4: times out; the producer recovers with its id (KIP-360).
	r.must("add 4", r.do("add", func() error { return r.add("app", pe, a, b) }))
	r.produce(4, pe, a, b)
	r.expect[4] = false
	for i := 0; ; i++ {
		if i == 20 {
			r.t.Fatal("the timed-out transaction was never aborted")
		}
		r.advance(r.cfg.AbortTimedOutInterval * 7)
		r.settle()
		if d, err := r.co.Describe("app"); err == nil && d.State == CompleteAbort {
			break
		}
	}
	fenced := ProducerIDEpoch{pe.ProducerID, pe.Epoch + 1}
	var res InitResult
	err := r.do("InitProducerId", func() error { res = r.init("app", 60000, &fenced); return res.Err })
	if errors.Is(err, ErrProducerFenced) && r.restarts > 0 {
		// The bump landed but its answer was lost in the crash; the
		// previous epoch is not in the log, so the retry is fenced (as in
		// Kafka) and the application starts a new producer.
		err = nil
		fresh := r.initPE(nil)
		res.ProducerID, res.Epoch = fresh.ProducerID, fresh.Epoch
	}
	r.must("recover 4", err)
	pe = ProducerIDEpoch{res.ProducerID, res.Epoch}

	// 5: committed after the recovery.
	r.must("add 5", r.do("add", func() error { return r.add("app", pe, a) }))
	r.produce(5, pe, a)
	r.must("commit 5", r.do("commit", func() error { return r.end("app", pe, true) }))
	r.expect[5] = true
	r.settle()
}

func (r *crashRun) check() {
	for seq, tps := range r.opened {
		want := r.expect[seq]
		for _, p := range tps {
			got, ok := r.resolved[seq][p]
			switch {
			case !ok:
				r.t.Errorf("transaction %d never resolved on %s", seq, p)
			case got != want:
				r.t.Errorf("transaction %d on %s: committed=%v, the client was told committed=%v", seq, p, got, want)
			}
		}
	}
	d, err := r.co.Describe("app")
	if err != nil || !d.State.idle() {
		r.t.Errorf("final state %+v %v", d, err)
	}
}

func TestCrashAtEveryTransition(t *testing.T) {
	// Count the writes of a run without crashes.
	base := newCrashRun(t, 0, false, false)
	base.script()
	base.check()
	writes := base.store.appends
	if writes < 10 {
		t.Fatalf("only %d writes in the script", writes)
	}
	for k := 1; k <= writes; k++ {
		for _, keep := range []bool{false, true} {
			for _, writeOld := range []bool{false, true} {
				t.Run(fmt.Sprintf("write%d/keep=%v/markers=%v", k, keep, writeOld), func(t *testing.T) {
					r := newCrashRun(t, k, keep, writeOld)
					r.script()
					r.check()
					if r.restarts == 0 {
						t.Fatalf("no crash at write %d", k)
					}
				})
			}
		}
	}
}
