package engine

import (
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
)

// idempotentBatch is a one-record batch of producer pid at epoch 0 with
// base sequence seq, transactional when txn is set.
func idempotentBatch(t *testing.T, pid int64, seq int32, txn bool, ts int64) []byte {
	t.Helper()
	bl := record.Builder{ProducerID: pid, BaseSequence: seq, BaseTimestamp: ts, LastOffsetDelta: -1, MaxTimestamp: -1}
	if txn {
		bl.Attributes = record.AttrTransactional
	}
	bl.Add(record.Record{Key: []byte("k"), Value: []byte("v")})
	b, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProducerExpiration: an idempotent producer idle for
// producer.id.expiration.ms is forgotten (its retry is then appended
// again, as in Kafka), one with an open transaction is kept, and a log
// loaded after the expiration time does not bring the producer back from
// its snapshot.
func TestProducerExpiration(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.ProducerIDExpiration = time.Hour
	l := e.open(true, 0)
	now := e.clk.Now().UnixMilli()
	retry := func(l *Log, pid int64) AppendResult {
		t.Helper()
		res, err := l.Append(idempotentBatch(t, pid, 0, false, now), 0)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	retry(l, 7)
	if _, err := l.Append(idempotentBatch(t, 9, 0, true, now), 0); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Hour - time.Millisecond)
	if n := l.ExpireProducers(); n != 0 {
		t.Fatalf("%d producers expired before producer.id.expiration.ms", n)
	}
	if !retry(l, 7).Duplicate {
		t.Fatal("a retry within the expiration time was appended again")
	}
	e.clk.Advance(time.Hour) // producer 7's retry above refreshed it
	if n := l.ExpireProducers(); n != 1 {
		t.Fatalf("%d producers expired, want 1 (producer 9 has an open transaction)", n)
	}
	if res := retry(l, 7); res.Duplicate {
		t.Fatal("an expired producer's retry was still taken for a duplicate")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// The snapshot written at close holds producer 7; a load an hour later
	// forgets it.
	e.clk.Advance(time.Hour)
	l = e.open(true, l.LogEndOffset())
	defer l.Close()
	if res := retry(l, 7); res.Duplicate {
		t.Fatal("a producer expired while the broker was down came back from its snapshot")
	}
	if !retry(l, 7).Duplicate {
		t.Fatal("the retry right after was not recognised")
	}
}
