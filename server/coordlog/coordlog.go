// Package coordlog is a coordinator's internal compacted topic
// (__consumer_offsets for the group coordinator, __transaction_state for
// the transaction coordinator): the store both coordinators write
// through, on a single node as in a cluster.
//
// A write is a leader append with acks=all through the partition manager
// (replica.Manager; Kafka's coordinators write with required acks -1):
// Append refuses it when the ISR is smaller than min.insync.replicas, and
// Sync returns once the high watermark passed it (fsynced or replicated as
// configured, as for a produce), or fails after the coordinator's
// timeout. Replay reads a partition back when the coordinator loads it.
//
// The package knows the broker's topics only through Config.Lookup, so it
// has no *Server. Its errors carry their Kafka error (*kerr.Error in the
// chain) or a replica or engine sentinel; the broker maps them to codes.
package coordlog

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/replica"
)

// Part is what Config.Lookup says of one partition of the topic.
type Part struct {
	// Exists: the topic exists. When it does not (and Lookup was not
	// asked to create it), the rest is unset.
	Exists bool
	// Partitions is the topic's partition count; MinInsync its
	// min.insync.replicas.
	Partitions int
	MinInsync  int
	// Rep is this broker's replica of the partition; nil when it hosts
	// none (cluster mode).
	Rep *replica.Partition
}

// Config configures a Log.
type Config struct {
	Topic      string
	Partitions int32 // the coordinator's partition count
	// Lookup returns partition p of the topic, creating the topic first
	// when create is set and it does not exist.
	Lookup   func(p int32, create bool) (Part, error)
	Replicas *replica.Manager
	// TimeoutKey is the broker key bounding Sync (in ms); Timeout reads
	// its current value.
	TimeoutKey string
	Timeout    func() time.Duration
	// NotHosted is the error for a partition this broker has no replica
	// of.
	NotHosted *kerr.Error
	Clock     clock.Clock
	Logger    *slog.Logger
}

// Log is a coordinator's internal topic.
type Log struct {
	cfg Config
	// last is the last offset appended per partition: what Sync waits for.
	last []atomic.Int64
}

// New returns the Log of cfg.
func New(cfg Config) *Log {
	return &Log{cfg: cfg, last: make([]atomic.Int64, cfg.Partitions)}
}

// Error is an error with its Kafka error, whose message is msg alone.
type Error struct {
	Kerr *kerr.Error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kerr }

func errorf(ke *kerr.Error, format string, args ...any) error {
	return &Error{Kerr: ke, Msg: fmt.Sprintf(format, args...)}
}

// partition returns partition p (Rep set), or a zero Part and no error
// when the topic does not exist and create is false.
func (cl *Log) partition(p int32, create bool) (Part, error) {
	pt, err := cl.cfg.Lookup(p, create)
	if err != nil || !pt.Exists {
		return Part{}, err
	}
	if int(p) >= pt.Partitions || int(p) >= len(cl.last) {
		return Part{}, errorf(kerr.UnknownTopicOrPartition, "%s has %d partitions, the coordinator %d", cl.cfg.Topic, pt.Partitions, len(cl.last))
	}
	if pt.Rep == nil {
		// Cluster mode: this broker hosts no replica of the partition.
		return Part{}, errorf(cl.cfg.NotHosted, "%s-%d is not hosted by this broker", cl.cfg.Topic, p)
	}
	return pt, nil
}

// KV is one record to write (a nil value is a tombstone).
type KV struct{ Key, Value []byte }

// Append writes the records as one uncompressed batch.
func (cl *Log) Append(p int32, recs []KV) error {
	return cl.AppendAs(p, -1, -1, recs)
}

// AppendAs writes the records as one uncompressed batch; with pid >= 0 a
// transactional batch of that producer and epoch (a TxnOffsetCommit), at
// the sequence following the producer's last batch in the partition (0
// at a new epoch). The coordinator serialises the appends of a partition,
// and only it writes there, so the sequence read is the one to follow.
func (cl *Log) AppendAs(p int32, pid int64, epoch int16, recs []KV) error {
	part, err := cl.partition(p, true)
	if err != nil {
		return err
	}
	bl := record.Builder{
		BaseTimestamp:   cl.cfg.Clock.Now().UnixMilli(),
		MaxTimestamp:    record.NoTimestamp,
		LastOffsetDelta: -1,
		ProducerID:      -1,
		ProducerEpoch:   -1,
		BaseSequence:    -1,
	}
	if pid >= 0 {
		seq, err := nextSequence(part.Rep.Log(), pid, epoch)
		if err != nil {
			return err
		}
		bl.Attributes = record.AttrTransactional
		bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = pid, epoch, seq
	}
	for i, r := range recs {
		bl.Add(record.Record{OffsetDelta: int32(i), Key: r.Key, Value: r.Value})
	}
	batch, err := bl.Build(nil)
	if err != nil {
		return err
	}
	res, err := cl.cfg.Replicas.Append(part.Rep, batch, true, part.MinInsync)
	if err != nil {
		return err
	}
	cl.last[p].Store(int64(res.LastOffset))
	return nil
}

// Sync waits until the high watermark passed the last append (NOT_ENOUGH_
// REPLICAS_AFTER_APPEND when the ISR fell below min.insync.replicas
// meanwhile, NOT_LEADER_OR_FOLLOWER when leadership was lost), at most
// the coordinator's timeout.
func (cl *Log) Sync(p int32) error {
	part, err := cl.partition(p, false)
	if err != nil || part.Rep == nil {
		return err
	}
	last := engine.Offset(cl.last[p].Load())
	if leo := part.Rep.Log().LogEndOffset(); last >= leo {
		last = leo - 1 // appended under an earlier leadership, since truncated
	}
	if last < 0 {
		return nil
	}
	waits := []replica.AckWait{{P: part.Rep, Last: last, MinISR: part.MinInsync}}
	done := make(chan struct{})
	cl.cfg.Replicas.AwaitAcks(waits, cl.cfg.Timeout(), func() { close(done) })
	<-done
	if errors.Is(waits[0].Err, replica.ErrTimedOut) {
		return errorf(kerr.RequestTimedOut, "%s-%d: offset %d not past the high watermark within %s", cl.cfg.Topic, p, last, cl.cfg.TimeoutKey)
	}
	return waits[0].Err
}

// nextSequence is the sequence of producer pid's next batch at epoch in
// l.
func nextSequence(l *engine.Log, pid int64, epoch int16) (int32, error) {
	ps, err := l.Producers()
	if err != nil {
		return 0, err
	}
	for _, p := range ps {
		if p.ProducerID == pid && p.ProducerEpoch == epoch && p.LastSequence >= 0 {
			if p.LastSequence == math.MaxInt32 {
				return 0, nil
			}
			return p.LastSequence + 1, nil
		}
	}
	return 0, nil
}

// Record is one record of a coordinator's partition in replay, with its
// batch's transaction fields; a marker (commit or abort, Marker > 0) has
// no key or value.
type Record struct {
	Key, Value    []byte
	PID           int64
	Transactional bool
	Marker        int8 // 0: a data record; 1: commit marker; 2: abort marker
}

// ReplayTxn is Replay with the transaction fields and the markers.
func (cl *Log) ReplayTxn(p int32, fn func(Record)) error {
	part, err := cl.partition(p, false)
	if err != nil || part.Rep == nil {
		return err
	}
	l := part.Rep.Log()
	var dec record.Decoder
	return l.ReadBatches(l.LogStartOffset(), l.LogEndOffset(), func(b record.Batch) error {
		if b.IsControl() {
			typ, err := engine.ControlType(b)
			if err != nil || !b.IsTransactional() {
				return nil
			}
			m := int8(2)
			if typ == engine.ControlCommit {
				m = 1
			}
			fn(Record{PID: b.ProducerID(), Marker: m})
			return nil
		}
		txn := b.IsTransactional()
		err := dec.Records(b, func(r *record.Record) error {
			fn(Record{Key: r.Key, Value: r.Value, PID: b.ProducerID(), Transactional: txn})
			return nil
		})
		if err != nil {
			cl.cfg.Logger.Warn("skipping undecodable batch while loading a coordinator", "topic", cl.cfg.Topic, "partition", p, "offset", b.BaseOffset(), "err", err)
		}
		return nil
	})
}

// Replay reads the partition from its start to its end, skipping control
// batches. A batch that cannot be decoded is skipped with a warning
// (recovery already dropped torn and corrupt batches; this only guards
// against foreign writes).
func (cl *Log) Replay(p int32, fn func(key, value []byte)) error {
	part, err := cl.partition(p, false)
	if err != nil || part.Rep == nil {
		return err
	}
	l := part.Rep.Log()
	var dec record.Decoder
	return l.ReadBatches(l.LogStartOffset(), l.LogEndOffset(), func(b record.Batch) error {
		if b.IsControl() {
			return nil
		}
		err := dec.Records(b, func(r *record.Record) error {
			fn(r.Key, r.Value)
			return nil
		})
		if err != nil {
			cl.cfg.Logger.Warn("skipping undecodable batch while loading a coordinator", "topic", cl.cfg.Topic, "partition", p, "offset", b.BaseOffset(), "err", err)
		}
		return nil
	})
}
