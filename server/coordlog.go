package server

import (
	"errors"
	"math"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/replica"
)

// coordLog is a coordinator's internal compacted topic (__consumer_offsets
// for the group coordinator, __transaction_state for the transaction
// coordinator): the store both coordinators write through.
//
// A write is a leader append with acks=all through the partition manager
// (Kafka's coordinators write with required acks -1), on a single node as
// in a cluster: append refuses it when the ISR is smaller than
// min.insync.replicas, and sync returns once the high watermark passed it
// (fsynced or replicated as configured, as for a produce), or fails after
// the coordinator's timeout.
type coordLog struct {
	s       *Server
	name    string
	timeout string // the broker key bounding sync (ms)
	// ensure returns the topic, creating it if needed.
	ensure func() (*topic, error)
	// notHosted is the error for a partition this broker has no replica of.
	notHosted *kerr.Error
	// last is the last offset appended per partition: what sync waits for.
	last []atomic.Int64
}

func newCoordLog(s *Server, name, timeoutKey string, partitions int32, notHosted *kerr.Error, ensure func() (*topic, error)) *coordLog {
	return &coordLog{s: s, name: name, timeout: timeoutKey, ensure: ensure, notHosted: notHosted, last: make([]atomic.Int64, partitions)}
}

func (cl *coordLog) topicPartition(p int32, create bool) (*topic, *partition, error) {
	t := cl.s.topic(cl.name)
	if t == nil {
		if !create {
			return nil, nil, nil
		}
		var err error
		if t, err = cl.ensure(); err != nil {
			return nil, nil, err
		}
	}
	if int(p) >= len(t.parts) || int(p) >= len(cl.last) {
		return nil, nil, topicErrf(kerr.UnknownTopicOrPartition, "%s has %d partitions, the coordinator %d", cl.name, len(t.parts), len(cl.last))
	}
	if t.parts[p].log == nil {
		// Cluster mode: this broker hosts no replica of the partition.
		return nil, nil, topicErrf(cl.notHosted, "%s-%d is not hosted by this broker", cl.name, p)
	}
	return t, t.parts[p], nil
}

// kv is one record to write (a nil value is a tombstone).
type kv struct{ key, value []byte }

// append writes the records as one uncompressed batch.
func (cl *coordLog) append(p int32, recs []kv) error {
	return cl.appendAs(p, -1, -1, recs)
}

// appendAs writes the records as one uncompressed batch; with pid >= 0 a
// transactional batch of that producer and epoch (a TxnOffsetCommit), at
// the sequence following the producer's last batch in the partition (0
// at a new epoch). The coordinator serialises the appends of a partition,
// and only it writes there, so the sequence read is the one to follow.
func (cl *coordLog) appendAs(p int32, pid int64, epoch int16, recs []kv) error {
	t, part, err := cl.topicPartition(p, true)
	if err != nil {
		return err
	}
	bl := record.Builder{
		BaseTimestamp:   cl.s.clock.Now().UnixMilli(),
		MaxTimestamp:    record.NoTimestamp,
		LastOffsetDelta: -1,
		ProducerID:      -1,
		ProducerEpoch:   -1,
		BaseSequence:    -1,
	}
	if pid >= 0 {
		seq, err := nextSequence(part.log, pid, epoch)
		if err != nil {
			return err
		}
		bl.Attributes = record.AttrTransactional
		bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = pid, epoch, seq
	}
	for i, r := range recs {
		bl.Add(record.Record{OffsetDelta: int32(i), Key: r.key, Value: r.value})
	}
	batch, err := bl.Build(nil)
	if err != nil {
		return err
	}
	res, err := cl.s.replicas.Append(part.rep, batch, true, int(t.settings.MinInsync))
	if err != nil {
		return err
	}
	cl.last[p].Store(int64(res.LastOffset))
	return nil
}

// sync waits until the high watermark passed the last append (NOT_ENOUGH_
// REPLICAS_AFTER_APPEND when the ISR fell below min.insync.replicas
// meanwhile, NOT_LEADER_OR_FOLLOWER when leadership was lost), at most
// the coordinator's timeout.
func (cl *coordLog) sync(p int32) error {
	t, part, err := cl.topicPartition(p, false)
	if err != nil || part == nil {
		return err
	}
	last := engine.Offset(cl.last[p].Load())
	if leo := part.log.LogEndOffset(); last >= leo {
		last = leo - 1 // appended under an earlier leadership, since truncated
	}
	if last < 0 {
		return nil
	}
	waits := []replica.AckWait{{P: part.rep, Last: last, MinISR: int(t.settings.MinInsync)}}
	done := make(chan struct{})
	cl.s.replicas.AwaitAcks(waits, msConfig(cl.s, cl.timeout), func() { close(done) })
	<-done
	if errors.Is(waits[0].Err, replica.ErrTimedOut) {
		return topicErrf(kerr.RequestTimedOut, "%s-%d: offset %d not past the high watermark within %s", cl.name, p, last, cl.timeout)
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

// coordRecord is one record of a coordinator's partition in replay, with
// its batch's transaction fields; a marker (commit or abort, marker > 0)
// has no key or value.
type coordRecord struct {
	key, value    []byte
	pid           int64
	transactional bool
	marker        int8 // 0: a data record; 1: commit marker; 2: abort marker
}

// replayTxn is replay with the transaction fields and the markers.
func (cl *coordLog) replayTxn(p int32, fn func(coordRecord)) error {
	_, part, err := cl.topicPartition(p, false)
	if err != nil || part == nil {
		return err
	}
	l := part.log
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
			fn(coordRecord{pid: b.ProducerID(), marker: m})
			return nil
		}
		txn := b.IsTransactional()
		err := dec.Records(b, func(r *record.Record) error {
			fn(coordRecord{key: r.Key, value: r.Value, pid: b.ProducerID(), transactional: txn})
			return nil
		})
		if err != nil {
			cl.s.logger.Warn("skipping undecodable batch while loading a coordinator", "topic", cl.name, "partition", p, "offset", b.BaseOffset(), "err", err)
		}
		return nil
	})
}

// replay reads the partition from its start to its end, skipping control
// batches. A batch that cannot be decoded is skipped with a warning
// (recovery already dropped torn and corrupt batches; this only guards
// against foreign writes).
func (cl *coordLog) replay(p int32, fn func(key, value []byte)) error {
	_, part, err := cl.topicPartition(p, false)
	if err != nil || part == nil {
		return err
	}
	l := part.log
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
			cl.s.logger.Warn("skipping undecodable batch while loading a coordinator", "topic", cl.name, "partition", p, "offset", b.BaseOffset(), "err", err)
		}
		return nil
	})
}
